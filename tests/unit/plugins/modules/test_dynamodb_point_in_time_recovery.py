import boto3
import pytest

from ansible_collections.iotfleet.aws.plugins.modules import dynamodb_point_in_time_recovery as module


@pytest.fixture
def table(aws):
    client = boto3.client("dynamodb", region_name=aws)
    client.create_table(
        TableName="iotfleet_telemetry",
        KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def pitr_status(client):
    described = client.describe_continuous_backups(TableName="iotfleet_telemetry")
    return described["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]


def test_enables_then_reports_no_change(table, run_module):
    first = run_module(module, {"table_name": "iotfleet_telemetry"})
    second = run_module(module, {"table_name": "iotfleet_telemetry"})

    assert first["changed"] is True
    assert first["point_in_time_recovery"]["enabled"] is True
    assert second["changed"] is False
    assert pitr_status(table) == "ENABLED"


def test_check_mode_predicts_without_writing(table, run_module):
    result = run_module(module, {"table_name": "iotfleet_telemetry"}, check_mode=True, diff=True)

    assert result["changed"] is True
    assert result["diff"] == {
        "before": {"table_name": "iotfleet_telemetry", "enabled": False},
        "after": {"table_name": "iotfleet_telemetry", "enabled": True},
    }
    assert pitr_status(table) == "DISABLED"


def test_disables(table, run_module):
    run_module(module, {"table_name": "iotfleet_telemetry"})
    result = run_module(module, {"table_name": "iotfleet_telemetry", "enabled": False})

    assert result["changed"] is True
    assert pitr_status(table) == "DISABLED"


def test_missing_table_names_the_option(aws, run_module):
    result = run_module(module, {"table_name": "nope"}, expect_failure=True)

    assert result["msg"].startswith("table_name: no DynamoDB table 'nope'")


def test_recovery_period_out_of_range_is_refused(table, run_module):
    result = run_module(module, {"table_name": "iotfleet_telemetry", "recovery_period_days": 90}, expect_failure=True)

    assert "recovery_period_days" in result["msg"]
    assert pitr_status(table) == "DISABLED"
