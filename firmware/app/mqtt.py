"""A small MQTT 3.1.1 client for the device: just what AWS IoT Core needs, nothing more.

Runs unchanged on MicroPython and CPython: it only speaks bytes to a *transport* (see net.py) with
`write(data)`, `read(n)` (blocking, b"" when the peer closed), `wait(timeout) -> bool` (data ready)
and `close()`, and asks a `clock()` (monotonic seconds) for the time. No threads, no asyncio: the
application calls `loop()` to receive, and every wait is bounded so the watchdog can be fed.

Supported: CONNECT with clean session (AWS IoT keeps no session state we want), CONNACK return codes,
PUBLISH QoS 0 and 1 both ways, SUBSCRIBE/SUBACK with granted-QoS checking, PINGREQ/PINGRESP
keepalive, DISCONNECT. Not supported (AWS IoT does not support them either): QoS 2, retained
subscriptions semantics beyond the flag, wills, username/password (identity is the TLS client cert).
"""

# Control packet types (high nibble of the first byte).
CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x80
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

# MQTT 3.1.1 section 3.2.2.3.
CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
SUBACK_FAILURE = 0x80
MAX_REMAINING_LENGTH = 268435455  # 4-byte varint limit (spec 2.2.3)


class MQTTError(Exception):
    """Anything that ends the session; the caller reconnects."""


class MQTTConnectError(MQTTError):
    """The broker answered CONNECT with a non-zero return code."""

    def __init__(self, code):
        self.code = code
        reason = CONNACK_CODES.get(code, "unknown reason")
        super().__init__(f"connection refused: {reason} (code {code})")


class MQTTSubscribeError(MQTTError):
    """The broker refused (0x80) or downgraded a subscription."""

    def __init__(self, topic, granted):
        self.topic = topic
        self.granted = granted
        reason = "refused" if granted == SUBACK_FAILURE else f"granted QoS {granted} is not valid"
        super().__init__(f"subscription to {topic} {reason}")


class MQTTProtocolError(MQTTError):
    """The broker sent something this client does not expect."""


class MQTTConnectionLost(MQTTError):
    """The transport closed, or the broker stopped answering."""


def encode_varint(n):
    """Remaining-length encoding: 7 bits per byte, high bit = more bytes follow."""
    if n < 0 or n > MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length out of range: {n}")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(read_byte):
    """Read a remaining length with `read_byte()`; at most 4 bytes."""
    value = 0
    shift = 0
    for _unused in range(4):
        byte = read_byte()
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
    raise MQTTProtocolError("remaining length longer than 4 bytes")


def encode_string(text):
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(data) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def packet(first_byte, body):
    return bytes([first_byte]) + encode_varint(len(body)) + body


