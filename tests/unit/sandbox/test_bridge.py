"""The rules bridge: rules -> actions with fake AWS (dispatch, error action), then over a real Mosquitto."""

import base64
import json
import logging
import threading

import pytest

from sandbox import bridge
from sandbox.bridge import Actions
from sandbox.bridge import Engine
from sandbox.bridge import Workers

ARN = "arn:aws:lambda:eu-north-1:123456789012:function:iotfleet_CoreTelemetry"
ERROR_GROUP = "/iotfleet/iot/rule-errors"
TELEMETRY_SQL = "SELECT *, clientId() AS device_id, timestamp() AS timestamp FROM '+/telemetry'"


def rule(name="iotfleet_telemetry", sql=TELEMETRY_SQL, actions=None, error=True, disabled=False, version="2016-03-23"):
    document = {
        "ruleName": name,
        "sql": sql,
        "awsIotSqlVersion": version,
        "ruleDisabled": disabled,
        "actions": [{"lambda": {"functionArn": ARN}}] if actions is None else actions,
    }
    if error:
        document["errorAction"] = {"cloudwatchLogs": {"logGroupName": ERROR_GROUP, "roleArn": "arn:aws:iam::1:role/r"}}
    return document


class FakeAws:
    """Records invocations, publishes and log events; `failures` scripts what an invoke does."""

    def __init__(self):
        self.invocations = []
        self.published = []
        self.logs = []
        self.function_error = None
        self.invoke_raises = None
        self.lock = threading.Lock()

    def invoke(self, arn, payload):
        with self.lock:
            self.invocations.append((arn, json.loads(payload)))
        if self.invoke_raises:
            raise self.invoke_raises
        if self.function_error:
            return "Unhandled", json.dumps({"errorType": "ValueError", "errorMessage": "boom"}).encode()
        return None, b'{"outcome": "stored"}'

    def publish(self, topic, payload, qos):
        self.published.append((topic, payload, qos))

    def log(self, group, text):
        self.logs.append((group, json.loads(text)))


@pytest.fixture
def fake():
    return FakeAws()


@pytest.fixture
def engine(fake):
    workers = Workers(2)
    engine = Engine(Actions(fake.invoke, fake.publish, fake.log), workers, clock=lambda: 1732665600.123)
    try:
        yield engine
    finally:
        workers.stop()


def send(engine, topic, payload, client_id="4827E2E59190"):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    fired = engine.handle(topic, data, client_id)
    engine.workers.join()
    return fired


def test_telemetry_reaches_the_lambda_with_device_id_and_timestamp(engine, fake):
    engine.set_rules([rule()])
    assert send(engine, "4827E2E59190/telemetry", {"temperature": 21.5, "humidity": 40}) == 1
    assert fake.invocations == [
        (ARN, {"temperature": 21.5, "humidity": 40, "device_id": "4827E2E59190", "timestamp": 1732665600123})
    ]
    assert fake.logs == []


def test_set_rules_returns_the_filters_to_subscribe(engine):
    presence = rule("p", "SELECT *, clientId() AS device_id FROM '$aws/events/presence/+/+'")
    off = rule("off", "SELECT * FROM 'off/+'", disabled=True)
    assert engine.set_rules([rule(), presence, off]) == {"+/telemetry", "$aws/events/presence/+/+"}


def test_a_disabled_rule_is_not_run(engine, fake):
    engine.set_rules([rule(disabled=True)])
    assert send(engine, "A/telemetry", {"temperature": 1}) == 0
    assert fake.invocations == []


def test_unsupported_sql_is_logged_once_and_the_rule_skipped(engine, fake, caplog):
    bad = rule("bad", "SELECT upper(a) FROM 'x/telemetry'")
    with caplog.at_level(logging.ERROR, logger="sandbox.bridge"):
        engine.set_rules([bad, rule()])
        engine.set_rules([bad, rule()])
    errors = [record.getMessage() for record in caplog.records if "bad" in record.getMessage()]
    assert len(errors) == 1
    assert "unsupported function upper()" in errors[0]
    assert set(engine.rules) == {"iotfleet_telemetry"}


def test_an_unsupported_sql_version_is_skipped(engine):
    engine.set_rules([rule(version="2099-01-01")])
    assert engine.rules == {}


def test_where_filters_messages(engine, fake):
    engine.set_rules([rule(sql="SELECT * FROM '+/telemetry' WHERE temperature > 30")])
    send(engine, "A/telemetry", {"temperature": 20})
    send(engine, "A/telemetry", {"temperature": 31})
    assert [event for _arn, event in fake.invocations] == [{"temperature": 31}]
    assert engine.counts["filtered"] == 1


def test_non_json_payload_is_skipped_and_logged_once(engine, fake, caplog):
    engine.set_rules([rule()])
    with caplog.at_level(logging.WARNING, logger="sandbox.bridge"):
        send(engine, "A/telemetry", b"\x00\x01 not json")
        send(engine, "A/telemetry", b"still not json")
    assert fake.invocations == []
    assert engine.counts["not_json"] == 2
    assert len([r for r in caplog.records if "needs a JSON object" in r.getMessage()]) == 1


