"""A tiny scripted MQTT 3.1.1 broker over TLS for the firmware tests (one test, one broker).

It requires a client certificate signed by the test CA (like Mosquitto and AWS IoT), records every
packet it receives as an event, and answers as scripted: CONNACK code, SUBACK codes, whether to
PUBACK and PINGRESP, and a minimal classic shadow (get -> get/accepted or get/rejected).
"""

import json
import socket
import ssl
import threading
import time

from firmware.app import mqtt


class Event:
    def __init__(self, kind, conn, **fields):
        self.kind = kind
        self.conn = conn
        self.__dict__.update(fields)

    def __repr__(self):
        fields = {k: v for k, v in self.__dict__.items() if k not in ("kind", "conn")}
        return f"Event({self.kind}, {fields})"


class Connection:
    def __init__(self, broker, sock):
        self.broker = broker
        self.sock = sock
        self.client_id = None
        self.peer_cn = None
        self.lock = threading.Lock()
        self.closed = False
        self._next_id = 0

    def send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def publish(self, topic, payload, qos=0):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        body = mqtt.encode_string(topic)
        if qos:
            self._next_id += 1
            body += self._next_id.to_bytes(2, "big")
        self.send(mqtt.packet(mqtt.PUBLISH | (qos << 1), body + payload))

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _read_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    def serve(self):
        try:
            while not self.closed:
                first = self._read_exact(1)[0]
                length = mqtt.decode_varint(lambda: self._read_exact(1)[0])
                body = self._read_exact(length) if length else b""
                self.broker.handle(self, first, body)
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            self.broker.record("closed", self)


class Broker:
    def __init__(self, certfile, keyfile, cafile):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.context.load_verify_locations(cafile=cafile)
        self.context.verify_mode = ssl.CERT_REQUIRED
        # Script: what the broker answers.
        self.connack_code = 0
        self.suback = None  # callable(topic, qos) -> code; default grants what was asked
        self.puback = True
        self.pingresp = True
        self.shadow = None  # None: no shadow (get -> get/rejected); else the "state" document
        self.events = []
        self.connections = []
        self._cond = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stopped = True
        for conn in list(self.connections):
            conn.close()
        self._thread.join(5)
        self._listener.close()

    def _accept(self):
        while not self._stopped:
            try:
                raw, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                raw.settimeout(10)
                sock = self.context.wrap_socket(raw, server_side=True)
                sock.settimeout(None)
            except (OSError, ssl.SSLError) as err:
                raw.close()
                self.record("tls_failed", None, error=str(err))
                continue
            conn = Connection(self, sock)
            subject = dict(item[0] for item in sock.getpeercert()["subject"])
            conn.peer_cn = subject.get("commonName")
            self.connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    # -- events --------------------------------------------------------------------------------

    def record(self, kind, conn, **fields):
        with self._cond:
            self.events.append(Event(kind, conn, **fields))
            self._cond.notify_all()

    def of(self, kind, **match):
        with self._cond:
            return [e for e in self.events if e.kind == kind and all(getattr(e, k) == v for k, v in match.items())]

    def wait_for(self, kind, count=1, timeout=10, **match):
        """Wait until `count` events of `kind` (matching fields) were recorded; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if e.kind == kind and all(getattr(e, k) == v for k, v in match.items())]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {count} x {kind} {match} within {timeout}s; events: {self.events}")
                self._cond.wait(remaining)

    @property
    def current(self):
        return self.connections[-1]

    # -- protocol ------------------------------------------------------------------------------

    def handle(self, conn, first, body):
        kind = first & 0xF0
        if kind == mqtt.CONNECT:
            self._connect(conn, body)
        elif kind == mqtt.PUBLISH:
            self._publish(conn, first, body)
        elif kind == mqtt.SUBSCRIBE:
            self._subscribe(conn, first, body)
        elif kind == mqtt.PUBACK:
            self.record("puback", conn, packet_id=int.from_bytes(body, "big"))
        elif kind == mqtt.PINGREQ:
            self.record("pingreq", conn)
            if self.pingresp:
                conn.send(bytes([mqtt.PINGRESP, 0]))
        elif kind == mqtt.DISCONNECT:
            self.record("disconnect", conn)
            conn.close()
        else:
            self.record("unexpected", conn, first=first, body=body)

    def _connect(self, conn, body):
        name_len = int.from_bytes(body[0:2], "big")
        protocol = body[2 : 2 + name_len].decode()
        pos = 2 + name_len
        level, flags = body[pos], body[pos + 1]
        keepalive = int.from_bytes(body[pos + 2 : pos + 4], "big")
        id_len = int.from_bytes(body[pos + 4 : pos + 6], "big")
        conn.client_id = body[pos + 6 : pos + 6 + id_len].decode()
        self.record(
            "connect", conn, protocol=protocol, level=level, flags=flags, keepalive=keepalive, client_id=conn.client_id
        )
        conn.send(bytes([mqtt.CONNACK, 2, 0, self.connack_code]))
        if self.connack_code:
            conn.close()

    def _subscribe(self, conn, first, body):
        pid = body[0:2]
        pos = 2
        topics = []
        while pos < len(body):
            tlen = int.from_bytes(body[pos : pos + 2], "big")
            topics.append((body[pos + 2 : pos + 2 + tlen].decode(), body[pos + 2 + tlen]))
            pos += 3 + tlen
        self.record("subscribe", conn, flags=first & 0x0F, topics=topics)
        codes = [self.suback(t, q) if self.suback else q for t, q in topics]
        conn.send(mqtt.packet(mqtt.SUBACK, pid + bytes(codes)))

    def _publish(self, conn, first, body):
        qos = (first >> 1) & 3
        tlen = int.from_bytes(body[0:2], "big")
        topic = body[2 : 2 + tlen].decode()
        pos = 2 + tlen
        pid = None
        if qos:
            pid = body[pos : pos + 2]
            pos += 2
        payload = body[pos:]
        self.record("publish", conn, topic=topic, payload=payload, qos=qos, retain=bool(first & 1))
        if qos and self.puback:
            conn.send(bytes([mqtt.PUBACK, 2]) + pid)
        if topic.endswith("/shadow/get"):
            base = topic[: -len("get")]
            if self.shadow is None:
                conn.publish(base + "get/rejected", {"code": 404, "message": "No shadow exists"}, qos=1)
            else:
                conn.publish(base + "get/accepted", {"state": self.shadow, "version": 1}, qos=1)
