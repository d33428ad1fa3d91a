"""The device's MQTT client against the TLS broker stub (and a few framing cases in memory)."""

import json
import ssl

import pytest

from firmware.app import mqtt
from firmware.app import net
from tests.unit.firmware.conftest import THING


def connect(broker, pki, keepalive=30, timeout=2.0, on_message=None):
    transport = net.open_tls(
        "127.0.0.1", broker.port, pki.path("device.crt"), pki.path("device.key"), pki.path("ca.pem"), timeout
    )
    client = mqtt.MQTTClient(THING, keepalive=keepalive, on_message=on_message, timeout=timeout)
    client.connect(transport)
    return client


# -- framing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2097151, b"\xff\xff\x7f"),
        (2097152, b"\x80\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_varint(value, encoded):
    assert mqtt.encode_varint(value) == encoded
    data = iter(encoded)
    assert mqtt.decode_varint(lambda: next(data)) == value


def test_remaining_length_limits():
    with pytest.raises(ValueError):
        mqtt.encode_varint(268435456)
    data = iter(b"\xff\xff\xff\xff\x01")
    with pytest.raises(mqtt.MQTTProtocolError, match="longer than 4 bytes"):
        mqtt.decode_varint(lambda: next(data))


class MemoryTransport:
    """Feeds canned bytes; records writes."""

    def __init__(self, incoming):
        self.incoming = bytearray(incoming)
        self.written = b""

    def write(self, data):
        self.written += bytes(data)

    def read(self, n):
        chunk, self.incoming[:] = bytes(self.incoming[:n]), self.incoming[n:]
        return chunk

    def wait(self, timeout):
        return True

    def close(self):
        pass


def test_oversized_and_qos2_packets_are_protocol_errors():
    connack = bytes([mqtt.CONNACK, 2, 0, 0])
    client = mqtt.MQTTClient(THING, max_packet=100)
    client.connect(MemoryTransport(connack + bytes([mqtt.PUBLISH]) + mqtt.encode_varint(101) + b"x" * 101))
    with pytest.raises(mqtt.MQTTProtocolError, match="exceeds"):
        client.loop(1)
    qos2 = mqtt.packet(mqtt.PUBLISH | 0x04, mqtt.encode_string("t") + b"\x00\x01" + b"p")
    client = mqtt.MQTTClient(THING)
    client.connect(MemoryTransport(connack + qos2))
    with pytest.raises(mqtt.MQTTProtocolError, match="QoS 2"):
        client.loop(1)


def test_closed_connection_is_connection_lost():
    client = mqtt.MQTTClient(THING)
    client.connect(MemoryTransport(bytes([mqtt.CONNACK, 2, 0, 0])))
    with pytest.raises(mqtt.MQTTConnectionLost, match="closed"):
        client.loop(1)


# -- over TLS against the broker stub --------------------------------------------------------------


def test_connect_sends_client_id_keepalive_and_clean_session(broker, pki):
    client = connect(broker, pki, keepalive=42)
    (event,) = broker.wait_for("connect")
    assert event.client_id == THING
    assert event.keepalive == 42
    assert (event.protocol, event.level) == ("MQTT", 4)
    assert event.flags == 0x02  # clean session, no will, no user name or password
    assert broker.current.peer_cn == THING  # the TLS client certificate was presented
    client.disconnect()
    broker.wait_for("disconnect")


@pytest.mark.parametrize(("code", "reason"), [(1, "unacceptable protocol version"), (5, "not authorized")])
def test_connack_refusal_is_a_clear_error(broker, pki, code, reason):
    broker.connack_code = code
    with pytest.raises(mqtt.MQTTConnectError, match=reason) as exc:
        connect(broker, pki)
    assert exc.value.code == code


def test_publish_telemetry_json_qos0_and_qos1(broker, pki):
    client = connect(broker, pki)
    payload = json.dumps({"temperature": 21.5, "humidity": 40})
    assert client.publish(f"{THING}/telemetry", payload) is None
    pid = client.publish(f"{THING}/telemetry", payload, qos=1)  # returns only after the PUBACK
    assert pid == 1
    first, second = broker.wait_for("publish", count=2)
    assert (first.topic, first.qos, second.qos) == (f"{THING}/telemetry", 0, 1)
    assert json.loads(second.payload) == {"temperature": 21.5, "humidity": 40}
    client.disconnect()


def test_qos1_without_puback_times_out(broker, pki):
    broker.puback = False
    client = connect(broker, pki, timeout=0.5)
    with pytest.raises(mqtt.MQTTConnectionLost, match="PUBACK"):
        client.publish(f"{THING}/telemetry", b"{}", qos=1)
    client.close()


def test_subscribe_granted_and_refused(broker, pki):
    broker.suback = lambda topic, qos: 0x80 if topic.endswith("/forbidden") else qos
    client = connect(broker, pki)
    assert client.subscribe([(f"{THING}/downlink", 1), (f"$aws/things/{THING}/shadow/update/delta", 0)]) == [1, 0]
    (event, *_rest) = broker.wait_for("subscribe")
    assert event.flags == 0x02  # MQTT 3.1.1 requires the reserved bits 0010
    with pytest.raises(mqtt.MQTTSubscribeError, match="other/forbidden refused") as exc:
        client.subscribe([(f"{THING}/downlink", 1), ("other/forbidden", 1)])
    assert exc.value.granted == 0x80
    client.disconnect()


def test_incoming_publish_is_dispatched_and_acknowledged(broker, pki):
    received = []
    client = connect(broker, pki, on_message=lambda topic, payload: received.append((topic, payload)))
    client.subscribe([(f"{THING}/downlink", 1)])
    broker.current.publish(f"{THING}/downlink", b"hello", qos=1)
    for _unused in range(20):
        client.loop(0.5)
        if received:
            break
    assert received == [(f"{THING}/downlink", b"hello")]
    broker.wait_for("puback")
    client.disconnect()


def test_keepalive_pings_and_detects_a_silent_broker(broker, pki):
    client = connect(broker, pki, keepalive=1, timeout=0.6)
    client.loop(0.8)  # idle past keepalive/2: a PINGREQ goes out, the PINGRESP comes back
    broker.wait_for("pingreq")
    client.loop(0.3)
    broker.pingresp = False
    with pytest.raises(mqtt.MQTTConnectionLost, match="PINGRESP"):
        for _unused in range(10):
            client.loop(0.5)
    client.close()


def test_broker_dropping_the_connection_is_noticed(broker, pki):
    client = connect(broker, pki)
    broker.current.close()
    with pytest.raises(mqtt.MQTTConnectionLost):
        for _unused in range(10):
            client.loop(0.5)
    client.close()


def test_server_certificate_from_another_ca_is_refused(pki):
    from tests.unit.firmware.broker import Broker

    rogue = Broker(pki.path("rogue-server.crt"), pki.path("server.key"), pki.path("ca.pem")).start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(rogue, pki)
    finally:
        rogue.stop()


def test_connect_to_reaches_a_local_broker_but_still_verifies_the_endpoint_name(broker, pki):
    paths = (pki.path("device.crt"), pki.path("device.key"), pki.path("ca.pem"))
    local = ("127.0.0.1", broker.port)
    transport = net.open_tls("localhost", 8883, *paths, timeout=2, address=local)  # cert has DNS:localhost
    mqtt.MQTTClient(THING).connect(transport)
    broker.wait_for("connect")
    transport.close()
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        net.open_tls("abc123-ats.iot.eu-north-1.amazonaws.com", 8883, *paths, timeout=2, address=local)
