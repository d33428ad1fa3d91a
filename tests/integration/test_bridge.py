"""The rules bridge on a private sandbox (broker and bridge started by `python -m sandbox up`): the rules
cloud.yml provisions run on MQTT messages, a failed action reaches the error action, shadows are served.

Messages are published with the sandbox's service identity (sandbox.broker.service_identity), which the
broker lets publish anything and does not tag with a client id: clientId() is then the thing name in the
topic, as for a device (the broker's ACLs guarantee a device publishes only under its own name).
"""

import json
import queue
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from sandbox import bridge
from sandbox import broker
from sandbox import discord
from sandbox.settings import load_settings
from tests.integration.conftest import register_device
from tests.integration.test_backend import PREFIX
from tests.integration.test_backend import backend  # noqa: F401  # pylint: disable=unused-import
from tests.integration.test_backend import new_device_id
from tests.integration.test_backend import readings
from tests.integration.test_backend import register

TELEMETRY_RULE = f"{PREFIX}_telemetry"
ROOT = Path(__file__).resolve().parents[2]
IOT_ARN = "arn:aws:iot:eu-north-1:123456789012"


@pytest.fixture(scope="module")
def settings(sandbox):
    return load_settings(state_dir=sandbox["state_dir"], port=sandbox["port"])


@pytest.fixture
def client(settings):
    """A service client of the sandbox's broker that records what it receives."""
    identity = broker.service_identity(settings)
    received = queue.Queue()
    connection = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"iotfleet-test-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    connection.tls_set(ca_certs=str(identity.ca), certfile=str(identity.cert), keyfile=str(identity.key))
    connection.on_message = lambda c, userdata, message: received.put((message.topic, json.loads(message.payload)))
    connection.connect(settings.host, settings.mqtt_port)
    connection.loop_start()
    connection.received = received
    try:
        yield connection
    finally:
        connection.disconnect()
        connection.loop_stop()


def publish(connection, topic, document):
    connection.publish(topic, json.dumps(document).encode(), qos=1).wait_for_publish(10)


def subscribe(connection, topic_filter):
    _result, mid = connection.subscribe(topic_filter, qos=1)
    time.sleep(0.5)  # the SUBACK; what the tests assert waits on messages, not on time
    return mid


def wait_for_rules(settings, *names, timeout=15):
    """Until the bridge runs these rules (it reads the registry every 2 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = bridge.read_status(settings) or {}
        if status.get("connected") and set(names) <= set(status.get("rules", [])):
            return status
        time.sleep(0.3)
    pytest.fail(f"the bridge does not run {names}: {bridge.read_status(settings)}")


def test_the_sandbox_runs_the_bridge(settings):
    assert bridge.status_line(settings).startswith("rules bridge running")


def test_telemetry_published_over_mqtt_is_stored_by_the_rule_s_lambda(backend, settings, client):  # noqa: F811
    wait_for_rules(settings, TELEMETRY_RULE)
    device_id = new_device_id()
    register(backend, device_id, owner="alice")
    before = int(time.time() * 1000)

    publish(client, f"{device_id}/telemetry", {"temperature": 22.5, "humidity": 41})

    deadline = time.monotonic() + 60  # a cold Lambda environment on a busy machine; e2e asserts the 5 s
    while not (items := readings(backend, device_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(items) == 1, bridge.read_status(settings)
    (item,) = items
    assert (item["device_id"], item["temperature"], item["humidity"], item["owner"]) == (device_id, 22.5, 41, "alice")
    assert before <= item["timestamp"] <= int(time.time() * 1000)  # timestamp() of the rule


def test_a_failing_action_reaches_the_error_action(backend, settings, client, aws_client):  # noqa: F811
    """A rule whose Lambda does not exist: the bridge writes AWS's error document to the error log group."""
    group = f"/{PREFIX}/iot/rule-errors"
    name = f"bridge_test_{uuid.uuid4().hex[:8]}"
    missing = f"arn:aws:lambda:eu-north-1:123456789012:function:{name}_missing"
    aws_client("iot").create_topic_rule(
        ruleName=name,
        topicRulePayload={
            "sql": f"SELECT * FROM 'bridgetest/{name}'",
            "awsIotSqlVersion": "2016-03-23",
            "actions": [{"lambda": {"functionArn": missing}}],
            "errorAction": {"cloudwatchLogs": {"logGroupName": group, "roleArn": "arn:aws:iam::123456789012:role/x"}},
        },
    )
    try:
        wait_for_rules(settings, name)
        publish(client, f"bridgetest/{name}", {"n": 1})
        logs = aws_client("logs")
        deadline = time.monotonic() + 30
        documents = []
        while not documents and time.monotonic() < deadline:
            for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
                events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
                documents += [json.loads(e["message"]) for e in events if name in e["message"]]
            time.sleep(0.5)
        assert len(documents) == 1
        (document,) = documents
        assert (document["ruleName"], document["topic"]) == (name, f"bridgetest/{name}")
        (failure,) = document["failures"]
        assert (failure["failedAction"], failure["failedResource"]) == ("LambdaAction", missing)
        assert failure["errorMessage"].startswith("Failed to invoke lambda function.")
    finally:
        aws_client("iot").delete_topic_rule(ruleName=name)


