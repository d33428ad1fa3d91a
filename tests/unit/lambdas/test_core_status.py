"""CoreStatus with AWS IoT presence event documents, a fake AppSync endpoint and moto's SSM."""

import pytest
from common import operations
from common.graphql import GraphQLUnavailable
from common.presence import ORDER_WINDOW_MS

from .conftest import CONDITION_FAILED
from .conftest import DEVICE
from .conftest import DEVICE_ID
from .conftest import FakeContext
from .conftest import load_event

CONNECTED = load_event("presence_connected")
DISCONNECTED = load_event("presence_disconnected")


def test_applies_a_connected_event(load_handler, appsync, log_lines):
    module = load_handler("CoreStatus")

    result = module.handler(CONNECTED, FakeContext("iotfleet_CoreStatus"))

    assert result["outcome"] == "applied"
    (request,) = appsync.requests
    body = request.json()
    assert body["operationName"] == "UpdateDeviceStatus"
    assert body["query"] == operations.UPDATE_DEVICE_STATUS
    assert DEVICE_ID not in body["query"]
    assert body["variables"] == {
        "input": {
            "device_id": DEVICE_ID,
            "status": "connected",
            "timestamp": CONNECTED["timestamp"],
            "sequence": 2 * 3,
            "window_start": CONNECTED["timestamp"] - ORDER_WINDOW_MS,
            "window_end": CONNECTED["timestamp"] + ORDER_WINDOW_MS,
            "session_id": CONNECTED["sessionIdentifier"],
            "disconnect_reason": None,
        }
    }
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    (line,) = log_lines()
    assert (line["message"], line["device_id"], line["status"]) == ("presence_applied", DEVICE_ID, "connected")


def test_applies_a_disconnected_event_with_its_reason(load_handler, appsync, log_lines):
    module = load_handler("CoreStatus")

    result = module.handler(DISCONNECTED, FakeContext("iotfleet_CoreStatus"))

    assert result["outcome"] == "applied"
    variables = appsync.requests[0].json()["variables"]["input"]
    assert (variables["status"], variables["sequence"]) == ("disconnected", 2 * 3 + 1)
    assert variables["disconnect_reason"] == "CONNECTION_LOST"
    (line,) = log_lines()
    assert line["disconnect_reason"] == "CONNECTION_LOST"


@pytest.mark.parametrize(
    "device, reason",
    [
        (DEVICE, "stale or duplicate event"),
        (None, "unknown device"),
        ({**DEVICE, "status": "revoked"}, "device revoked"),
    ],
    ids=["stale", "unknown", "revoked"],
)
def test_a_refused_update_is_ignored_with_its_reason(load_handler, appsync, log_lines, device, reason):
    appsync.answers["UpdateDeviceStatus"] = CONDITION_FAILED
    appsync.answers["GetDevice"] = {"data": {"getDevice": device}}
    module = load_handler("CoreStatus")

    result = module.handler(CONNECTED, FakeContext("iotfleet_CoreStatus"))

    assert (result["outcome"], result["reason"]) == ("ignored", reason)
    assert appsync.operations() == ["UpdateDeviceStatus", "GetDevice"]
    (line,) = log_lines()
    assert (line["message"], line["reason"], line["level"]) == ("presence_ignored", reason, "INFO")


def test_the_rule_device_id_stands_in_for_a_missing_client_id(load_handler, appsync):
    module = load_handler("CoreStatus")
    event = {k: v for k, v in CONNECTED.items() if k != "clientId"}

    assert module.handler(event, FakeContext())["outcome"] == "applied"
    assert appsync.requests[0].json()["variables"]["input"]["device_id"] == DEVICE_ID


def test_an_odd_disconnect_reason_is_not_stored(load_handler, appsync):
    module = load_handler("CoreStatus")

    module.handler({**DISCONNECTED, "disconnectReason": "X\n" * 50}, FakeContext())

    assert appsync.requests[0].json()["variables"]["input"]["disconnect_reason"] is None


BAD_EVENTS = {
    "unknown eventType": {**CONNECTED, "eventType": "subscribed"},
    "eventType upper case": {**CONNECTED, "eventType": "CONNECTED"},
    "eventType missing": {k: v for k, v in CONNECTED.items() if k != "eventType"},
    "eventType a number": {**CONNECTED, "eventType": 1},
    "no client id at all": {k: v for k, v in CONNECTED.items() if k not in ("clientId", "device_id")},
    "client id of the console": {**CONNECTED, "clientId": "iotconsole-4b0d04fe-a776-472a-9121-f7fe39ab680f"},
    "client id with quotes and braces": {**CONNECTED, "clientId": '4827E2E59190"} mutation { x }'},
    "timestamp missing": {k: v for k, v in CONNECTED.items() if k != "timestamp"},
    "timestamp a string": {**CONNECTED, "timestamp": "1573002230757"},
    "timestamp NaN": {**CONNECTED, "timestamp": float("nan")},
    "versionNumber missing": {k: v for k, v in CONNECTED.items() if k != "versionNumber"},
    "versionNumber negative": {**CONNECTED, "versionNumber": -1},
    "versionNumber a boolean": {**CONNECTED, "versionNumber": True},
    "event a list": [CONNECTED],
    "event empty": {},
}


@pytest.mark.parametrize("event", list(BAD_EVENTS.values()), ids=list(BAD_EVENTS))
def test_rejects_bad_events_with_one_log_line_and_writes_nothing(load_handler, appsync, log_lines, event):
    module = load_handler("CoreStatus")

    result = module.handler(event, FakeContext("iotfleet_CoreStatus"))

    assert result["outcome"] == "rejected"
    assert appsync.requests == []
    (line,) = log_lines()
    assert (line["message"], line["level"], line["reason"]) == ("presence_rejected", "WARNING", result["reason"])


def test_an_appsync_outage_raises(load_handler, appsync, log_lines):
    appsync.status = 503
    module = load_handler("CoreStatus")

    with pytest.raises(GraphQLUnavailable):
        module.handler(CONNECTED, FakeContext())
    assert [line["message"] for line in log_lines()] == ["presence_failed"]
