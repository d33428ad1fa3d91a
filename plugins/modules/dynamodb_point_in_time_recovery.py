#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: dynamodb_point_in_time_recovery
version_added: 0.1.0
short_description: Turn DynamoDB point-in-time recovery on or off for a table
description:
  - Enables or disables point-in-time recovery (continuous backups) of an existing DynamoDB table.
  - community.aws.dynamodb_table has no option for it; this module fills exactly that gap.
options:
  table_name:
    description:
      - Name of the table. The table must exist.
    type: str
    required: true
  enabled:
    description:
      - Whether point-in-time recovery is on.
    type: bool
    default: true
  recovery_period_days:
    description:
      - Number of preceding days that can be restored, 1 to 35.
      - Only compared when the service reports it; AWS's default is 35.
    type: int
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: Keep 35 days of restorable history of the telemetry table
  iotfleet.aws.dynamodb_point_in_time_recovery:
    table_name: iotfleet_telemetry
    enabled: true
"""

RETURN = r"""
point_in_time_recovery:
  description: The table's point-in-time recovery settings after the run.
  returned: always
  type: dict
  contains:
    table_name:
      description: The table.
      type: str
      returned: always
      sample: iotfleet_telemetry
    enabled:
      description: Whether point-in-time recovery is on.
      type: bool
      returned: always
      sample: true
    recovery_period_days:
      description: Restorable days, when the service reports it.
      type: int
      returned: when reported
      sample: 35
"""

from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.iotfleet.aws.plugins.module_utils.dynamodb import AnsibleDynamoDBError
from ansible_collections.iotfleet.aws.plugins.module_utils.dynamodb import describe_point_in_time_recovery
from ansible_collections.iotfleet.aws.plugins.module_utils.dynamodb import update_point_in_time_recovery
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule


def summarise(table_name, description):
    summary = {
        "table_name": table_name,
        "enabled": description.get("PointInTimeRecoveryStatus") in ("ENABLED", "ENABLING"),
    }
    if description.get("RecoveryPeriodInDays"):
        summary["recovery_period_days"] = description["RecoveryPeriodInDays"]
    return summary


def needs_update(current, enabled, recovery_period_days):
    if current["enabled"] != enabled:
        return True
    reported = current.get("recovery_period_days")
    return bool(enabled and recovery_period_days and reported and reported != recovery_period_days)


def main():
    argument_spec = dict(
        table_name=dict(type="str", required=True),
        enabled=dict(type="bool", default=True),
        recovery_period_days=dict(type="int"),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    table_name = module.params["table_name"]
    enabled = module.params["enabled"]
    days = module.params["recovery_period_days"]
    if days is not None and not 1 <= days <= 35:
        module.fail_json(msg=f"recovery_period_days: {days} is out of range; AWS allows 1 to 35 days.")

    client = module.client("dynamodb", retry_decorator=AWSRetry.jittered_backoff(retries=10))
    try:
        described = describe_point_in_time_recovery(client, table_name)
        if described is None:
            module.fail_json(msg=f"table_name: no DynamoDB table {table_name!r} in this region; create it first.")
        before = summarise(table_name, described)
        after = before
        changed = needs_update(before, enabled, days)
        if changed and module.check_mode:
            after = dict(before, enabled=enabled, **({"recovery_period_days": days} if days and enabled else {}))
        elif changed:
            after = summarise(table_name, update_point_in_time_recovery(client, table_name, enabled, days))
    except AnsibleDynamoDBError as e:
        module.fail_json_aws_error(e)

    result = dict(changed=changed, point_in_time_recovery=after)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
