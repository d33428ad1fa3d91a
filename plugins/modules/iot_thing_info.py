#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_thing_info
version_added: 0.1.0
short_description: List AWS IoT things by thing group or name prefix, with their principals
description:
  - Lists the AWS IoT Core things directly in any of the static thing groups O(thing_groups), or
    whose name starts with O(name_prefix), or both (then a thing must match both); with neither,
    every thing of the account and region.
  - For each thing, lists its principals (certificate ARNs) unless O(principals=false).
  - Reads only; never changes anything. A thing group that does not exist is not an error; it is
    named in RV(missing_thing_groups).
  - Costs one paginated C(ListThingsInThingGroup) per group (or C(ListThings) without O(thing_groups)),
    plus one C(ListThingPrincipals) per thing found when O(principals=true).
options:
  thing_groups:
    description:
      - Names of static thing groups. Things directly in any of them are listed (members of their
        child groups are not).
    type: list
    elements: str
  name_prefix:
    description:
      - Only things whose name starts with this text.
    type: str
  principals:
    description:
      - Whether to list each thing's principals.
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
    details: The module changes nothing.
  action_group:
    description: Use C(group/iotfleet.aws.aws) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - iotfleet.aws.aws
"""

EXAMPLES = r"""
- name: List the boards of the fleet and of the quarantine group, with their certificates
  iotfleet.aws.iot_thing_info:
    thing_groups:
      - "{{ iotfleet_prefix }}_fleet"
      - "{{ iotfleet_prefix }}_quarantine"
  register: fleet_things

- name: Name them
  ansible.builtin.debug:
    msg: "{{ fleet_things.things | map(attribute='thing_name') | list }}"

- name: List the things whose name starts with 4827E2, without their principals
  iotfleet.aws.iot_thing_info:
    name_prefix: 4827E2
    principals: false
"""

RETURN = r"""
things:
  description: The things found, sorted by name; each listed once.
  returned: always
  type: list
  elements: dict
  contains:
    thing_name:
      description: The name of the thing.
      returned: always
      type: str
      sample: 4827E2E59190
    thing_groups:
      description:
        - Those of O(thing_groups) the thing is directly in, sorted; empty without O(thing_groups).
          Its other groups are not looked up.
      returned: always
      type: list
      elements: str
      sample: ["iotfleet_fleet"]
    principals:
      description: The ARNs of the principals (certificates) attached to the thing, sorted.
      returned: when O(principals=true)
      type: list
      elements: str
      sample:
        - arn:aws:iot:eu-north-1:123456789012:cert/3f1c0e6e6f4b2a7d9c8e5b1a0d2f4e6c8a9b7d5e3f1a2c4e6b8d0f2a4c6e8b0d
missing_thing_groups:
  description: Those of O(thing_groups) that do not exist, sorted.
  returned: always
  type: list
  elements: str
  sample: ["iotfleet_quarantine"]
"""

from ansible_collections.iotfleet.aws.plugins.module_utils.iot import GROUP_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import iot_retry_decorator
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_group_member_names
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_principals
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_things_with_attributes
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_name


def find_things(client, groups, prefix):
    """({thing name: sorted groups it was found in}, sorted missing groups)."""
    found, missing = {}, []
    if groups is None:
        found = {thing["thingName"]: [] for thing in list_things_with_attributes(client)}
    for group in sorted(set(groups or [])):
        members = list_thing_group_member_names(client, group)
        if members is None:
            missing.append(group)
            continue
        for name in members:
            found.setdefault(name, []).append(group)
    if prefix:
        found = {name: in_groups for name, in_groups in found.items() if name.startswith(prefix)}
    return found, missing


def main():
    argument_spec = dict(
        thing_groups=dict(type="list", elements="str"),
        name_prefix=dict(type="str"),
        principals=dict(type="bool", default=True),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    for group in module.params["thing_groups"] or []:
        validate_name(module, "thing_groups", group, GROUP_NAME_RE, "thing group name")
    client = module.client("iot", retry_decorator=iot_retry_decorator())
    things = []
    try:
        found, missing = find_things(client, module.params["thing_groups"], module.params["name_prefix"])
        for name in sorted(found):
            thing = dict(thing_name=name, thing_groups=found[name])
            if module.params["principals"]:
                principals = list_thing_principals(client, name)
                if principals is None:  # deleted since it was listed
                    continue
                thing["principals"] = sorted(principals)
            things.append(thing)
    except AnsibleIoTError as e:
        module.fail_json_aws_error(e)
    module.exit_json(changed=False, things=things, missing_thing_groups=missing)


if __name__ == "__main__":
    main()
