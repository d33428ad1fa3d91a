"""Plain MQTT clients (paho, MQTT v5) for the end-to-end tests: a device's flashed credentials used by
something other than its firmware (to try what the firmware never does), and the sandbox's service
identity as an observer that sees what the broker delivers."""

import contextlib
import ssl
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from firmware import fsimage


class Peer:
    """One paho client; records the CONNACK, every PUBACK reason and whether the session ended."""

    def __init__(self, client_id, ca, cert, key):
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key), cert_reqs=ssl.CERT_REQUIRED)
        self.client.tls_insecure_set(False)
        self.connack = None  # reason code of the CONNACK, once one came
        self.error = None  # what stopped the connection from being made (TLS refused, reset...)
        self.disconnected = threading.Event()
        self.pubacks = {}  # mid -> reason code
        self.received = []  # (topic, payload, user properties)
        self._changed = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties):
        with self._changed:
            self.connack = reason_code
            self._changed.notify_all()

    def _on_disconnect(self, _client, _userdata, _flags, _reason_code, _properties):
        with self._changed:
            self.disconnected.set()
            self._changed.notify_all()

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties):
        with self._changed:
            self.pubacks[mid] = reason_code
            self._changed.notify_all()

    def _on_message(self, _client, _userdata, message):
        properties = dict(getattr(message.properties, "UserProperty", None) or [])
        with self._changed:
            self.received.append((message.topic, message.payload, properties))
            self._changed.notify_all()

    def wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def connect(self, host, port, timeout=10.0):
        """True once connected; False if the broker refused (CONNACK failure, TLS refusal, closed early)."""
        try:
            self.client.connect(host, port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:  # the handshake itself refused (e.g. a revoked certificate)
            self.error = exc
            return False
        self.client.loop_start()
        if not self.wait(lambda: self.connack is not None or self.disconnected.is_set(), timeout):
            raise AssertionError(f"no CONNACK and no disconnect within {timeout} s")
        return self.connack is not None and not self.connack.is_failure and not self.disconnected.is_set()

    @property
    def refused(self) -> bool:
        failed = self.connack is not None and self.connack.is_failure
        return self.error is not None or self.disconnected.is_set() or failed

    def publish(self, topic, payload, qos=1, timeout=10.0):
        """The PUBACK's reason code, or None when the broker ended the session instead of answering."""
        info = self.client.publish(topic, payload, qos=qos)
        self.wait(lambda: info.mid in self.pubacks or self.disconnected.is_set(), timeout)
        return self.pubacks.get(info.mid)

    def subscribe(self, topic, qos=1, timeout=10.0):
        granted = []
        done = threading.Event()

        def on_subscribe(_client, _userdata, _mid, reason_codes, _properties):
            granted.extend(reason_codes)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos=qos)
        assert done.wait(timeout), f"no SUBACK for {topic}"
        return granted

    def close(self):
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def device_credentials(filesystem):
    """The flashed certificate, key and root CA of a board, as files in a private folder for the block."""
    with tempfile.TemporaryDirectory(prefix="iotfleet-e2e-creds-") as folder:
        root = fsimage.extract_image(filesystem.image, folder)
        yield (root / "certs" / "root-ca.pem", root / "certs" / "device.crt", root / "certs" / "device.key")


@contextlib.contextmanager
def peer(client_id, ca, cert, key, host, port):
    """A connected Peer (or one whose connection was refused: check .refused), closed after the block."""
    client = Peer(client_id, ca, cert, key)
    client.connect(host, port)
    try:
        yield client
    finally:
        client.close()


def files_of(identity):
    """(ca, cert, key) of sandbox.broker.service_identity(settings)."""
    return Path(identity.ca), Path(identity.cert), Path(identity.key)
