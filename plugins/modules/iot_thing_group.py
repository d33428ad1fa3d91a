#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_thing_group
version_added: 0.1.0
short_description: Create, update and delete AWS IoT static thing groups
description:
  - Creates an AWS IoT Core static thing group, keeps its description and attributes as requested,
    or deletes it.
  - A thing group's parent is fixed when it is created; AWS cannot move a group to another parent,
    so asking for a different O(parent_group) on an existing group fails without changing anything.
  - Updates carry the group's version, so a change made by someone else in between makes the
    update fail instead of being overwritten.
options:
  name:
    description:
      - The name of the thing group.
      - 1 to 128 letters, digits, C(:), C(_) or C(-).
    type: str
    required: true
  description:
    description:
      - The description of the thing group.
      - When omitted, an existing group's description is left as it is. Use an empty string to clear it.
    type: str
  attributes:
    description:
      - Attributes of the thing group, names to string values.
      - Names match C([a-zA-Z0-9_.,@/:#-]+); values match C([a-zA-Z0-9_.,@/:#=\[\]-]+) (no spaces).
      - Numbers are turned into strings; other non-string values fail.
      - When omitted, the group's attributes are left as they are.
    type: dict
  purge_attributes:
    description:
      - Remove attributes of the group that are not listed in O(attributes).
      - Only applies when O(attributes) is given.
    type: bool
    default: false
  parent_group:
    description:
      - The parent thing group, used only when the group is created. The parent must exist.
      - When the group exists with another parent (or none), the module fails; delete and recreate
        the group to move it.
    type: str
  state:
    description:
      - Whether the thing group should exist.
      - A group that still has child groups cannot be deleted; delete the children first.
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
- name: A group for the whole fleet
  iotfleet.aws.iot_thing_group:
    name: "{{ iotfleet_prefix }}_fleet"
    description: All boards of the fleet
    attributes:
      owner: iotfleet

- name: A quarantine group for revoked boards, under the fleet group
  iotfleet.aws.iot_thing_group:
    name: "{{ iotfleet_prefix }}_quarantine"
    parent_group: "{{ iotfleet_prefix }}_fleet"

- name: Set the attributes exactly, removing any others
  iotfleet.aws.iot_thing_group:
    name: "{{ iotfleet_prefix }}_fleet"
    attributes:
      owner: iotfleet
    purge_attributes: true

- name: Delete a group
  iotfleet.aws.iot_thing_group:
    name: "{{ iotfleet_prefix }}_quarantine"
    state: absent
"""

RETURN = r"""
thing_group:
  description:
    - The thing group after the module ran; empty when O(state=absent).
    - In check mode, when the group would be created, only the requested values (no ARN, id or version).
  returned: always
  type: dict
  contains:
    thing_group_name:
      description: The name of the group.
      returned: when O(state=present)
      type: str
      sample: iotfleet_fleet
    thing_group_arn:
      description: The ARN of the group.
      returned: when O(state=present), except in check mode when the group would be created
      type: str
      sample: arn:aws:iot:eu-north-1:123456789012:thinggroup/iotfleet_fleet
    thing_group_id:
      description: The id AWS gave the group.
      returned: when O(state=present), except in check mode when the group would be created
      type: str
      sample: 0f9cd4b6-9b1d-4b4f-9c1e-3b8a1d2c9e5f
    description:
      description: The description of the group; empty when it has none.
      returned: when O(state=present)
      type: str
      sample: All boards of the fleet
    attributes:
      description: The attributes of the group.
      returned: when O(state=present)
      type: dict
      sample: {"owner": "iotfleet"}
    parent_group_name:
      description: The name of the parent group, or null for a root group.
      returned: when O(state=present)
      type: str
      sample: iotfleet_fleet
    version:
      description: The version of the group, raised by every update.
      returned: when O(state=present), except in check mode when the group would be created
      type: int
      sample: 2
"""

from ansible_collections.iotfleet.aws.plugins.module_utils.iot import GROUP_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import create_thing_group
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_thing_group
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_thing_group
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_child_thing_group_names
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_thing_group
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_attributes
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_name


def normalize_group(described):
    """The module's view of a DescribeThingGroup answer."""
    properties = described.get("thingGroupProperties") or {}
    attributes = (properties.get("attributePayload") or {}).get("attributes") or {}
    return dict(
        thing_group_name=described["thingGroupName"],
        thing_group_arn=described["thingGroupArn"],
        thing_group_id=described["thingGroupId"],
        description=properties.get("thingGroupDescription") or "",
        # AWS removes an attribute set to "" (the documented way to remove one); drop any left over.
        attributes={key: value for key, value in attributes.items() if value != ""},
        parent_group_name=(described.get("thingGroupMetadata") or {}).get("parentGroupName"),
        version=described["version"],
    )


def desired_attributes(current, attributes, purge):
    if purge:
        return dict(attributes)
    return {**current, **attributes}


def ensure_description(module, client, group):
    description = module.params["description"]
    if description is None or description == group["description"]:
        return False
    if not module.check_mode:
        properties = dict(thingGroupDescription=description)
        group["version"] = update_thing_group(client, group["thing_group_name"], properties, group["version"])
    group["description"] = description
    return True


def ensure_attributes(module, client, group, attributes):
    if attributes is None:
        return False
    wanted = desired_attributes(group["attributes"], attributes, module.params["purge_attributes"])
    if wanted == group["attributes"]:
        return False
    if not module.check_mode:
        # Merge the changed keys and set removed ones to "", which is how AWS removes an attribute.
        payload = {key: value for key, value in wanted.items() if group["attributes"].get(key) != value}
        payload.update({key: "" for key in group["attributes"] if key not in wanted})
        properties = dict(attributePayload=dict(attributes=payload, merge=True))
        group["version"] = update_thing_group(client, group["thing_group_name"], properties, group["version"])
    group["attributes"] = wanted
    return True


def check_parent(module, client, current):
    """Fail before any write when parent_group cannot be honoured."""
    parent = module.params["parent_group"]
    if parent is None:
        return
    if current is not None:
        if current["parent_group_name"] != parent:
            actual = f"parent {current['parent_group_name']!r}" if current["parent_group_name"] else "no parent"
            module.fail_json(
                msg=(
                    f"parent_group: thing group {current['thing_group_name']!r} already exists with {actual}; "
                    f"AWS cannot move a thing group to another parent. Delete and recreate the group "
                    f"(its things must then be added again), or set parent_group to its current parent."
                )
            )
        return
    if describe_thing_group(client, parent) is None:
        module.fail_json(
            msg=f"parent_group: no thing group {parent!r} in this account/region; create the parent group first."
        )


def create_group(module, client, attributes):
    name = module.params["name"]
    predicted = dict(
        thing_group_name=name,
        description=module.params["description"] or "",
        attributes=attributes or {},
        parent_group_name=module.params["parent_group"],
    )
    if not module.check_mode:
        properties = dict(attributePayload=dict(attributes=attributes or {}))
        if module.params["description"]:
            properties["thingGroupDescription"] = module.params["description"]
        create_thing_group(client, name, properties, parent=module.params["parent_group"])
    return predicted


def ensure_present(module, client, current):
    attributes = validate_attributes(module, "attributes", module.params["attributes"])
    check_parent(module, client, current)
    before = dict(current) if current else {}
    if current is None:
        predicted = create_group(module, client, attributes)
        changed = True
    else:
        predicted = dict(current)
        changed = False
        changed |= ensure_description(module, client, predicted)
        changed |= ensure_attributes(module, client, predicted, attributes)
    after = predicted
    if not module.check_mode:
        after = normalize_group(describe_thing_group(client, module.params["name"]))
    return changed, before, after


def ensure_absent(module, client, current):
    if current is None:
        return False, {}, {}
    name = current["thing_group_name"]
    children = list_child_thing_group_names(client, name)
    if children:
        module.fail_json(
            msg=(
                f"state: thing group {name!r} still has child groups {sorted(children)}; "
                f"delete them (state=absent) before deleting {name!r}."
            )
        )
    if not module.check_mode:
        delete_thing_group(client, name)
    return True, current, {}


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        attributes=dict(type="dict"),
        purge_attributes=dict(type="bool", default=False),
        parent_group=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    validate_name(module, "name", module.params["name"], GROUP_NAME_RE, "thing group name")
    validate_name(module, "parent_group", module.params["parent_group"], GROUP_NAME_RE, "thing group name")
    client = module.iot_client()
    try:
        described = describe_thing_group(client, module.params["name"])
        current = normalize_group(described) if described else None
        if module.params["state"] == "present":
            changed, before, after = ensure_present(module, client, current)
        else:
            changed, before, after = ensure_absent(module, client, current)
    except AnsibleIoTError as e:
        module.fail_json_aws_error(e)
    result = dict(changed=changed, thing_group=after)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
