"""CoreTelemetry with the telemetry rule's real output, a fake AppSync endpoint and moto's SSM."""

import pytest
from common import operations
from common.graphql import GraphQLError
from common.graphql import GraphQLUnavailable
from common.settings import SettingsError

from .conftest import API_KEY
from .conftest import DEVICE
from .conftest import DEVICE_ID
from .conftest import SETTINGS_PATH
from .conftest import FakeContext
from .conftest import load_event

THIRTY_DAYS = 30 * 86400


def test_stores_a_reading_of_a_registered_device(load_handler, appsync, log_lines):
    module = load_handler("CoreTelemetry")

    result = module.handler(load_event("telemetry_rule_output"), FakeContext())

    assert result == {"outcome": "stored", "device_id": DEVICE_ID, "timestamp": 1732665600000}
    assert appsync.operations() == ["GetDevice", "CreateTelemetry"]
    lookup, create = (request.json() for request in appsync.requests)
    assert lookup == {
        "query": operations.GET_DEVICE,
        "variables": {"device_id": DEVICE_ID},
        "operationName": "GetDevice",
    }
    assert create["query"] == operations.CREATE_TELEMETRY
    assert create["variables"] == {
        "input": {
            "device_id": DEVICE_ID,
            "timestamp": 1732665600000,
            "temperature": 21.5,
            "humidity": 40.0,
            "owner": DEVICE["owner"],
            "expires_at": 1732665600 + THIRTY_DAYS,
        }
    }
    (line,) = log_lines()
    assert line["message"] == "telemetry_stored" and line["level"] == "INFO"
    assert line["service"] == "CoreTelemetry" and line["function_request_id"] == FakeContext().aws_request_id
    assert line["event_timestamp"] == 1732665600000 and line["timestamp"].endswith("Z")


def test_signs_requests_with_sigv4_by_default(load_handler, appsync):
    module = load_handler("CoreTelemetry")

    module.handler(load_event("telemetry_rule_output"), FakeContext())

    for request in appsync.requests:
        authorization = request.headers["authorization"]
        assert authorization.startswith("AWS4-HMAC-SHA256 Credential=")
        assert "/eu-north-1/appsync/aws4_request" in authorization
        assert "SignedHeaders=" in authorization and "Signature=" in authorization
        assert "x-amz-date" in request.headers
        assert "x-api-key" not in request.headers
        assert request.path == "/graphql"


def test_uses_the_api_key_when_asked(load_handler, lambda_env, appsync):
    lambda_env.setenv("IOTFLEET_GRAPHQL_AUTH", "API_KEY")
    module = load_handler("CoreTelemetry")

    module.handler(load_event("telemetry_rule_output"), FakeContext())

    assert appsync.requests
    for request in appsync.requests:
        assert request.headers["x-api-key"] == API_KEY
        assert "authorization" not in request.headers


@pytest.mark.parametrize(
    "device, reason",
    [(None, "unknown device"), ({**DEVICE, "status": "revoked"}, "device revoked")],
    ids=["unknown", "revoked"],
)
def test_drops_readings_of_unknown_or_revoked_devices(load_handler, appsync, log_lines, device, reason):
    appsync.answers["GetDevice"] = {"data": {"getDevice": device}}
    module = load_handler("CoreTelemetry")

    result = module.handler(load_event("telemetry_rule_output"), FakeContext())

    assert result == {"outcome": "dropped", "reason": reason}
    assert appsync.operations() == ["GetDevice"]
    (line,) = log_lines()
    assert (line["message"], line["reason"], line["device_id"]) == ("telemetry_dropped", reason, DEVICE_ID)


