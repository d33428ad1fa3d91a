# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""DynamoDB calls that amazon.aws and community.aws have no module for (point-in-time recovery)."""

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.errors import AWSErrorHandler
from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError


class AnsibleDynamoDBError(AnsibleAWSError):
    pass


class DynamoDBErrorHandler(AWSErrorHandler):
    _CUSTOM_EXCEPTION = AnsibleDynamoDBError

    @classmethod
    def _is_missing(cls):
        return is_boto3_error_code(["TableNotFoundException", "ResourceNotFoundException"])


@DynamoDBErrorHandler.list_error_handler("describe continuous backups")
def describe_point_in_time_recovery(client, table_name):
    """The table's PointInTimeRecoveryDescription, or None when the table does not exist."""
    description = client.describe_continuous_backups(TableName=table_name, aws_retry=True)
    return description["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})


@DynamoDBErrorHandler.common_error_handler("update continuous backups")
def update_point_in_time_recovery(client, table_name, enabled, recovery_period_days=None):
    specification = {"PointInTimeRecoveryEnabled": enabled}
    if enabled and recovery_period_days:
        specification["RecoveryPeriodInDays"] = recovery_period_days
    description = client.update_continuous_backups(
        TableName=table_name, PointInTimeRecoverySpecification=specification, aws_retry=True
    )
    return description["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
