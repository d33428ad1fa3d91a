#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_policy
version_added: 0.1.0
short_description: Create, update and delete AWS IoT Core policies
description:
  - Creates an AWS IoT Core policy, keeps its default version equal to the given document, and
    deletes it.
  - The document is compared with the default version's document as parsed JSON, so formatting and
    key order do not matter; list order and the difference between a single string and a list of
    one string do, as they do for AWS.
  - A changed document becomes a new policy version that is set as the default. AWS keeps at most
    five versions of a policy; when five exist, the oldest version that is not the default is
    deleted first, so updating never fails on that limit.
  - Strings such as C(${iot:Connection.Thing.ThingName}) are policy variables that AWS resolves;
    they are passed to AWS unchanged.
options:
  name:
    description:
      - The name of the policy.
      - 1 to 128 letters, digits and C(_+=,.@-).
    type: str
    required: true
  policy:
    description:
      - The policy document, as a JSON string or as a YAML mapping.
      - Required when O(state=present).
    type: json
  state:
    description:
      - Whether the policy should exist.
      - With V(absent), the policy and all its versions are deleted.
    type: str
    default: present
    choices: [present, absent]
  force:
    description:
      - With O(state=absent), detach the policy from every target (certificates, thing groups,
        Cognito identities) before deleting it.
      - Without it, deleting a policy that is attached to a target fails and lists the targets.
      - Ignored when O(state=present).
    type: bool
    default: false
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: Device policy, least privilege (devices connect as their own thing name)
  iotfleet.aws.iot_policy:
    name: "{{ iotfleet_prefix }}_device"
    policy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Action: iot:Connect
          Resource: "arn:aws:iot:{{ region }}:{{ account_id }}:client/${iot:Connection.Thing.ThingName}"
        - Effect: Allow
          Action: [iot:Publish, iot:Receive]
          Resource:
            - "arn:aws:iot:{{ region }}:{{ account_id }}:topic/${iot:Connection.Thing.ThingName}/telemetry"
            - "arn:aws:iot:{{ region }}:{{ account_id }}:topic/${iot:Connection.Thing.ThingName}/downlink"
  register: device_policy

- name: The same policy from a JSON file
  iotfleet.aws.iot_policy:
    name: "{{ iotfleet_prefix }}_device"
    policy: "{{ lookup('ansible.builtin.file', 'device-policy.json') }}"

- name: Delete a policy, detaching it from its certificates first
  iotfleet.aws.iot_policy:
    name: "{{ iotfleet_prefix }}_device"
    state: absent
    force: true
