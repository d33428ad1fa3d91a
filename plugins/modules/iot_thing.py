#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_thing
version_added: 0.1.0
short_description: Create, update and delete AWS IoT things
description:
  - Creates an AWS IoT Core thing, keeps its thing type, attributes and static thing group
    membership as requested, or deletes it.
  - Deleting a thing first detaches every principal (certificate) from it and waits until AWS has
    finished detaching them, since AWS detaches asynchronously and refuses to delete a thing that
    still has principals. The certificates themselves are not deleted; use
    M(iotfleet.aws.iot_certificate) for that.
  - Every input is checked (names, attribute values, that the thing type and thing groups exist)
    before anything is written, so a bad input leaves the thing as it was.
options:
  name:
    description:
      - The name of the thing.
      - 1 to 128 letters, digits, C(:), C(_) or C(-) (AWS's rule). The fleet names each board's thing
        after its base MAC address, 12 upper-case hex digits such as C(4827E2E59190).
    type: str
    required: true
  thing_type:
    description:
      - The thing type of the thing. It must exist and not be deprecated; the module does not create it.
      - When omitted, the thing's type is left as it is.
    type: str
  attributes:
    description:
      - Attributes of the thing, names to string values.
      - Names match C([a-zA-Z0-9_.,@/:#-]+); values match C([a-zA-Z0-9_.,@/:#=\[\]-]+) (no spaces).
      - Numbers are turned into strings; other non-string values fail.
      - When omitted, the thing's attributes are left as they are.
    type: dict
  purge_attributes:
    description:
      - Remove attributes of the thing that are not listed in O(attributes).
      - Only applies when O(attributes) is given.
    type: bool
    default: false
  thing_groups:
    description:
      - The static thing groups the thing belongs to, set exactly to this list (the thing is added to
        the missing ones and removed from the others). Use an empty list to remove it from all groups.
      - Every group must exist; at most 10, and at most one per group hierarchy (AWS's rules).
      - When omitted, the thing's group membership is left as it is.
    type: list
    elements: str
  state:
    description:
      - Whether the thing should exist.
    type: str
    default: present
    choices: [present, absent]
  wait_timeout:
    description:
      - With O(state=absent), how many seconds to wait for AWS to finish detaching the thing's
        principals before the thing is deleted.
    type: int
    default: 60
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: Register a board as a thing in the fleet group
  iotfleet.aws.iot_thing:
    name: 4827E2E59190
    attributes:
      chip: ESP32-S3
      owner: iotfleet
    thing_groups:
      - "{{ iotfleet_prefix }}_fleet"

- name: Set the attributes exactly, removing any others
  iotfleet.aws.iot_thing:
    name: 4827E2E59190
    attributes:
      chip: ESP32-S3
    purge_attributes: true

- name: Delete a board's thing (its certificates are detached first, not deleted)
  iotfleet.aws.iot_thing:
    name: 4827E2E59190
    state: absent
"""

RETURN = r"""
thing:
  description:
    - The thing after the module ran; empty when O(state=absent).
    - In check mode, when the thing would be created, only the requested values (no ARN, id or version).
  returned: always
  type: dict
  contains:
    thing_name:
      description: The name of the thing.
      returned: when O(state=present)
      type: str
      sample: 4827E2E59190
    thing_arn:
      description: The ARN of the thing.
      returned: when O(state=present), except in check mode when the thing would be created
      type: str
      sample: arn:aws:iot:eu-north-1:123456789012:thing/4827E2E59190
    thing_id:
      description: The id AWS gave the thing.
      returned: when O(state=present), except in check mode when the thing would be created
      type: str
      sample: 5e1f7d0c-8a1b-4c36-9f4e-2d6b7a8c9d0e
    thing_type_name:
      description: The thing type of the thing, or null when it has none.
      returned: when O(state=present)
      type: str
      sample: esp32
    attributes:
      description: The attributes of the thing.
      returned: when O(state=present)
      type: dict
      sample: {"chip": "ESP32-S3"}
    version:
      description: The version of the thing's registry entry.
      returned: when O(state=present), except in check mode when the thing would be created
      type: int
      sample: 1
    thing_groups:
      description: The names of the thing groups the thing belongs to, sorted.
      returned: when O(state=present)
      type: list
      elements: str
      sample: ["iotfleet_fleet"]
    principals:
      description: The ARNs of the principals (certificates) attached to the thing, sorted.
      returned: when O(state=present)
      type: list
      elements: str
      sample:
        - arn:aws:iot:eu-north-1:123456789012:cert/3f1c0e6e6f4b2a7d9c8e5b1a0d2f4e6c8a9b7d5e3f1a2c4e6b8d0f2a4c6e8b0d
"""

import time

from ansible_collections.iotfleet.aws.plugins.module_utils.iot import GROUP_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import THING_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import create_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_thing_group
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_thing_type
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import detach_thing_principal
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_group_names_for_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_principals
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_thing_groups_for_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_attributes
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_name

# AWS lets a thing belong to at most this many thing groups.
MAX_THING_GROUPS = 10
# Seconds between two looks at the principals still attached while waiting for detachment.
DETACH_POLL_INTERVAL = 2


def read_thing(client, name):
    """The module's view of the thing, or None when it does not exist."""
    described = describe_thing(client, name)
    if described is None:
        return None
    return dict(
        thing_name=described["thingName"],
        thing_arn=described["thingArn"],
        thing_id=described["thingId"],
        thing_type_name=described.get("thingTypeName"),
        attributes=described.get("attributes") or {},
        version=described["version"],
        thing_groups=sorted(list_thing_group_names_for_thing(client, name) or []),
        principals=sorted(list_thing_principals(client, name) or []),
    )


def check_thing_type(module, client, current):
    """Fail before any write when the requested thing type cannot be used."""
    thing_type = module.params["thing_type"]
    if thing_type is None or (current and current["thing_type_name"] == thing_type):
        return
    validate_name(module, "thing_type", thing_type, THING_NAME_RE, "thing type name")
    described = describe_thing_type(client, thing_type)
    if described is None:
        module.fail_json(
            msg=(
                f"thing_type: no thing type {thing_type!r} in this account/region; create it first "
                f"(AWS CreateThingType) or leave thing_type out."
            )
        )
    if (described.get("thingTypeMetadata") or {}).get("deprecated"):
        module.fail_json(msg=f"thing_type: thing type {thing_type!r} is deprecated; AWS does not assign it to things.")


def check_thing_groups(module, client):
    """Fail before any write when the requested groups do not exist or break AWS's membership rules."""
    groups = module.params["thing_groups"]
    if groups is None:
        return
    if len(set(groups)) > MAX_THING_GROUPS:
        module.fail_json(msg=f"thing_groups: {len(set(groups))} groups given; AWS allows at most {MAX_THING_GROUPS}.")
    for group in groups:
        validate_name(module, "thing_groups", group, GROUP_NAME_RE, "thing group name")
    roots = {}
    for group in sorted(set(groups)):
        described = describe_thing_group(client, group)
        if described is None:
            module.fail_json(
                msg=(
                    f"thing_groups: no thing group {group!r} in this account/region; create it first "
                    f"(iotfleet.aws.iot_thing_group) or remove it from the list."
                )
            )
        ancestors = (described.get("thingGroupMetadata") or {}).get("rootToParentThingGroups") or []
        root = ancestors[0]["groupName"] if ancestors else group
        if root in roots:
            module.fail_json(
                msg=(
                    f"thing_groups: {roots[root]!r} and {group!r} belong to the same hierarchy (root {root!r}); "
                    f"AWS lets a thing belong to only one group per hierarchy. Keep one of them."
                )
            )
        roots[root] = group


def desired_attributes(current, attributes, purge):
    if purge:
        return dict(attributes)
    return {**current, **attributes}


def ensure_thing_type(module, client, thing):
    thing_type = module.params["thing_type"]
    if thing_type is None or thing_type == thing["thing_type_name"]:
        return False
    if not module.check_mode:
        update_thing(client, thing["thing_name"], thingTypeName=thing_type)
    thing["thing_type_name"] = thing_type
    return True


def ensure_attributes(module, client, thing, attributes):
    if attributes is None:
        return False
    wanted = desired_attributes(thing["attributes"], attributes, module.params["purge_attributes"])
    if wanted == thing["attributes"]:
        return False
    if not module.check_mode:
        # Merge the changed keys and set removed ones to "", which is how AWS removes an attribute.
        payload = {key: value for key, value in wanted.items() if thing["attributes"].get(key) != value}
        payload.update({key: "" for key in thing["attributes"] if key not in wanted})
        update_thing(client, thing["thing_name"], attributePayload=dict(attributes=payload, merge=True))
    thing["attributes"] = wanted
    return True


def ensure_thing_groups(module, client, thing):
    groups = module.params["thing_groups"]
    if groups is None:
        return False
    wanted = set(groups)
    current = set(thing["thing_groups"])
    if wanted == current:
        return False
    if not module.check_mode:
        update_thing_groups_for_thing(client, thing["thing_name"], sorted(wanted - current), sorted(current - wanted))
    thing["thing_groups"] = sorted(wanted)
    return True


def create(module, client, attributes):
    name = module.params["name"]
    if not module.check_mode:
        create_thing(client, name, thing_type=module.params["thing_type"], attributes=attributes)
    return dict(
        thing_name=name,
        thing_type_name=module.params["thing_type"],
        attributes=attributes or {},
        thing_groups=[],
        principals=[],
    )


def ensure_present(module, client, current):
    attributes = validate_attributes(module, "attributes", module.params["attributes"])
    check_thing_type(module, client, current)
    check_thing_groups(module, client)
    before = dict(current) if current else {}
    changed = current is None
    thing = create(module, client, attributes) if current is None else dict(current)
    if current is not None:
        changed |= ensure_thing_type(module, client, thing)
        changed |= ensure_attributes(module, client, thing, attributes)
    changed |= ensure_thing_groups(module, client, thing)
    after = thing if module.check_mode else read_thing(client, module.params["name"])
    return changed, before, after


def wait_for_principals_detached(module, client, name):
    deadline = time.monotonic() + module.params["wait_timeout"]
    while True:
        remaining = list_thing_principals(client, name) or []
        if not remaining:
            return
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=(
                    f"wait_timeout: principals {sorted(remaining)} were still attached to thing {name!r} after "
                    f"{module.params['wait_timeout']} s; the thing was not deleted. Run again or raise wait_timeout."
                )
            )
        time.sleep(DETACH_POLL_INTERVAL)


def ensure_absent(module, client, current):
    if current is None:
        return False, {}, {}
    if not module.check_mode:
        name = current["thing_name"]
        for principal in current["principals"]:
            detach_thing_principal(client, name, principal)
        if current["principals"]:
            wait_for_principals_detached(module, client, name)
        delete_thing(client, name)
    return True, current, {}


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        thing_type=dict(type="str"),
        attributes=dict(type="dict"),
        purge_attributes=dict(type="bool", default=False),
        thing_groups=dict(type="list", elements="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        wait_timeout=dict(type="int", default=60),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    validate_name(module, "name", module.params["name"], THING_NAME_RE, "thing name")
    if module.params["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout: must be 0 or more seconds.")
    client = module.iot_client()
    try:
        current = read_thing(client, module.params["name"])
        if module.params["state"] == "present":
            changed, before, after = ensure_present(module, client, current)
        else:
            changed, before, after = ensure_absent(module, client, current)
    except AnsibleIoTError as e:
        module.fail_json_aws_error(e)
    result = dict(changed=changed, thing=after)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
