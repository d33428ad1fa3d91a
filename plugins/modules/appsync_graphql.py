#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: appsync_graphql
version_added: 0.1.0
short_description: Run one GraphQL operation against an AppSync API, signed with IAM (SigV4)
description:
  - Sends a query or a mutation to a deployed AppSync GraphQL API with the task's AWS credentials
    (the API's IAM authorization mode), with the values passed as GraphQL variables, never pasted
    into the document.
  - Queries always run, also in check mode, and report no change. A mutation reports a change; in
    check mode it is not sent. Use a query first and a condition on the mutation to stay idempotent.
options:
  api_name:
    description:
      - Name of the API, looked up in the region. Give exactly one of O(api_name), O(api_id) and O(url).
    type: str
  api_id:
    description: Id of the API.
    type: str
  url:
    description: The API's GraphQL URL.
    type: str
  query:
    description: The GraphQL document (one operation, or several with O(operation_name)).
    type: str
    required: true
  variables:
    description: Values of the operation's variables.
    type: dict
    default: {}
  operation_name:
    description: Which operation of the document to run.
    type: str
  fail_on_errors:
    description: Fail when the response carries GraphQL errors.
    type: bool
    default: true
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  action_group:
    description: Use C(group/iotfleet.aws.aws) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - iotfleet.aws.aws
"""

EXAMPLES = r"""
- name: Read a device
  iotfleet.aws.appsync_graphql:
    api_name: iotfleet_api
    query: "query GetDevice($id: ID!) { getDevice(device_id: $id) { device_id owner status } }"
    variables:
      id: 4827E2E59190
  register: device

- name: Record its owner when it differs
  iotfleet.aws.appsync_graphql:
    api_name: iotfleet_api
    query: "mutation Upsert($input: UpsertDeviceInput!) { upsertDevice(input: $input) { device_id } }"
    variables:
      input:
        device_id: 4827E2E59190
        owner: alice
  when: device.data.getDevice.owner | default('') != 'alice'
"""

RETURN = r"""
data:
  description: The C(data) of the GraphQL response (null when the mutation was not sent in check mode).
  returned: always
  type: dict
  sample: {"getDevice": {"device_id": "4827E2E59190", "owner": "alice", "status": "connected"}}
errors:
  description: The GraphQL errors of the response.
  returned: always
  type: list
  elements: dict
  sample: []
url:
  description: The GraphQL URL the operation was sent to.
  returned: always
  type: str
  sample: https://abc.appsync-api.eu-north-1.amazonaws.com/graphql
"""

from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import AnsibleAppSyncError
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import SchemaSyntaxError
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import appsync_client
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import get_graphql_api
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import is_mutation
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import list_graphql_apis
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import signed_graphql_request
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule


def resolve_url(module):
    if module.params["url"]:
        return module.params["url"]
    client = appsync_client(module)
    if module.params["api_id"]:
        api = get_graphql_api(client, module.params["api_id"])
        if api is None:
            module.fail_json(msg=f"api_id: no AppSync API {module.params['api_id']!r} in this region.")
    else:
        name = module.params["api_name"]
        matches = [api for api in list_graphql_apis(client) if api["name"] == name]
        if len(matches) != 1:
            found = "none" if not matches else f"{len(matches)}, give api_id instead"
            module.fail_json(msg=f"api_name: {name!r} must name exactly one AppSync API in this region ({found}).")
        api = matches[0]
    return api["uris"]["GRAPHQL"]


def main():
    module = IoTModule(
        argument_spec=dict(
            api_name=dict(type="str"),
            api_id=dict(type="str"),
            url=dict(type="str"),
            query=dict(type="str", required=True),
            variables=dict(type="dict", default={}),
            operation_name=dict(type="str"),
            fail_on_errors=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("api_name", "api_id", "url")],
        required_one_of=[("api_name", "api_id", "url")],
        supports_check_mode=True,
    )
    try:
        mutation = is_mutation(module.params["query"])
    except SchemaSyntaxError as e:
        module.fail_json(msg=f"query: not a GraphQL document ({e}); pass one operation, e.g. 'query {{ ... }}'.")
    try:
        url = resolve_url(module)
    except AnsibleAppSyncError as e:
        module.fail_json_aws_error(e)

    if mutation and module.check_mode:
        module.exit_json(changed=True, data=None, errors=[], url=url)
    try:
        response = signed_graphql_request(
            module, url, module.params["query"], module.params["variables"], module.params["operation_name"]
        )
    except ValueError as e:
        module.fail_json(msg=str(e), url=url)
    errors = response.get("errors") or []
    if errors and module.params["fail_on_errors"]:
        messages = "; ".join(str(error.get("message")) for error in errors)
        module.fail_json(msg=f"GraphQL errors: {messages}", data=response.get("data"), errors=errors, url=url)
    module.exit_json(changed=mutation and not errors, data=response.get("data"), errors=errors, url=url)


if __name__ == "__main__":
    main()