class MQTTClient:
    """One MQTT session over one transport; make a new client (or call connect again) to reconnect."""

    def __init__(self, client_id, keepalive=60, on_message=None, clock=None, timeout=10.0, max_packet=16384):
        self.client_id = client_id
        self.keepalive = keepalive
        self.on_message = on_message  # on_message(topic: str, payload: bytes)
        self.timeout = timeout  # seconds to wait for an acknowledgement or the rest of a packet
        self.max_packet = max_packet  # shadow documents are <= 8 KiB; refuse anything huge (RAM)
        self._clock = clock
        self._transport = None
        self._next_id = 0
        self._acked = set()  # packet ids of PUBACKs received and not yet collected
        self._subacks = {}  # packet id -> list of granted QoS
        self._last_tx = 0.0
        self._ping_sent = None  # when the outstanding PINGREQ was sent

    # -- time ------------------------------------------------------------------------------------

    def _now(self):
        if self._clock is None:
            import time

            # CPython; MicroPython callers always pass the platform clock.
            return time.monotonic()
        return self._clock()

    # -- framing ---------------------------------------------------------------------------------

    def _send(self, data):
        if self._transport is None:
            raise MQTTConnectionLost("not connected")
        try:
            self._transport.write(data)
        except OSError as err:
            raise MQTTConnectionLost(f"write failed: {err}") from None
        self._last_tx = self._now()

    def _read_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self._transport.read(n - len(buf))
            except OSError as err:
                raise MQTTConnectionLost(f"read failed: {err}") from None
            if not chunk:
                raise MQTTConnectionLost("connection closed by broker")
            buf += chunk
        return buf

    def _read_packet(self, timeout):
        """Wait up to `timeout` for a packet; (first byte, body) or None when nothing arrived."""
        if self._transport is None:
            raise MQTTConnectionLost("not connected")
        try:
            ready = self._transport.wait(timeout)
        except OSError as err:
            raise MQTTConnectionLost(f"wait failed: {err}") from None
        if not ready:
            return None
        first = self._read_exact(1)[0]
        length = decode_varint(lambda: self._read_exact(1)[0])
        if length > self.max_packet:
            raise MQTTProtocolError(f"packet of {length} bytes exceeds the limit of {self.max_packet}")
        body = self._read_exact(length) if length else b""
        return first, body

    def _packet_id(self):
        self._next_id = self._next_id % 0xFFFF + 1  # 1..65535, 0 is not a valid id
        return self._next_id

    # -- connection ------------------------------------------------------------------------------

    def connect(self, transport):
        """CONNECT over an open transport and wait for CONNACK; returns the session-present flag."""
        self._transport = transport
        self._acked = set()
        self._subacks = {}
        self._ping_sent = None
        variable = encode_string("MQTT") + bytes([4, 0x02]) + self.keepalive.to_bytes(2, "big")
        self._send(packet(CONNECT, variable + encode_string(self.client_id)))
        reply = self._read_packet(self.timeout)
        if reply is None:
            raise MQTTConnectionLost("no CONNACK from broker")
        first, body = reply
        if first != CONNACK or len(body) != 2:
            raise MQTTProtocolError(f"expected CONNACK, got packet type 0x{first:02x}")
        if body[1] != 0:
            raise MQTTConnectError(body[1])
        return bool(body[0] & 0x01)

    def disconnect(self):
        """Polite DISCONNECT, then close; never raises (used on the way out)."""
        try:
            if self._transport is not None:
                self._transport.write(bytes([DISCONNECT, 0]))
        except OSError:
            pass
        self.close()

    def close(self):
        if self._transport is not None:
            try:
                self._transport.close()
            except OSError:
                pass
        self._transport = None

    @property
    def connected(self):
        return self._transport is not None

    # -- operations ------------------------------------------------------------------------------

    def publish(self, topic, payload, qos=0, retain=False):
        """PUBLISH; with QoS 1 wait for the PUBACK (incoming messages are dispatched meanwhile)."""
        if qos not in (0, 1):
            raise ValueError("only QoS 0 and 1 are supported")
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        header = PUBLISH | (qos << 1) | (1 if retain else 0)
        body = encode_string(topic)
        pid = None
        if qos:
            pid = self._packet_id()
            body += pid.to_bytes(2, "big")
        self._send(packet(header, body + payload))
        if qos:
            self._wait_for(lambda: pid in self._acked, f"PUBACK for packet {pid}")
            self._acked.discard(pid)
        return pid

    def subscribe(self, topics):
        """SUBSCRIBE to [(topic, qos), ...]; returns the granted QoS list or raises MQTTSubscribeError."""
        pid = self._packet_id()
        body = pid.to_bytes(2, "big")
        for topic, qos in topics:
            body += encode_string(topic) + bytes([qos])
        self._send(packet(SUBSCRIBE | 0x02, body))  # SUBSCRIBE has reserved flags 0b0010
        self._wait_for(lambda: pid in self._subacks, f"SUBACK for packet {pid}")
        granted = self._subacks.pop(pid)
        if len(granted) != len(topics):
            raise MQTTProtocolError(f"SUBACK has {len(granted)} codes for {len(topics)} topics")
        for index, (topic, qos) in enumerate(topics):  # no zip(strict=) on MicroPython
            code = granted[index]
            # 0x80 is a refusal (AWS: policy denies it); a code above the request is a broker bug.
            if code == SUBACK_FAILURE or code > qos:
                raise MQTTSubscribeError(topic, code)
        return granted

    def ping(self):
        self._send(bytes([PINGREQ, 0]))
        self._ping_sent = self._now()

    def loop(self, timeout):
        """Receive and dispatch for up to `timeout` seconds, keeping the connection alive.

        Returns early after the first packet so the caller can act on it (e.g. a shadow delta).
        """
        self._keepalive()
        deadline = self._now() + timeout
        while True:
            remaining = deadline - self._now()
            if remaining <= 0:
                return
            # Wake up in time for the next PINGREQ or PINGRESP deadline.
            reply = self._read_packet(min(remaining, self._keepalive_due()))
            if reply is not None:
                self._handle(*reply)
                return
            self._keepalive()

    # -- internals -------------------------------------------------------------------------------

    def _keepalive_due(self):
        """Seconds until the keepalive needs attention (ping to send or answer overdue)."""
        if not self.keepalive:
            return self.timeout
        now = self._now()
        if self._ping_sent is not None:
            return max(0.05, self._ping_sent + self.timeout - now)
        # Ping at half the keepalive: the broker drops us after 1.5 x keepalive of silence.
        return max(0.05, self._last_tx + self.keepalive / 2 - now)

    def _keepalive(self):
        if not self.keepalive:
            return
        now = self._now()
        if self._ping_sent is not None:
            if now - self._ping_sent > self.timeout:
                raise MQTTConnectionLost("no PINGRESP from broker")
        elif now - self._last_tx >= self.keepalive / 2:
            self.ping()

    def _wait_for(self, done, what):
        deadline = self._now() + self.timeout
        while not done():
            remaining = deadline - self._now()
            if remaining <= 0:
                raise MQTTConnectionLost(f"timed out waiting for {what}")
            reply = self._read_packet(remaining)
            if reply is not None:
                self._handle(*reply)

    def _handle(self, first, body):
        kind = first & 0xF0
        if kind == PUBLISH:
            self._handle_publish(first, body)
        elif kind == PUBACK:
            self._acked.add(int.from_bytes(body[0:2], "big"))
        elif kind == SUBACK:
            self._subacks[int.from_bytes(body[0:2], "big")] = list(body[2:])
        elif kind == PINGRESP:
            self._ping_sent = None
        else:
            raise MQTTProtocolError(f"unexpected packet type 0x{first:02x}")

    def _handle_publish(self, first, body):
        qos = (first >> 1) & 0x03
        if qos > 1:
            raise MQTTProtocolError("QoS 2 PUBLISH received; this client subscribes with QoS <= 1 only")
        topic_len = int.from_bytes(body[0:2], "big")
        topic = body[2 : 2 + topic_len].decode("utf-8")
        pos = 2 + topic_len
        if qos:
            pid = body[pos : pos + 2]
            pos += 2
            # Acknowledge before the callback: a slow or failing handler must not make the broker resend.
            self._send(bytes([PUBACK, 2]) + pid)
        if self.on_message is not None:
            self.on_message(topic, body[pos:])