"""

RETURN = r"""
policy:
  description:
    - The policy as it is in AWS after the task.
    - Empty when the policy does not exist (after O(state=absent), or in check mode before it is created).
    - In check mode it shows AWS unchanged; the C(diff) shows what would change.
  returned: always
  type: dict
  contains:
    name:
      description: The name of the policy.
      type: str
      returned: when the policy exists
      sample: iotfleet_device
    arn:
      description: The ARN of the policy.
      type: str
      returned: when the policy exists
      sample: arn:aws:iot:eu-north-1:123456789012:policy/iotfleet_device
    default_version_id:
      description: The id of the default (effective) version.
      type: str
      returned: when the policy exists
      sample: "3"
    document:
      description: The default version's document, parsed.
      type: dict
      returned: when the policy exists
      sample: {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
    version_count:
      description: How many versions the policy has (at most 5).
      type: int
      returned: when the policy exists
      sample: 2
diff:
  description: The default version's document before and after the task (empty when there is no policy).
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: The document before the task.
      type: dict
      returned: when diff mode is on
    after:
      description: The document after the task.
      type: dict
      returned: when diff mode is on
"""

import json

from ansible_collections.iotfleet.aws.plugins.module_utils.iot import MAX_POLICY_VERSIONS
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import POLICY_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import create_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import create_iot_policy_version
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_iot_policy_version
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import detach_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import get_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_iot_policy_targets
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_iot_policy_versions
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_name


def parse_policy_document(module, text):
    """The document as a dict; fails naming the option when it is not a JSON object."""
    try:
        document = json.loads(text)
    except ValueError as e:
        shown = text if len(text) <= 60 else text[:57] + "..."
        module.fail_json(msg=f"policy: {shown!r} is not valid JSON: {e}; pass a JSON document or a YAML mapping")
    if not isinstance(document, dict):
        module.fail_json(
            msg=(
                f"policy: a policy document is a JSON object (with Version and Statement), "
                f"not a {type(document).__name__}; pass a JSON document or a YAML mapping"
            )
        )
    return document


def describe_policy(client, name):
    """The policy as the module returns it, or {} when it does not exist."""
    policy = get_iot_policy(client, name)
    if policy is None:
        return {}
    return dict(
        name=policy["policyName"],
        arn=policy["policyArn"],
        default_version_id=policy["defaultVersionId"],
        document=json.loads(policy["policyDocument"]),
        version_count=len(list_iot_policy_versions(client, name)),
    )


def oldest_first(versions):
    # createDate alone can tie (AWS reports whole seconds); version ids are increasing decimal numbers.
    return sorted(versions, key=lambda v: (v["createDate"], int(v["versionId"])))


def make_room_for_a_version(client, name):
    """Delete the oldest non-default versions so that one more version fits under AWS's limit."""
    versions = list_iot_policy_versions(client, name)
    excess = len(versions) - MAX_POLICY_VERSIONS + 1
    if excess <= 0:
        return
    stale = oldest_first(v for v in versions if not v["isDefaultVersion"])
    for version in stale[:excess]:
        delete_iot_policy_version(client, name, version["versionId"])


def ensure_policy_document(module, client, name, current, desired, text):
    if current == desired:
        return False
    if module.check_mode:
        return True
    make_room_for_a_version(client, name)
    create_iot_policy_version(client, name, text)
    return True


def ensure_present(module, client, name, desired, text):
    existing = get_iot_policy(client, name)
    if existing is None:
        current = {}
        changed = True
        if not module.check_mode:
            create_iot_policy(client, name, text)
    else:
        current = json.loads(existing["policyDocument"])
        changed = ensure_policy_document(module, client, name, current, desired, text)
    return changed, current, desired


def ensure_absent(module, client, name, force):
    existing = get_iot_policy(client, name)
    if existing is None:
        return False, {}, {}
    current = json.loads(existing["policyDocument"])
    targets = list_iot_policy_targets(client, name)
    if targets and not force:
        module.fail_json(
            msg=(
                f"name: policy {name!r} is attached to {len(targets)} target(s): {', '.join(targets)}. "
                "Detach it from them first, or set force: true to detach it and delete the policy."
            ),
            targets=targets,
        )
    if module.check_mode:
        return True, current, {}
    for target in targets:
        detach_iot_policy(client, name, target)
    # AWS deletes a policy only once its non-default versions are gone.
    for version in list_iot_policy_versions(client, name):
        if not version["isDefaultVersion"]:
            delete_iot_policy_version(client, name, version["versionId"])
    delete_iot_policy(client, name, just_detached=bool(targets))
    return True, current, {}


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        policy=dict(type="json"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        force=dict(type="bool", default=False),
    )
    module = IoTModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ["policy"])],
        supports_check_mode=True,
    )
    name = module.params["name"]
    state = module.params["state"]
    validate_name(module, "name", name, POLICY_NAME_RE, "IoT policy name")
    if state == "present":
        text = module.params["policy"]
        if text is None:
            module.fail_json(msg="policy: missing; it is required when state is present")
        desired = parse_policy_document(module, text)

    client = module.iot_client()
    try:
        if state == "present":
            changed, before, after = ensure_present(module, client, name, desired, text)
        else:
            changed, before, after = ensure_absent(module, client, name, module.params["force"])
        result = dict(changed=changed, policy=describe_policy(client, name))
    except AnsibleIoTError as e:
        module.fail_json_aws_error(e)

    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
