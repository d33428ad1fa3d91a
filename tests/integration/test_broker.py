"""The sandbox's MQTT broker against a real Mosquitto: identity from the certificate, rules from the registry.

A private sandbox (own state dir, free ports) started through the CLI, so moto's registry hook, the
state file and the broker plugin are the ones `make demo` runs. Devices are registered as the fleet
rollout does it (CreateCertificateFromCsr, the collection's device policy, thing attached) and
connect with paho-mqtt over TLS with their own key.
"""

import dataclasses
import json
import os
import queue
import time
from pathlib import Path

import boto3
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox import broker
from sandbox.ca import ensure_ca
from sandbox.ca import issue_certificate
from sandbox.settings import PORT_ENVS
from sandbox.settings import free_ports
from sandbox.settings import load_settings
from sandbox.settings import private_env
from tests.integration.conftest import register_device
from tests.integration.conftest import sandbox_cli

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-north-1"
ARN = f"arn:aws:iot:{REGION}:123456789012"
TIMEOUT = 10.0  # how long to wait for something that should happen (never a measured bound)
NOT_AUTHORIZED = 135  # MQTT v5 CONNACK / SUBACK reason code


@dataclasses.dataclass
class Device:
    thing: str
    certificate_id: str
    certificate_arn: str
    cert: Path
    key: Path


def _cli(settings, env, *args):
    return sandbox_cli(*args, state_dir=settings.state_dir, port=settings.port, env=env, timeout=120)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("broker-sandbox")
    port, appsync_port, mqtt_port, *_others = ports = free_ports(len(PORT_ENVS))
    env = private_env(state_dir, ports, IOTFLEET_SANDBOX_BOARDS="none")
    settings = dataclasses.replace(
        load_settings(state_dir=state_dir, port=port), appsync_port=appsync_port, mqtt_port=mqtt_port
    )
    started = _cli(settings, env, "up")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert broker.running_pid(settings) is not None
        yield settings
    finally:
        _cli(settings, env, "down")


@pytest.fixture(scope="module")
def iot(sandbox):
    return _client("iot", sandbox)


