"""Runs the device application's logic on a real MicroPython interpreter (and on CPython).

test_micropython.py runs this file on MicroPython's WebAssembly port (no sockets or TLS there) and on
CPython, with the application importable as the package `app`, the way the board imports it. The
network is replaced by an in-memory broker that speaks MQTT byte for byte, and time is simulated, so
the same checks pass on both interpreters and run in a fraction of a second. It prints
"MICROPYTHON-CHECK OK <n>" at the end; any failed check raises.

Keep this file MicroPython code: no f-string "=" specifiers, no walrus, no typing, no dataclasses.
"""

import json
import sys

from app import device
from app import hw
from app import mqtt
from app import settings

THING = "4827E2E59190"
SHADOW = "$aws/things/" + THING + "/shadow/"
CHECKS = [0]


def check(condition, what):
    CHECKS[0] += 1
    if not condition:
        raise AssertionError("check failed: " + what)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class LoopbackBroker:
    """The transport interface of MQTTClient, answering like a broker, in memory."""

    def __init__(self, clock, refuse=None, shadow=None):
        self.clock = clock
        self.refuse = refuse or ()
        self.shadow = shadow
        self.inbox = b""  # bytes for the client to read
        self.received = []  # (kind, fields) of what the client sent
        self.closed = False
        self._pid = 0

    def queue(self, data):
        self.inbox += data

    def push(self, topic, payload, qos=1):
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
        body = mqtt.encode_string(topic)
        if qos:
            self._pid += 1
            body += self._pid.to_bytes(2, "big")
        self.queue(mqtt.packet(mqtt.PUBLISH | (qos << 1), body + payload))

    # -- transport interface -------------------------------------------------------------------

    def write(self, data):
        data = bytes(data)
        first = data[0]
        pos = 1
        length = 0
        shift = 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        self._handle(first, data[pos : pos + length])

    def read(self, n):
        chunk = self.inbox[:n]
        self.inbox = self.inbox[n:]
        return chunk

    def wait(self, timeout):
        if self.inbox or self.closed:
            return True
        self.clock.now += timeout  # simulated time passes while nothing arrives
        return False

    def close(self):
        self.closed = True

    # -- broker side ---------------------------------------------------------------------------

    def _handle(self, first, body):
        kind = first & 0xF0
        if kind == mqtt.CONNECT:
            pos = 2 + int.from_bytes(body[0:2], "big")
            keepalive = int.from_bytes(body[pos + 2 : pos + 4], "big")
            client_id = body[pos + 6 :].decode()
            self.received.append(("connect", (body[2:pos].decode(), body[pos], body[pos + 1], keepalive, client_id)))
            self.queue(bytes([mqtt.CONNACK, 2, 0, 0]))
        elif kind == mqtt.SUBSCRIBE:
            pos = 2
            codes = []
            topics = []
            while pos < len(body):
                tlen = int.from_bytes(body[pos : pos + 2], "big")
                topic = body[pos + 2 : pos + 2 + tlen].decode()
                qos = body[pos + 2 + tlen]
                topics.append((topic, qos))
                codes.append(0x80 if topic in self.refuse else qos)
                pos += 3 + tlen
            self.received.append(("subscribe", (first & 0x0F, topics)))
            self.queue(mqtt.packet(mqtt.SUBACK, body[0:2] + bytes(codes)))
        elif kind == mqtt.PUBLISH:
            qos = (first >> 1) & 3
            tlen = int.from_bytes(body[0:2], "big")
            topic = body[2 : 2 + tlen].decode()
            pos = 2 + tlen + (2 if qos else 0)
            self.received.append(("publish", (topic, body[pos:], qos)))
            if qos:
                self.queue(bytes([mqtt.PUBACK, 2]) + body[2 + tlen : 4 + tlen])
            if topic == SHADOW + "get":
                if self.shadow is None:
                    self.push(SHADOW + "get/rejected", {"code": 404})
                else:
                    self.push(SHADOW + "get/accepted", {"state": self.shadow, "version": 1})
        elif kind == mqtt.PUBACK:
            self.received.append(("puback", int.from_bytes(body, "big")))
        elif kind == mqtt.PINGREQ:
            self.received.append(("pingreq", None))
            self.queue(bytes([mqtt.PINGRESP, 0]))
        elif kind == mqtt.DISCONNECT:
            self.received.append(("disconnect", None))

    def sent(self, kind):
        return [fields for k, fields in self.received if k == kind]