def test_a_failing_function_runs_the_error_action_with_the_aws_document(engine, fake):
    engine.set_rules([rule()])
    fake.function_error = True
    payload = b'{"temperature": "hot"}'
    send(engine, "4827E2E59190/telemetry", payload)
    assert len(fake.logs) == 1
    group, document = fake.logs[0]
    assert group == ERROR_GROUP
    assert document["ruleName"] == "iotfleet_telemetry"
    assert document["topic"] == "4827E2E59190/telemetry"
    assert document["clientId"] == "4827E2E59190"
    assert base64.b64decode(document["base64OriginalPayload"]) == payload
    assert len(document["cloudwatchTraceId"]) == 36
    (failure,) = document["failures"]
    assert failure["failedAction"] == "LambdaAction"
    assert failure["failedResource"] == ARN
    assert "ValueError: boom" in failure["errorMessage"]
    assert engine.actions.counts["failed"] == 1
    assert engine.actions.counts["error_actions"] == 1


def test_a_failed_invoke_runs_the_error_action(engine, fake):
    engine.set_rules([rule()])
    fake.invoke_raises = RuntimeError("ResourceNotFoundException: Function not found")
    send(engine, "A/telemetry", {"temperature": 1})
    (failure,) = fake.logs[0][1]["failures"]
    assert failure["errorMessage"].startswith("Failed to invoke lambda function.")
    assert "Function not found" in failure["errorMessage"]


def test_with_aws_semantics_a_function_error_does_not_reach_the_error_action(fake):
    workers = Workers(1)
    engine = Engine(Actions(fake.invoke, fake.publish, fake.log, function_errors_fail=False), workers)
    try:
        engine.set_rules([rule()])
        fake.function_error = True
        send(engine, "A/telemetry", {"temperature": 1})
        assert len(fake.invocations) == 1
        assert fake.logs == []
    finally:
        workers.stop()


def test_a_rule_without_error_action_just_logs_the_failure(engine, fake):
    engine.set_rules([rule(error=False)])
    fake.function_error = True
    send(engine, "A/telemetry", {"temperature": 1})
    assert fake.logs == []
    assert engine.actions.counts["failed"] == 1


def test_republish_and_cloudwatch_logs_actions(engine, fake):
    actions = [{"republish": {"topic": "copy/out", "qos": 1}}, {"cloudwatchLogs": {"logGroupName": "/copy"}}]
    engine.set_rules([rule(sql="SELECT temperature AS t FROM '+/telemetry'", actions=actions)])
    send(engine, "A/telemetry", {"temperature": 5})
    assert fake.published == [("copy/out", b'{"t": 5}', 1)]
    assert fake.logs == [("/copy", {"t": 5})]


def test_republish_error_action(engine, fake):
    document = rule()
    document["errorAction"] = {"republish": {"topic": "errors/rules", "qos": 0}}
    engine.set_rules([document])
    fake.function_error = True
    send(engine, "A/telemetry", {"temperature": 5})
    ((topic, payload, qos),) = fake.published
    assert (topic, qos) == ("errors/rules", 0)
    assert json.loads(payload)["failures"][0]["failedAction"] == "LambdaAction"


def test_an_unsupported_action_is_skipped_and_the_others_run(engine, fake, caplog):
    actions = [{"s3": {"bucketName": "b", "key": "k"}}, {"lambda": {"functionArn": ARN}}]
    engine.set_rules([rule(actions=actions)])
    with caplog.at_level(logging.ERROR, logger="sandbox.bridge"):
        send(engine, "A/telemetry", {"temperature": 5})
        send(engine, "A/telemetry", {"temperature": 6})
    assert len(fake.invocations) == 2
    assert fake.logs == []  # skipped, not failed
    assert len([r for r in caplog.records if "action s3 is not supported" in r.getMessage()]) == 1


def test_one_device_s_messages_are_handled_in_order(fake):
    workers = Workers(4)
    engine = Engine(Actions(fake.invoke, fake.publish, fake.log), workers)
    try:
        engine.set_rules([rule()])
        for thing in ("A", "B", "C"):
            for index in range(30):
                engine.handle(f"{thing}/telemetry", json.dumps({"n": index}).encode(), thing)
        workers.join()
    finally:
        workers.stop()
    for thing in ("A", "B", "C"):
        assert [e["n"] for _arn, e in fake.invocations if e["device_id"] == thing] == list(range(30))


@pytest.mark.parametrize(
    ("topic", "payload", "prop", "expected"),
    [
        ("AB12/telemetry", b"{}", None, "AB12"),
        ("AB12/telemetry", b"{}", "REAL", "REAL"),
        ("$aws/things/AB12/shadow/update", b"{}", None, "AB12"),
        ("$aws/events/presence/connected/AB12", b'{"clientId": "AB12"}', "broker", "AB12"),
        ("$aws/events/presence/connected/AB12", b"not json", "X", "X"),
        ("$aws/other", b"{}", None, None),
    ],
)
def test_client_id_of(topic, payload, prop, expected):
    assert bridge.client_id_of(topic, payload, prop) == expected
