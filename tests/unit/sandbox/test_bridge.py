"""The rules bridge: rules -> actions with fake AWS (dispatch, error action), then over a real Mosquitto."""

import base64
import json
import logging
import queue
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
        if self.invoke_raises is not None:
            raise self.invoke_raises  # pylint: disable=raising-bad-type
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


# -- over a real Mosquitto (plain TCP on a free port) ---------------------------------------------

REGION = "eu-north-1"


class Mosquitto(int):
    """The port of a local Mosquitto (plain TCP, anonymous), with restart() for reconnect tests."""

    def start(self, conf):
        import shutil
        import socket
        import subprocess
        import time

        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conf = conf
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", int(self)), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)

    def stop(self):
        self.process.kill()
        self.process.wait()

    def restart(self):
        self.stop()
        self.start(self.conf)


@pytest.fixture
def mosquitto(tmp_path):
    from tests.unit.sandbox.conftest import free_port

    broker = Mosquitto(free_port())
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {int(broker)} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker.start(conf)
    try:
        yield broker
    finally:
        broker.stop()


class Client:
    """A test MQTT v5 client that collects what it receives."""

    def __init__(self, port, client_id="tester"):
        import paho.mqtt.client as mqtt

        self.messages = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda client, userdata, message: self.messages.put(
            (message.topic, json.loads(message.payload))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def subscribe(self, *filters):
        for topic_filter in filters:
            self.client.subscribe(topic_filter, qos=1)[1]
        import time

        time.sleep(0.3)  # SUBACK; the assertions below wait on messages, not on time

    def publish(self, topic, payload, client_id_property=None):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = None
        if client_id_property:
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [("iotfleet-client-id", client_id_property)]
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, data, qos=1, properties=properties).wait_for_publish(5)

    def next(self, timeout=5.0):
        return self.messages.get(timeout=timeout)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def start_bridge(port, engine, rules, shadows=None, read_versions=dict):
    bridge_ = bridge.Bridge(bridge.Connection("127.0.0.1", port), engine, shadows, lambda: rules, read_versions)
    bridge_.start()
    assert bridge_.connected.wait(10)
    return bridge_