def check_mqtt_client():
    clock = Clock()
    broker = LoopbackBroker(clock, refuse=("other/topic",))
    messages = []
    client = mqtt.MQTTClient(
        THING, keepalive=10, clock=clock, on_message=lambda t, p: messages.append((t, p)), timeout=5
    )
    check(client.connect(broker) is False, "no session present")
    check(broker.sent("connect") == [("MQTT", 4, 2, 10, THING)], "CONNECT fields")
    check(client.subscribe([(THING + "/downlink", 1)]) == [1], "granted QoS")
    check(broker.sent("subscribe")[0][0] == 2, "SUBSCRIBE reserved flags")
    try:
        client.subscribe([("other/topic", 1)])
        check(False, "refused subscription raises")
    except mqtt.MQTTSubscribeError as err:
        check(err.granted == 0x80 and "refused" in str(err), "refusal surfaced")
    check(client.publish(THING + "/telemetry", '{"temperature": 21}', qos=1) == 3, "QoS 1 packet id")
    check(client.publish(THING + "/telemetry", b"{}") is None, "QoS 0 has no id")
    broker.push(THING + "/downlink", b"hello")
    client.loop(1)
    check(messages == [(THING + "/downlink", b"hello")], "incoming publish dispatched")
    check(broker.sent("puback") == [1], "incoming QoS 1 acknowledged")
    client.loop(6)  # idle past keepalive / 2
    check(len(broker.sent("pingreq")) == 1, "keepalive PINGREQ")
    client.loop(1)
    check(client._ping_sent is None, "PINGRESP handled")
    for value, encoded in ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (268435455, b"\xff\xff\xff\x7f")):
        check(mqtt.encode_varint(value) == encoded, "varint " + str(value))
    try:
        mqtt.MQTTClient(THING, clock=clock).connect(refusing_transport(clock))
        check(False, "CONNACK refusal raises")
    except mqtt.MQTTConnectError as err:
        check(err.code == 5 and "not authorized" in str(err), "CONNACK code 5 named")
    client.disconnect()
    check(broker.sent("disconnect") == [None], "DISCONNECT sent")


def refusing_transport(clock):
    transport = LoopbackBroker(clock)
    transport.write = lambda data: transport.queue(bytes([mqtt.CONNACK, 2, 0, 5]))
    return transport


def check_settings():
    check(settings.valid_interval(30) == 30, "interval 30")
    for bad in (0, 3601, True, "30", 2.5, float("nan"), float("inf"), None):
        check(settings.valid_interval(bad) is None, "interval refused: " + repr(bad))
    check(settings.is_thing_name(THING) and not settings.is_thing_name("48:27:E2:E5:91:90"), "thing names")
    try:
        settings.validate({"thing_name": "x"})
        check(False, "invalid config raises")
    except settings.ConfigError as err:
        check("endpoint is required" in str(err), "config problems listed")


class SimPlatform(hw.HostPlatform):
    def __init__(self, clock, broker, readings, config):
        super().__init__("/", sensor=self._read, clock=clock, sleep=self._sleep, rand=lambda: 0.5, log=self._log)
        self.broker = broker
        self.readings = list(readings)
        self.config_bytes = json.dumps(config).encode()
        self.logs = []
        self.slept = []
        self.device = None

    def read_file(self, name):
        if name != settings.CONFIG_PATH:
            raise OSError(2, name)
        return self.config_bytes

    def open_tls(self, host, port, certfile, keyfile, cafile, timeout):
        return self.broker

    def _read(self):
        reading = self.readings.pop(0)
        if not self.readings:
            self.device.stop()
        if isinstance(reading, Exception):
            raise reading
        return reading

    def _sleep(self, seconds):
        self.slept.append(seconds)

    def _log(self, message):
        self.logs.append(message)