def _client(service, settings):
    return boto3.client(
        service,
        endpoint_url=settings.endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def device_policy(iot):
    template = (ROOT / "roles" / "iot_core" / "templates" / "device_policy.json.j2").read_text()
    iot.create_policy(policyName="broker-test-device", policyDocument=template.replace("{{ _iot_arn }}", ARN))
    return "broker-test-device"


_counter = iter(range(0x100000000000, 0x1FFFFFFFFFFF))


@pytest.fixture
def register(iot, device_policy, sandbox, tmp_path):
    """register() -> a new Device, as the fleet rollout registers a board."""

    def make(active=True):
        thing = f"{next(_counter):012X}"
        cert_path, key_path = tmp_path / f"{thing}.crt", tmp_path / f"{thing}.key"
        created = register_device(iot, thing, device_policy, cert_path, key_path, active=active)
        device = Device(thing, created["certificateId"], created["certificateArn"], cert_path, key_path)
        # The broker's rules follow within a moment: wait for this thing's connect rule.
        rule = f"rule\t{thing}\tallow\tconnect\t"
        wait_until(lambda: rule in broker.acl_file(broker.broker_dir(sandbox)).read_text())
        return device

    return make


def wait_until(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


class Client:
    """A paho-mqtt v5 client over TLS whose events land in queues."""

    def __init__(self, settings, client_id, cert, key):
        self.client_id = client_id
        self.connects: queue.Queue = queue.Queue()
        self.disconnects: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.paho.tls_set(ca_certs=str(settings.ca_dir / "ca.pem"), certfile=str(cert), keyfile=str(key))
        self.paho.on_connect = lambda _c, _u, _f, code, _p: self.connects.put(code.value)
        self.paho.on_disconnect = lambda _c, _u, _f, code, _p: self.disconnects.put((code.value, time.monotonic()))
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)
        self.paho.on_subscribe = lambda _c, _u, _mid, codes, _p: self.subacks.put([code.value for code in codes])
        self.settings = settings

    def connect(self) -> int:
        """The CONNACK reason code (0: accepted). No automatic reconnects."""
        self.paho.reconnect_delay_set(60, 60)
        self.paho.connect(self.settings.host, self.settings.mqtt_port, keepalive=30)
        self.paho.loop_start()
        return self.connects.get(timeout=TIMEOUT)

    def subscribe(self, topic) -> list[int]:
        self.paho.subscribe(topic, qos=1)
        return self.subacks.get(timeout=TIMEOUT)

    def publish(self, topic, payload, properties=None):
        self.paho.publish(topic, payload, qos=1, properties=properties).wait_for_publish(TIMEOUT)

    def close(self):
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
def connect(sandbox):
    clients = []

    def make(client_id, cert, key) -> Client:
        client = Client(sandbox, client_id, cert, key)
        clients.append(client)
        return client

    def device(dev: Device, client_id=None) -> Client:
        return make(client_id or dev.thing, dev.cert, dev.key)

    make.device = device
    yield make
    for client in clients:
        client.paho.disconnect()
        client.paho.loop_stop()


@pytest.fixture
def service(sandbox, connect):
    """A connected service client (the bridge's identity) subscribed to presence and every device topic."""
    identity = broker.service_identity(sandbox)
    client = connect(f"iotfleet-test-{os.getpid()}", identity.cert, identity.key)
    assert client.connect() == 0
    assert client.subscribe("$aws/events/presence/+/+") == [1]
    assert client.subscribe("+/telemetry") == [1]
    return client


def next_message(client, topic_prefix, timeout=TIMEOUT, suffix=""):
    """The next message whose topic starts with `topic_prefix` (and ends with `suffix`); others are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        message = client.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        if message.topic.startswith(topic_prefix) and message.topic.endswith(suffix):
            return message


def user_properties(message) -> list:
    return list(getattr(message.properties, "UserProperty", []) or [])


# ---------------------------------------------------------------- connect


def test_a_registered_device_connects_as_its_thing_and_its_telemetry_carries_its_client_id(register, connect, service):
    dev = register()
    client = connect.device(dev)
    assert client.connect() == 0
    client.publish(f"{dev.thing}/telemetry", '{"temperature": 21.5, "humidity": 40}')
    message = next_message(service, f"{dev.thing}/telemetry")
    assert json.loads(message.payload) == {"temperature": 21.5, "humidity": 40}
    assert user_properties(message) == [(broker.CLIENT_ID_PROPERTY, dev.thing)]


def test_a_device_cannot_set_the_client_id_property_itself(register, connect, service):
    dev = register()
    client = connect.device(dev)
    assert client.connect() == 0
    spoof = mqtt.Properties(mqtt.PacketTypes.PUBLISH)
    spoof.UserProperty = [(broker.CLIENT_ID_PROPERTY, "AAAAAAAAAAAA"), ("other", "kept")]
    client.publish(f"{dev.thing}/telemetry", "{}", properties=spoof)
    message = next_message(service, f"{dev.thing}/telemetry")
    assert sorted(user_properties(message)) == [(broker.CLIENT_ID_PROPERTY, dev.thing), ("other", "kept")]


def test_connecting_as_another_thing_is_refused(register, connect):
    mine, other = register(), register()
    assert connect.device(mine, client_id=other.thing).connect() == NOT_AUTHORIZED
    assert connect.device(mine, client_id="iotfleet-rules-engine").connect() == NOT_AUTHORIZED


def test_an_unknown_certificate_is_refused(sandbox, connect, tmp_path):
    """Signed by the sandbox CA (so TLS accepts it) but never registered."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
    )
    cert = issue_certificate(csr, ensure_ca(sandbox.ca_dir))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    assert connect("4827E2E59190", tmp_path / "c.pem", tmp_path / "k.pem").connect() == NOT_AUTHORIZED


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_a_certificate_that_is_not_active_is_refused(register, connect, iot, sandbox, status):
    dev = register()
    iot.update_certificate(certificateId=dev.certificate_id, newStatus=status)
    wait_until(lambda: f"{dev.certificate_id}\t{status}" in broker.acl_file(broker.broker_dir(sandbox)).read_text())
    assert connect.device(dev).connect() == NOT_AUTHORIZED