def wait_for(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_over_mqtt_the_client_id_comes_from_the_broker_s_user_property(mosquitto, fake):
    engine = Engine(Actions(fake.invoke, fake.publish, fake.log), Workers(2))
    running = start_bridge(mosquitto, engine, [rule()])
    device = Client(mosquitto)
    try:
        import time

        time.sleep(0.3)  # the bridge's SUBACK
        device.publish("4827E2E59190/telemetry", {"temperature": 20}, client_id_property="4827E2E59190")
        device.publish("AAAAAAAAAAAA/telemetry", {"temperature": 21})  # no property: the thing in the topic
        device.publish("4827E2E59190/downlink", {"temperature": 22})  # no rule
        assert wait_for(lambda: len(fake.invocations) == 2)
        assert [(e["device_id"], e["temperature"]) for _arn, e in fake.invocations] == [
            ("4827E2E59190", 20),
            ("AAAAAAAAAAAA", 21),
        ]
    finally:
        device.close()
        running.stop()


def test_over_mqtt_rule_changes_change_the_subscriptions(mosquitto, fake):
    rules = [rule()]
    engine = Engine(Actions(fake.invoke, fake.publish, fake.log), Workers(1))
    running = bridge.Bridge(bridge.Connection("127.0.0.1", mosquitto), engine, None, lambda: list(rules), dict)
    running.start()
    device = Client(mosquitto)
    try:
        assert running.connected.wait(10)
        rules[:] = [rule(name="alerts", sql="SELECT temperature FROM 'alerts/+' WHERE temperature > 50")]
        running.refresh_rules()
        assert running.filters.keys() == {"alerts/+"}
        import time

        time.sleep(0.3)
        device.publish("A/telemetry", {"temperature": 60})
        device.publish("alerts/A", {"temperature": 40})
        device.publish("alerts/A", {"temperature": 60})
        assert wait_for(lambda: len(fake.invocations) == 1)
        time.sleep(0.3)
        assert [event for _arn, event in fake.invocations] == [{"temperature": 60}]
    finally:
        device.close()
        running.stop()


THING = "4827E2E59190"
SHADOW = f"$aws/things/{THING}/shadow"


@pytest.fixture
def shadow_bridge(aws, mosquitto):
    """The bridge's shadow service against moto in process, on the local Mosquitto; yields (bridge, device)."""
    import boto3

    from sandbox import shadow as shadow_mod
    from sandbox import shadow_ext

    boto3.client("iot", region_name=REGION).create_thing(thingName=THING)
    data = boto3.client("iot-data", region_name=REGION)
    holder = {}

    def publish(topic, payload):  # the bridge is made below
        holder["bridge"].publish(topic, payload)

    service = shadow_mod.ShadowService(data, publish)
    engine = Engine(Actions(None, None, None), Workers(2))
    running = bridge.Bridge(
        bridge.Connection("127.0.0.1", mosquitto), engine, service, list, lambda: shadow_ext.versions(REGION)
    )
    holder["bridge"] = running
    running.start()
    poller = threading.Thread(target=running.run, daemon=True)
    poller.start()
    device = Client(mosquitto, client_id=THING)
    try:
        assert running.connected.wait(10)
        device.subscribe(f"{SHADOW}/+/+")
        yield running, device, data
    finally:
        device.close()
        running.stop()
        poller.join(5)


def test_shadow_get_without_a_shadow_is_rejected_404(shadow_bridge):
    _bridge, device, _data = shadow_bridge
    device.publish(f"{SHADOW}/get", b"")
    topic, document = device.next()
    assert topic == f"{SHADOW}/get/rejected"
    assert document["code"] == 404
    assert document["message"] == f"No shadow exists with name: '{THING}'"


def test_shadow_report_then_get(shadow_bridge):
    _bridge, device, _data = shadow_bridge
    device.publish(f"{SHADOW}/update", {"state": {"reported": {"sendIntervalSeconds": 60}}, "clientToken": "t1"})
    topic, accepted = device.next()
    assert topic == f"{SHADOW}/update/accepted"
    assert accepted["state"] == {"reported": {"sendIntervalSeconds": 60}}
    assert accepted["version"] == 1
    assert accepted["clientToken"] == "t1"
    topic, documents = device.next()
    assert topic == f"{SHADOW}/update/documents"
    assert documents["previous"] is None
    assert documents["current"]["state"] == {"reported": {"sendIntervalSeconds": 60}}
    device.publish(f"{SHADOW}/get", b"")
    topic, document = device.next()
    assert topic == f"{SHADOW}/get/accepted"
    assert document["state"] == {"reported": {"sendIntervalSeconds": 60}}
    assert document["version"] == 1


def test_shadow_desired_change_over_mqtt_sends_the_delta(shadow_bridge):
    _bridge, device, _data = shadow_bridge
    device.publish(f"{SHADOW}/update", {"state": {"reported": {"sendIntervalSeconds": 60}}})
    device.next(), device.next()
    device.publish(f"{SHADOW}/update", {"state": {"desired": {"sendIntervalSeconds": 30}}})
    received = [device.next() for _index in range(3)]
    assert [topic for topic, _doc in received] == [
        f"{SHADOW}/update/accepted",
        f"{SHADOW}/update/documents",
        f"{SHADOW}/update/delta",
    ]
    delta = received[2][1]
    assert delta["state"] == {"sendIntervalSeconds": 30}
    assert delta["version"] == 2
    # The device reports the new value: no delta left, none sent.
    device.publish(f"{SHADOW}/update", {"state": {"reported": {"sendIntervalSeconds": 30}}})
    assert [device.next()[0] for _index in range(2)] == [f"{SHADOW}/update/accepted", f"{SHADOW}/update/documents"]
    with pytest.raises(queue.Empty):
        device.next(timeout=1.5)


def test_shadow_desired_change_through_the_api_reaches_the_device_within_two_seconds(shadow_bridge):
    import time

    _bridge, device, data = shadow_bridge
    device.publish(f"{SHADOW}/update", {"state": {"reported": {"sendIntervalSeconds": 60}}})
    device.next(), device.next()
    changed = time.monotonic()
    data.update_thing_shadow(thingName=THING, payload=json.dumps({"state": {"desired": {"sendIntervalSeconds": 15}}}))
    topic, delta = device.next(timeout=2.0)
    assert time.monotonic() - changed <= 2.0  # the "within a couple of seconds"
    assert topic == f"{SHADOW}/update/delta"
    assert delta["state"] == {"sendIntervalSeconds": 15}


def test_shadow_bad_update_is_rejected_400(shadow_bridge):
    _bridge, device, _data = shadow_bridge
    device.publish(f"{SHADOW}/update", b"{not json")
    topic, document = device.next()
    assert topic == f"{SHADOW}/update/rejected"
    assert document["code"] == 400
    device.publish(f"{SHADOW}/update", {"state": {"reported": {"a": 1}}, "version": 7, "clientToken": "c"})
    topic, document = device.next()
    assert (topic, document["code"], document["clientToken"]) == (f"{SHADOW}/update/rejected", 409, "c")


def test_shadow_delete(shadow_bridge):
    _bridge, device, _data = shadow_bridge
    device.publish(f"{SHADOW}/delete", b"")
    topic, document = device.next()
    assert (topic, document["code"]) == (f"{SHADOW}/delete/rejected", 404)
    device.publish(f"{SHADOW}/update", {"state": {"reported": {"a": 1}}})
    device.next(), device.next()
    device.publish(f"{SHADOW}/delete", b"")
    topic, document = device.next()
    assert (topic, document["version"]) == (f"{SHADOW}/delete/accepted", 2)
    device.publish(f"{SHADOW}/get", b"")
    assert device.next()[0] == f"{SHADOW}/get/rejected"


def test_shadow_versions_endpoint_lists_classic_shadows(aws):
    import boto3

    from sandbox import shadow_ext

    iot = boto3.client("iot", region_name=REGION)
    data = boto3.client("iot-data", region_name=REGION)
    for thing in ("A", "B", "C"):
        iot.create_thing(thingName=thing)
    data.update_thing_shadow(thingName="A", payload=b'{"state": {"reported": {"x": 1}}}')
    data.update_thing_shadow(thingName="A", payload=b'{"state": {"desired": {"x": 2}}}')
    data.update_thing_shadow(thingName="B", payload=b'{"state": {"reported": {"x": 1}}}')
    data.update_thing_shadow(thingName="C", shadowName="named", payload=b'{"state": {"reported": {"x": 1}}}')
    assert shadow_ext.versions(REGION) == {"A": 2, "B": 1}
    data.delete_thing_shadow(thingName="B")
    assert shadow_ext.versions(REGION) == {"A": 2}

    answers = []
    body = shadow_ext.route({"REQUEST_METHOD": "GET", "QUERY_STRING": f"region={REGION}"}, lambda *a: answers.append(a))
    assert answers[0][0] == "200 OK"
    assert json.loads(b"".join(body)) == {"versions": {"A": 2}}
    shadow_ext.route({"REQUEST_METHOD": "GET", "QUERY_STRING": ""}, lambda *a: answers.append(a))
    assert answers[1][0] == "400 Bad Request"


def test_up_without_a_running_broker_leaves_the_bridge_out(tmp_path, capsys):
    from sandbox.settings import Settings
    from tests.unit.sandbox.conftest import free_port

    settings = Settings(state_dir=tmp_path, port=free_port(), region=REGION, mqtt_port=free_port())
    assert bridge.up(settings) == 0
    assert "rules bridge not started" in capsys.readouterr().out
    assert bridge.running_pid(settings) is None
    assert bridge.status_line(settings) == "rules bridge not running"
    bridge.down(settings)  # nothing to stop


def test_rule_reader_gets_a_rule_again_only_when_its_summary_changes(aws):
    import boto3

    iot = boto3.client("iot", region_name=REGION)
    calls = []
    iot.meta.events.register("before-call.iot.GetTopicRule", lambda **kwargs: calls.append(kwargs["params"]))
    payload = {"sql": TELEMETRY_SQL, "awsIotSqlVersion": "2016-03-23", "actions": []}
    iot.create_topic_rule(ruleName="one", topicRulePayload=payload)
    now = [0.0]
    reader = bridge.RuleReader(iot, clock=lambda: now[0])
    assert [d["ruleName"] for d in reader()] == ["one"]
    now[0] = 5
    assert [d["ruleDisabled"] for d in reader()] == [False]
    assert len(calls) == 1  # nothing changed: the cached document
    iot.disable_topic_rule(ruleName="one")
    assert [d["ruleDisabled"] for d in reader()] == [True]
    assert len(calls) == 2
    now[0] = 40  # a full read every 30 s whatever the summaries say
    reader()
    assert len(calls) == 3
    iot.delete_topic_rule(ruleName="one")
    assert reader() == []


def test_the_bridge_reconnects_and_resubscribes_when_the_broker_restarts(mosquitto, fake):
    engine = Engine(Actions(fake.invoke, fake.publish, fake.log), Workers(1))
    running = start_bridge(mosquitto, engine, [rule()])
    try:
        mosquitto.restart()
        assert wait_for(lambda: not running.connected.is_set(), timeout=10)
        assert running.connected.wait(30)  # paho's backoff: 1 s, doubling, at most 16 s
        device = Client(mosquitto)
        try:
            import time

            time.sleep(0.3)  # the bridge's SUBACK after its reconnect
            device.publish("A/telemetry", {"temperature": 20})
            assert wait_for(lambda: len(fake.invocations) == 1)
        finally:
            device.close()
        assert running.connects == 2
    finally:
        running.stop()


def test_shadow_changes_found_by_polling():
    from sandbox import shadow as shadow_mod

    service = shadow_mod.ShadowService(None, None)
    assert service.changed({"A": 3, "B": 1}, first=True) == []  # what exists at start is known
    assert service.changed({"A": 4, "B": 1, "C": 1}, first=False) == ["A", "C"]
    service.known.update(A=4, C=1)
    assert service.changed({"A": 2, "B": 1, "C": 1}, first=False) == []  # restarted: A begins again at 2
    assert service.changed({"A": 3, "B": 1, "C": 1}, first=False) == ["A"]


def test_a_rule_on_a_shadow_request_topic_runs_beside_the_shadow_service(shadow_bridge):
    running, device, _data = shadow_bridge
    seen = []
    running.engine.actions.lambda_invoke = lambda arn, payload: seen.append(json.loads(payload)) or (None, b"{}")
    running.set_filters(running.engine.set_rules([rule(sql="SELECT state FROM '$aws/things/+/shadow/update'")]))
    import time

    time.sleep(0.3)
    device.publish(f"{SHADOW}/update", {"state": {"reported": {"a": 1}}})
    assert device.next()[0] == f"{SHADOW}/update/accepted"
    assert wait_for(lambda: seen == [{"state": {"reported": {"a": 1}}}])