def check_device():
    clock = Clock()
    broker = LoopbackBroker(clock, shadow={"desired": {"sendIntervalSeconds": 5}})
    config = {"thing_name": THING, "endpoint": "example-ats.iot.eu-north-1.amazonaws.com", "wifi_ssid": "lab"}
    readings = [(21.5, 40.0), OSError("DHT timeout"), (float("nan"), 50), (22, 41)]
    platform = SimPlatform(clock, broker, readings, config)
    dev = device.Device(settings.load(platform), platform)
    platform.device = dev
    started = clock.now
    dev.run()
    subscribed = broker.sent("subscribe")[0][1]
    check(len(subscribed) == 4 and (SHADOW + "update/delta", 1) in subscribed, "shadow subscriptions")
    publishes = broker.sent("publish")
    check(publishes[0] == (SHADOW + "get", b"", 1), "shadow requested first")
    telemetry = [json.loads(p) for t, p, q in publishes if t == THING + "/telemetry"]
    check(telemetry == [{"temperature": 21.5, "humidity": 40.0}, {"temperature": 22, "humidity": 41}], "telemetry")
    reports = [json.loads(p)["state"]["reported"] for t, p, q in publishes if t == SHADOW + "update"]
    check(reports == [{"sendIntervalSeconds": 5}], "desired interval reported back")
    check(dev.interval == 5 and dev.skipped == 2, "interval applied, bad readings skipped")
    check(clock.now - started >= 15, "readings spaced by the shadow's interval")
    check(broker.sent("disconnect") == [None], "polite disconnect on stop")
    check(platform.watchdog_feeds > 0, "watchdog fed")

    # Connection failures: exponential backoff with jitter (rand = 0.5 -> 0.75 x 1, 2, 4).
    platform = SimPlatform(clock, broker, [(20, 50)], dict(config, backoff_cap_seconds=4))
    dev = device.Device(settings.load(platform), platform)
    attempts = []

    def refuse(*args):
        attempts.append(args)
        if len(attempts) == 4:
            dev.stop()
        raise OSError(111, "refused")

    platform.open_tls = refuse
    dev.run()
    check(abs(sum(platform.slept) - 0.75 * (1 + 2 + 4)) < 1e-6, "backoff 0.75 + 1.5 + 3.0 s")
    check(max(platform.slept) <= device.MAX_WAIT, "sleeps cut into watchdog-sized slices")


# Stand-ins for the board's hardware modules, so hw.BoardPlatform runs here too.
BOARD_MODULES = {
    "machine": """
feeds = []
resets = []
class Pin:
    def __init__(self, number):
        self.number = number
class WDT:
    def __init__(self, timeout):
        feeds.append(("start", timeout))
    def feed(self):
        feeds.append("feed")
def reset():
    resets.append(True)
""",
    "network": """
STA_IF = 0
class WLAN:
    def __init__(self, interface):
        self.polls = 0
        self.up = False
        self.joined = None
    def active(self, flag):
        self.up = flag
    def connect(self, ssid, password):
        self.joined = (ssid, password)
    def isconnected(self):
        self.polls += 1
        return self.joined is not None and self.joined[0] == "lab" and self.polls > 2
    def disconnect(self):
        self.joined = None
""",
    "dht": """
class DHT11:
    def __init__(self, pin):
        self.pin = pin
        self.calls = 0
    def measure(self):
        self.calls += 1
        if self.calls == 1:
            raise OSError(116)
    def temperature(self):
        return 23
    def humidity(self):
        return 45
class DHT22(DHT11):
    def temperature(self):
        return 23.4
""",
}


def install_board_modules():
    import os

    folder = "/boardstubs"
    if sys.implementation.name != "micropython":
        import tempfile

        folder = tempfile.mkdtemp()
    else:
        try:
            os.mkdir(folder)
        except OSError:
            pass
    for name in BOARD_MODULES:
        with open(folder + "/" + name + ".py", "w") as handle:
            handle.write(BOARD_MODULES[name])
    sys.path.insert(0, folder)


def check_board_platform():
    install_board_modules()
    import machine

    platform = hw.BoardPlatform()
    platform._sleep = lambda seconds: None
    check(platform.path(settings.CONFIG_PATH) == "/config.json", "board filesystem root is /")
    check(platform.wifi_connect("lab", "pw", 5) is True and platform.wifi_connected(), "Wi-Fi joins")
    other = hw.BoardPlatform()
    other._sleep = lambda seconds: None
    check(other.wifi_connect("elsewhere", "pw", 0.05) is False, "Wi-Fi gives up after its timeout")
    try:
        platform.read_sensor("DHT22", 7)
        check(False, "failed DHT read raises SensorError")
    except hw.SensorError as err:
        check("DHT22 on pin 7" in str(err), "sensor error names the sensor")
    check(platform.read_sensor("DHT22", 7) == (23.4, 45), "DHT22 reading")
    platform.watchdog_start(30000)
    platform.watchdog_feed()
    check(machine.feeds == [("start", 30000), "feed"], "hardware watchdog started and fed")
    first = platform.clock()
    check(platform.clock() >= first, "ticks clock is monotonic")
    check(0 <= platform.rand() < 1, "random in [0, 1)")
    platform.reset()
    check(machine.resets == [True], "reset reaches machine.reset")


check_mqtt_client()
check_settings()
check_device()
if sys.implementation.name == "micropython":  # BoardPlatform needs time.ticks_ms
    check_board_platform()
print("MICROPYTHON-CHECK OK " + str(CHECKS[0]) + " on " + sys.implementation.name)