def test_shadow_update_over_mqtt_and_a_desired_change_through_the_api(settings, client, aws_client):
    thing = new_device_id()
    aws_client("iot").create_thing(thingName=thing)
    shadow = f"$aws/things/{thing}/shadow"
    subscribe(client, f"{shadow}/update/+")
    subscribe(client, f"{shadow}/get/+")

    publish(client, f"{shadow}/get", {})
    topic, document = client.received.get(timeout=10)
    assert (topic, document["code"]) == (f"{shadow}/get/rejected", 404)

    publish(client, f"{shadow}/update", {"state": {"reported": {"sendIntervalSeconds": 60}}})
    topic, document = client.received.get(timeout=10)
    assert (topic, document["state"], document["version"]) == (
        f"{shadow}/update/accepted",
        {"reported": {"sendIntervalSeconds": 60}},
        1,
    )
    assert client.received.get(timeout=10)[0] == f"{shadow}/update/documents"

    changed = time.monotonic()
    desired = {"state": {"desired": {"sendIntervalSeconds": 10}}}
    aws_client("iot-data").update_thing_shadow(thingName=thing, payload=json.dumps(desired).encode())
    topic, document = client.received.get(timeout=5)
    assert time.monotonic() - changed <= 3  # the "within a couple of seconds"
    assert (topic, document["state"]) == (f"{shadow}/update/delta", {"sendIntervalSeconds": 10})


def register_board(aws_client, settings, folder):
    """A device registered as the fleet rollout does it, and its filesystem as flashed (config, certificates)."""
    iot = aws_client("iot")
    policy = f"bridge_test_policy_{uuid.uuid4().hex[:8]}"
    template = (ROOT / "roles" / "iot_core" / "templates" / "device_policy.json.j2").read_text()
    iot.create_policy(policyName=policy, policyDocument=template.replace("{{ _iot_arn }}", IOT_ARN))
    thing = new_device_id()
    (folder / "certs").mkdir(mode=0o700)
    register_device(iot, thing, policy, folder / "certs" / "device.crt", folder / "certs" / "device.key")
    (folder / "certs" / "root-ca.pem").write_bytes((settings.ca_dir / "ca.pem").read_bytes())
    config = {
        "thing_name": thing,
        "endpoint": "127.0.0.1",
        "port": settings.mqtt_port,
        "wifi_ssid": "sandbox",
        "send_interval_seconds": 30,
        "backoff_cap_seconds": 2,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return thing


def test_the_firmware_follows_its_shadow_through_the_bridge(backend, settings, aws_client, tmp_path):  # noqa: F811
    """The real firmware (firmware/app) on CPython: it reports its interval, and a desired change made
    through the API (UpdateThingShadow) reaches it as update/delta; it applies it and reports it back.
    Its connect and disconnect run the presence rule: one Discord message each on the stand-in."""
    from firmware.app import device as app
    from firmware.app import hw
    from firmware.app import settings as app_settings

    thing = register_board(aws_client, settings, tmp_path)
    register(backend, thing, owner="alice")  # in the devices table, as the fleet rollout does
    logs = []
    platform = hw.HostPlatform(tmp_path, sensor=lambda: (21.0, 40.0), log=logs.append)
    device = app.Device(app_settings.load(platform), platform)
    runner = threading.Thread(target=device.run, daemon=True)
    data = aws_client("iot-data")

    def reported():
        try:
            shadow = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
        except data.exceptions.ResourceNotFoundException:
            return None
        return shadow["state"].get("reported", {}).get("sendIntervalSeconds")

    def wait(predicate, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"{what}; device log: {logs}"
            time.sleep(0.2)

    runner.start()
    try:
        # No shadow yet: get/rejected, and the device reports what it runs with (config.json's 30 s).
        wait(lambda: reported() == 30, "the device did not report its interval")
        desired = {"state": {"desired": {"sendIntervalSeconds": 5}}}
        data.update_thing_shadow(thingName=thing, payload=json.dumps(desired).encode())
        wait(lambda: device.interval == 5, "the desired interval did not reach the device")
        wait(lambda: reported() == 5, "the device did not report the new interval")
        shadow = json.loads(data.get_thing_shadow(thingName=thing)["payload"].read())
        assert "delta" not in shadow["state"]
    finally:
        device.stop()
        runner.join(10)
    wait(lambda: len(statuses(settings, thing)) >= 2, "no Discord message for the connect and the disconnect")
    time.sleep(2)  # a third (duplicate) message would come from the same events: give it time to show
    assert statuses(settings, thing) == ["connected", "disconnected"]


def statuses(settings, thing):
    """The statuses the Discord stand-in was told for `thing`, in order."""
    found = []
    for message in discord.messages(settings):
        lines = message.get("content", "").splitlines()
        if f"Device: {thing}" in lines:
            found += [line.removeprefix("Status: ") for line in lines if line.startswith("Status: ")]
    return found