GOOD = load_event("telemetry_rule_output")
BAD_READINGS = {
    "temperature as a string": {**GOOD, "temperature": "21.5"},
    "temperature NaN": {**GOOD, "temperature": float("nan")},
    "temperature infinite": {**GOOD, "temperature": float("inf")},
    "temperature 1e308": {**GOOD, "temperature": 1e308},
    "temperature a huge integer": {**GOOD, "temperature": 10**400},
    "temperature below -40": {**GOOD, "temperature": -40.5},
    "temperature a boolean": {**GOOD, "temperature": True},
    "temperature an object": {**GOOD, "temperature": {"value": 21}},
    "humidity above 100": {**GOOD, "humidity": 100.5},
    "humidity negative": {**GOOD, "humidity": -1},
    "humidity as a string": {**GOOD, "humidity": "40"},
    "temperature missing": {k: v for k, v in GOOD.items() if k != "temperature"},
    "humidity null": {**GOOD, "humidity": None},
    "timestamp missing": {k: v for k, v in GOOD.items() if k != "timestamp"},
    "device_id missing": {k: v for k, v in GOOD.items() if k != "device_id"},
    "device_id with quotes and braces": {**GOOD, "device_id": '4827E2E59190") { owner } #'},
    "device_id as an object": {**GOOD, "device_id": {"$ne": ""}},
    "device_id lower case": {**GOOD, "device_id": "4827e2e59190"},
    "device_id with colons": {**GOOD, "device_id": "48:27:E2:E5:91:90"},
    "device_id with a newline": {**GOOD, "device_id": "4827E2E59190\n"},
    "timestamp as a string": {**GOOD, "timestamp": "1732665600000"},
    "timestamp a float": {**GOOD, "timestamp": 1732665600000.5},
    "timestamp in seconds": {**GOOD, "timestamp": 1732665600},
    "timestamp far in the future": {**GOOD, "timestamp": 4102444800000},
    "event a list": [GOOD],
    "event a string": '{"temperature": 21}',
    "event null": None,
}


@pytest.mark.parametrize("event", list(BAD_READINGS.values()), ids=list(BAD_READINGS))
def test_rejects_bad_input_with_one_log_line_and_stores_nothing(load_handler, appsync, log_lines, event):
    module = load_handler("CoreTelemetry")

    result = module.handler(event, FakeContext())

    assert result["outcome"] == "rejected"
    assert appsync.requests == []
    (line,) = log_lines()
    assert line["message"] == "telemetry_rejected" and line["level"] == "WARNING"
    assert line["reason"] == result["reason"]


def test_accepts_the_range_limits_and_integers(load_handler, appsync):
    module = load_handler("CoreTelemetry")

    for temperature, humidity in ((-40, 0), (125, 100), (0, 55)):
        result = module.handler({**GOOD, "temperature": temperature, "humidity": humidity}, FakeContext())
        assert result["outcome"] == "stored"
    created = [
        r.json()["variables"]["input"] for r in appsync.requests if r.json()["operationName"] == "CreateTelemetry"
    ]
    assert [(c["temperature"], c["humidity"]) for c in created] == [(-40.0, 0.0), (125.0, 100.0), (0.0, 55.0)]


def test_an_appsync_outage_raises_so_lambda_retries(load_handler, appsync, log_lines):
    appsync.status = 502
    module = load_handler("CoreTelemetry")

    with pytest.raises(GraphQLUnavailable, match="HTTP 502"):
        module.handler(load_event("telemetry_rule_output"), FakeContext())
    (line,) = log_lines()
    assert line["message"] == "telemetry_failed" and line["level"] == "ERROR"


def test_a_graphql_error_raises(load_handler, appsync, log_lines):
    appsync.answers["CreateTelemetry"] = {
        "data": None,
        "errors": [{"errorType": "DynamoDB:ProvisionedThroughputExceededException", "message": "slow down"}],
    }
    module = load_handler("CoreTelemetry")

    with pytest.raises(GraphQLError, match="ProvisionedThroughputExceeded"):
        module.handler(load_event("telemetry_rule_output"), FakeContext())
    assert [line["message"] for line in log_lines()] == ["telemetry_failed"]


def test_a_missing_endpoint_setting_raises(load_handler, ssm, appsync, log_lines):
    ssm.delete_parameter(Name=SETTINGS_PATH + "CUSTOM_LAMBDA_GRAPHQL_ENDPOINT")
    module = load_handler("CoreTelemetry")

    with pytest.raises(SettingsError, match="CUSTOM_LAMBDA_GRAPHQL_ENDPOINT"):
        module.handler(load_event("telemetry_rule_output"), FakeContext())
    assert appsync.requests == []
    assert [line["message"] for line in log_lines()] == ["telemetry_failed"]


def test_retention_days_come_from_the_environment(load_handler, lambda_env, appsync):
    lambda_env.setenv("IOTFLEET_RETENTION_DAYS", "7")
    module = load_handler("CoreTelemetry")

    module.handler(load_event("telemetry_rule_output"), FakeContext())

    assert appsync.requests[-1].json()["variables"]["input"]["expires_at"] == 1732665600 + 7 * 86400


@pytest.mark.parametrize("value", ["0", "-3", "thirty", ""])
def test_a_bad_retention_setting_fails_the_cold_start(load_handler, lambda_env, value):
    lambda_env.setenv("IOTFLEET_RETENTION_DAYS", value)

    with pytest.raises(SettingsError, match="IOTFLEET_RETENTION_DAYS"):
        load_handler("CoreTelemetry")