def test_a_service_identity_needs_the_service_client_id_prefix(sandbox, connect):
    identity = broker.service_identity(sandbox)
    assert oct(identity.key.stat().st_mode & 0o777) == "0o600"
    assert connect("4827E2E59190", identity.cert, identity.key).connect() == NOT_AUTHORIZED
    assert connect("iotfleet-anything", identity.cert, identity.key).connect() == 0


# ---------------------------------------------------------------- topics


def test_publishing_to_another_things_topic_is_dropped_and_subscribing_refused(register, connect, service):
    mine, other = register(), register()
    client = connect.device(mine)
    assert client.connect() == 0
    client.publish(f"{other.thing}/telemetry", '{"temperature": 99}')
    client.publish(f"{mine.thing}/telemetry", '{"temperature": 1}')
    # Delivered in order: the first telemetry the service sees is the device's own.
    assert next_message(service, "", suffix="/telemetry").topic == f"{mine.thing}/telemetry"
    assert client.subscribe(f"{other.thing}/downlink") == [NOT_AUTHORIZED]
    assert client.subscribe("#") == [NOT_AUTHORIZED]
    assert client.subscribe(f"{mine.thing}/downlink") == [1]
    assert client.subscribe(f"$aws/things/{mine.thing}/shadow/update/delta") == [1]


def test_a_device_receives_its_downlink(register, connect, service):
    dev = register()
    client = connect.device(dev)
    assert client.connect() == 0
    assert client.subscribe(f"{dev.thing}/downlink") == [1]
    service.publish(f"{dev.thing}/downlink", "hello")
    assert client.messages.get(timeout=TIMEOUT).payload == b"hello"


# ---------------------------------------------------------------- revocation, DeleteConnection


def test_revoking_drops_the_live_session_within_5_s_and_the_reconnect_is_refused(register, connect, iot):
    revoked, bystander = register(), register()
    victim, other = connect.device(revoked), connect.device(bystander)
    assert victim.connect() == 0 and other.connect() == 0

    started = time.monotonic()
    iot.update_certificate(certificateId=revoked.certificate_id, newStatus="REVOKED")
    _code, dropped_at = victim.disconnects.get(timeout=TIMEOUT)
    assert dropped_at - started < 5.0  # the issue's bound
    victim.paho.loop_stop()
    assert connect.device(revoked).connect() == NOT_AUTHORIZED
    other.publish(f"{bystander.thing}/telemetry", "{}")
    assert other.disconnects.empty() and other.paho.is_connected()


def test_detaching_the_policy_drops_the_session(register, connect, iot, device_policy):
    dev = register()
    client = connect.device(dev)
    assert client.connect() == 0
    iot.detach_policy(policyName=device_policy, target=dev.certificate_arn)
    client.disconnects.get(timeout=TIMEOUT)


def test_delete_connection_drops_the_session_or_answers_404(register, connect, sandbox):
    data = _client("iot-data", sandbox)
    dev, bystander = register(), register()
    with pytest.raises(data.exceptions.ResourceNotFoundException):
        data.delete_connection(clientId=dev.thing)
    client, other = connect.device(dev), connect.device(bystander)
    assert client.connect() == 0 and other.connect() == 0
    data.delete_connection(clientId=dev.thing)
    client.disconnects.get(timeout=TIMEOUT)
    assert dev.thing not in broker.connected_clients(broker.broker_dir(sandbox))
    assert bystander.thing in broker.connected_clients(broker.broker_dir(sandbox))
    with pytest.raises(data.exceptions.ResourceNotFoundException):
        data.delete_connection(clientId=dev.thing)


# ---------------------------------------------------------------- presence


def presence(service, kind, thing):
    return json.loads(next_message(service, f"$aws/events/presence/{kind}/{thing}").payload)


