#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: amplify_secret
version_added: 0.1.0
short_description: Set or delete the shared secrets of an AWS Amplify (Gen 2) app
description:
  - Amplify Gen 2 keeps the secrets shared by all branches of an app as SSM Parameter Store
    C(SecureString) parameters named C(/amplify/shared/<app_id>/<NAME>). This module writes and
    deletes several of them in one task.
  - A secret is written only when it is missing, its value differs from the decrypted current value,
    it is not a C(SecureString), or it is encrypted with another KMS key than O(key_id). An existing
    secret is overwritten in place (a new parameter version).
  - Values never leave the module, neither in the result nor in the diff; the diff shows
    C(<hidden>) and whether each value changed. O(secrets) is C(no_log), so Ansible masks the values
    in its own output too.
  - The module does not check that the Amplify app exists, so secrets can be written before the app
    is deployed (and on a sandbox without Amplify).
  - Compared with M(community.aws.ssm_parameter), which already compares a C(SecureString)'s decrypted
    value and does not return it, this module adds the Amplify path naming and its name rule, several
    secrets per task (one module run instead of one per secret), detection of a different KMS key,
    and diff mode. For a single parameter outside Amplify's path, use M(community.aws.ssm_parameter).
options:
  app_id:
    description:
      - The id of the Amplify app (RV(iotfleet.aws.amplify_app#module:app.app_id)), such as C(d1x2y3z4w5v6u7).
      - Letters and digits only.
    type: str
    required: true
  secrets:
    description:
      - With O(state=present), the secrets to set, names to values.
      - Names are upper-case letters, digits and C(_) (C(CUSTOM_LAMBDA_GRAPHQL_KEY)). Values are
        non-empty strings; numbers are turned into strings.
      - Secrets of the app that are not listed are left as they are.
    type: dict
  names:
    description:
      - With O(state=absent), the names of the secrets to delete. Missing ones are skipped.
    type: list
    elements: str
  key_id:
    description:
      - The KMS key that encrypts the secrets (key id, key ARN, alias name or alias ARN).
      - When omitted, new secrets use the account's AWS managed key for SSM (C(alias/aws/ssm)) and the
        key of existing ones is not checked.
    type: str
  state:
    description:
      - Whether the secrets should exist.
    type: str
    default: present
    choices: [present, absent]
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: The backend settings the Lambdas and the Amplify app share
  iotfleet.aws.amplify_secret:
    app_id: "{{ amplify.app.app_id }}"
    secrets:
      CUSTOM_LAMBDA_GRAPHQL_ENDPOINT: "{{ graphql.api.uris.GRAPHQL }}"
      CUSTOM_LAMBDA_GRAPHQL_KEY: "{{ graphql.api_key.id }}"
      CUSTOM_DISCORD_ENDPOINT: "{{ discord_webhook_url }}"

- name: Remove a secret
  iotfleet.aws.amplify_secret:
    app_id: "{{ amplify.app.app_id }}"
    names: [CUSTOM_DISCORD_ENDPOINT]
    state: absent
"""

RETURN = r"""
parameters:
  description:
    - The SSM parameters of the secrets named in the task, as they are after it (in check mode, as they
      are before it), sorted by secret name. Missing ones are left out. Values are never returned.
  returned: always
  type: list
  elements: dict
  contains:
    secret:
      description: The name of the secret.
      type: str
      returned: always
      sample: CUSTOM_LAMBDA_GRAPHQL_KEY
    name:
      description: The name of the SSM parameter.
      type: str
      returned: always
      sample: /amplify/shared/d1x2y3z4w5v6u7/CUSTOM_LAMBDA_GRAPHQL_KEY
    type:
      description: The parameter type.
      type: str
      returned: always
      sample: SecureString
    version:
      description: The parameter version; it grows by one with each write.
      type: int
      returned: always
      sample: 2
    key_id:
      description: The KMS key that encrypts the value.
      type: str
      returned: always
      sample: alias/aws/ssm
changed_secrets:
  description: The names of the secrets written or deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [CUSTOM_LAMBDA_GRAPHQL_KEY]
diff:
  description: Per secret, C(<hidden>) instead of its value, marked C(<hidden, changed>) after a new value, and its key.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: The secrets before the task.
      type: dict
      returned: when diff mode is on
      sample: {"CUSTOM_LAMBDA_GRAPHQL_KEY": {"value": "<hidden>", "key_id": "alias/aws/ssm"}}
    after:
      description: The secrets after the task.
      type: dict
      returned: when diff mode is on
      sample: {"CUSTOM_LAMBDA_GRAPHQL_KEY": {"value": "<hidden, changed>", "key_id": "alias/aws/ssm"}}
"""

from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import APP_ID_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import SECRET_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import AnsibleAmplifyError
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import delete_secret_parameter
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import describe_secret_parameters
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import get_secret_parameter
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import put_secret_parameter
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import secret_path
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import ssm_client
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule

HIDDEN = "<hidden>"
HIDDEN_CHANGED = "<hidden, changed>"
DEFAULT_KEY = "alias/aws/ssm"
MAX_VALUE_BYTES = 4096


def check_name(module, option, name):
    if not SECRET_NAME_RE.match(name):
        module.fail_json(
            msg=(
                f"{option}: {name!r} is not a valid secret name; it must match {SECRET_NAME_RE.pattern} "
                "(upper-case letters, digits and _), such as CUSTOM_LAMBDA_GRAPHQL_KEY"
            )
        )


def wanted_secrets(module):
    """{name: value as a string}; fails naming the secret (never its value) when a value is unusable."""
    secrets = {}
    for name, value in module.params["secrets"].items():
        check_name(module, "secrets", name)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            module.fail_json(msg=f"secrets.{name}: the value is a {type(value).__name__}, not a string")
        size = len(str(value).encode("utf-8"))
        if size == 0:
            module.fail_json(msg=f"secrets.{name}: the value is empty; SSM stores only non-empty values")
        if size > MAX_VALUE_BYTES:
            module.fail_json(msg=f"secrets.{name}: the value is {size} bytes; SSM's standard tier stores at most 4 KB")
        secrets[name] = str(value)
    return secrets


def check_options(module):
    if not APP_ID_RE.match(module.params["app_id"]):
        module.fail_json(
            msg=f"app_id: {module.params['app_id']!r} is not an Amplify app id; it must match {APP_ID_RE.pattern}"
        )
    if module.params["state"] == "present":
        if module.params["secrets"] is None:
            module.fail_json(msg="secrets: required with state=present (names to values)")
        if module.params["names"] is not None:
            module.fail_json(msg="names: only used with state=absent; with state=present, list the secrets in secrets")
        return wanted_secrets(module)
    if module.params["names"] is None:
        module.fail_json(msg="names: required with state=absent (the names of the secrets to delete)")
    if module.params["secrets"] is not None:
        module.fail_json(msg="secrets: not used with state=absent; list the names to delete in names")
    for name in module.params["names"]:
        check_name(module, "names", name)
    return {name: None for name in module.params["names"]}


def same_key(current, wanted):
    """Whether the KMS key AWS reports is the one asked for, given as id, ARN, alias or alias ARN."""
    current = current or DEFAULT_KEY
    return current == wanted or current.endswith((f":{wanted}", f"/{wanted}"))


def secret_summary(metadata, changed=False):
    return dict(value=HIDDEN_CHANGED if changed else HIDDEN, key_id=metadata.get("KeyId") or DEFAULT_KEY)


def needs_write(module, client, path, value, metadata):
    """(write needed, value differs): reads the decrypted value only to compare it."""
    if metadata is None:
        return True, True
    current = get_secret_parameter(client, path)
    if current is None:
        return True, True
    value_differs = current["Value"] != value
    key_id = module.params["key_id"]
    key_differs = key_id is not None and not same_key(metadata.get("KeyId"), key_id)
    return value_differs or key_differs or metadata.get("Type") != "SecureString", value_differs


def ensure_present(module, client, app_id, secrets, existing):
    changed, before, after = [], {}, {}
    for name in sorted(secrets):
        path = secret_path(app_id, name)
        metadata = existing.get(path)
        write, value_differs = needs_write(module, client, path, secrets[name], metadata)
        if metadata is not None:
            before[name] = secret_summary(metadata)
        after[name] = dict(
            value=HIDDEN_CHANGED if value_differs else HIDDEN,
            key_id=module.params["key_id"] or (metadata or {}).get("KeyId") or DEFAULT_KEY,
        )
        if not write:
            continue
        changed.append(name)
        if not module.check_mode:
            put_secret_parameter(client, path, secrets[name], module.params["key_id"], overwrite=metadata is not None)
    return changed, before, after


def ensure_absent(module, client, app_id, names, existing):
    changed, before = [], {}
    for name in sorted(names):
        path = secret_path(app_id, name)
        if path not in existing:
            continue
        before[name] = secret_summary(existing[path])
        changed.append(name)
        if not module.check_mode:
            delete_secret_parameter(client, path)
    return changed, before, {}


def describe(client, app_id, names):
    paths = {secret_path(app_id, name): name for name in names}
    found = describe_secret_parameters(client, sorted(paths))
    return [
        dict(
            secret=paths[path],
            name=path,
            type=metadata["Type"],
            version=metadata["Version"],
            key_id=metadata.get("KeyId") or DEFAULT_KEY,
        )
        for path, metadata in sorted(found.items(), key=lambda item: paths[item[0]])
    ]


def main():
    argument_spec = dict(
        app_id=dict(type="str", required=True),
        secrets=dict(type="dict", no_log=True),
        names=dict(type="list", elements="str"),
        key_id=dict(type="str", no_log=False),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    secrets = check_options(module)
    app_id = module.params["app_id"]
    client = ssm_client(module)
    try:
        existing = describe_secret_parameters(client, sorted(secret_path(app_id, name) for name in secrets))
        if module.params["state"] == "present":
            changed, before, after = ensure_present(module, client, app_id, secrets, existing)
        else:
            changed, before, after = ensure_absent(module, client, app_id, secrets, existing)
        parameters = describe(client, app_id, secrets)
    except AnsibleAmplifyError as e:
        module.fail_json_aws_error(e)
    result = dict(changed=bool(changed), changed_secrets=changed, parameters=parameters)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