def test_presence_events_are_shaped_like_aws(register, connect, service, iot):
    dev = register()
    client = connect.device(dev)
    assert client.connect() == 0
    connected = presence(service, "connected", dev.thing)
    assert set(connected) == {
        "clientId",
        "timestamp",
        "eventType",
        "sessionIdentifier",
        "principalIdentifier",
        "ipAddress",
        "versionNumber",
    }
    assert connected["clientId"] == dev.thing and connected["eventType"] == "connected"
    assert connected["principalIdentifier"] == dev.certificate_id
    assert connected["ipAddress"] == "127.0.0.1"
    assert abs(connected["timestamp"] - time.time() * 1000) < 60_000
    client.close()
    disconnected = presence(service, "disconnected", dev.thing)
    assert disconnected["eventType"] == "disconnected"
    assert disconnected["sessionIdentifier"] == connected["sessionIdentifier"]
    assert disconnected["versionNumber"] == connected["versionNumber"]
    assert disconnected["clientInitiatedDisconnect"] is True
    assert disconnected["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"

    again = connect.device(dev)
    assert again.connect() == 0
    reconnected = presence(service, "connected", dev.thing)
    assert reconnected["versionNumber"] > connected["versionNumber"]
    assert reconnected["sessionIdentifier"] != connected["sessionIdentifier"]
    iot.update_certificate(certificateId=dev.certificate_id, newStatus="INACTIVE")
    dropped = presence(service, "disconnected", dev.thing)
    assert (dropped["disconnectReason"], dropped["clientInitiatedDisconnect"]) == ("AUTH_ERROR", False)


def test_a_second_connection_with_the_same_client_id_takes_over(register, connect, service):
    dev = register()
    first, second = connect.device(dev), connect.device(dev)
    assert first.connect() == 0
    first_event = presence(service, "connected", dev.thing)
    assert second.connect() == 0
    events = [json.loads(next_message(service, "$aws/events/presence/").payload) for _index in range(2)]
    by_type = {event["eventType"]: event for event in events}
    assert by_type["disconnected"]["disconnectReason"] == "DUPLICATE_CLIENTID"
    assert by_type["disconnected"]["sessionIdentifier"] == first_event["sessionIdentifier"]
    # presence.py orders by 2 * versionNumber (+1 if disconnected): the takeover's connect sorts last.
    assert by_type["connected"]["versionNumber"] * 2 > by_type["disconnected"]["versionNumber"] * 2 + 1


def test_a_lost_connection_is_reported_as_such(register, connect, service):
    dev = register()
    client = connect.device(dev)
    assert client.connect() == 0
    presence(service, "connected", dev.thing)
    client.paho.loop_stop()
    client.paho.socket().close()
    assert presence(service, "disconnected", dev.thing)["disconnectReason"] == "CONNECTION_LOST"


def test_service_clients_have_no_presence_events(sandbox, connect, service):
    identity = broker.service_identity(sandbox)
    other = connect("iotfleet-quiet", identity.cert, identity.key)
    assert other.connect() == 0
    other.close()
    with pytest.raises(queue.Empty):
        next_message(service, "$aws/events/presence/", timeout=1.0, suffix="/iotfleet-quiet")


def test_status_counts_the_connected_devices(register, connect, sandbox):
    client = connect.device(register())
    assert client.connect() == 0
    line = broker.status_line(sandbox)
    assert line.startswith("mqtt broker running") and f":{sandbox.mqtt_port}," in line
    assert "0 device(s)" not in line


def test_a_last_will_is_checked_like_a_publish(register, connect, service):
    dev, other = register(), register()
    client = connect.device(dev)
    client.paho.will_set(f"{dev.thing}/telemetry", "gone", qos=1)
    assert client.connect() == 0
    client.paho.loop_stop()
    client.paho.socket().close()
    assert next_message(service, "", suffix="/telemetry").payload == b"gone"

    # Mosquitto 2.0.11 checks a will when it would send it (not at CONNECT): a forged one is dropped then.
    sneaky = connect.device(dev)
    sneaky.paho.will_set(f"{other.thing}/telemetry", "forged", qos=1)
    assert sneaky.connect() == 0
    sneaky.paho.loop_stop()
    sneaky.paho.socket().close()
    with pytest.raises(queue.Empty):
        next_message(service, f"{other.thing}/telemetry", timeout=1.0)
