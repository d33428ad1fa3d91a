"""The application: read the sensor, publish telemetry, follow the shadow, survive disconnects.

Contract (DESIGN section 2): thing name = MQTT client id; publish {"temperature": C, "humidity": %RH}
to <thing>/telemetry every sendIntervalSeconds; subscribe <thing>/downlink and the classic shadow;
take sendIntervalSeconds from the shadow's desired state and report it back. Nothing is ever written
to the filesystem (DESIGN section 4): the interval from the shadow lives in RAM and is fetched again
from the shadow after every reconnect.
"""

import json

from . import hw
from . import mqtt
from . import settings

QOS = 1  # telemetry and reports are acknowledged, so a dead link is noticed at the next publish
SHADOW_KEY = "sendIntervalSeconds"
# Plausible readings of a DHT22 (the DHT11's range is narrower): anything else is a bad read.
TEMPERATURE_RANGE = (-40, 80)
HUMIDITY_RANGE = (0, 100)
WIFI_TIMEOUT = 20
SOCKET_TIMEOUT = 10
MAX_WAIT = 1.0  # longest single wait in the loop, so the watchdog is fed and stop() is noticed


class Topics:
    def __init__(self, thing):
        shadow = "$aws/things/" + thing + "/shadow/"
        self.telemetry = thing + "/telemetry"
        self.downlink = thing + "/downlink"
        self.shadow_get = shadow + "get"
        self.shadow_get_accepted = shadow + "get/accepted"
        self.shadow_get_rejected = shadow + "get/rejected"
        self.shadow_update = shadow + "update"
        self.shadow_delta = shadow + "update/delta"

    def subscriptions(self):
        return [
            (self.downlink, QOS),
            (self.shadow_get_accepted, QOS),
            (self.shadow_get_rejected, QOS),
            (self.shadow_delta, QOS),
        ]


class Backoff:
    """Exponential backoff with jitter: base * 2**n up to cap, then a random point in [d/2, d].

    Jitter spreads a fleet's reconnects after a broker outage; the lower half keeps a minimum wait.
    """

    def __init__(self, base, cap, rand):
        self.base = base
        self.cap = cap
        self.rand = rand
        self.attempt = 0

    def next_delay(self):
        delay = min(self.cap, self.base * (2**self.attempt))
        if delay < self.cap:
            self.attempt += 1
        return delay / 2 + self.rand() * delay / 2

    def reset(self):
        self.attempt = 0


def plausible(temperature, humidity):
    for value, (low, high) in ((temperature, TEMPERATURE_RANGE), (humidity, HUMIDITY_RANGE)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not low <= value <= high:  # also false for NaN
            return False
    return True


class Device:
    def __init__(self, config, platform):
        self.config = config
        self.platform = platform
        self.thing = config["thing_name"]
        self.topics = Topics(self.thing)
        self.interval = config["send_interval_seconds"]
        self.backoff = Backoff(config["backoff_base_seconds"], config["backoff_cap_seconds"], platform.rand)
        self.published = 0  # telemetry messages acknowledged by the broker
        self.skipped = 0  # sensor reads skipped as failed or implausible
        self.connects = 0
        self.last_error = None
        self._running = True
        self._report_pending = False
        self._last_sample = None

    # -- control -------------------------------------------------------------------------------

    def stop(self):
        """Ask run() to return (from another thread or a callback); takes effect within MAX_WAIT."""
        self._running = False

    @property
    def running(self):
        return self._running

    def run(self):
        """Connect, publish, reconnect with backoff, until stop()."""
        self.platform.watchdog_start(self.config["watchdog_timeout_ms"])
        while self._running:
            self.platform.watchdog_feed()
            client = None
            try:
                self._ensure_wifi()
                client = self._connect()
                self._session(client)
            except Exception as err:
                # OSError and MQTTError are the expected ones (network, TLS, broker); anything else
                # is logged the same way, since on a board in the field a reconnect beats a halt.
                self.last_error = err
                self.platform.log(f"session ended: {type(err).__name__}: {err}")
            finally:
                if client is not None:
                    client.disconnect()
            if self._running:
                self._pause(self.backoff.next_delay())

    # -- connection ----------------------------------------------------------------------------

    def _ensure_wifi(self):
        if self.platform.wifi_connected():
            return
        if not self.platform.wifi_connect(self.config["wifi_ssid"], self.config["wifi_password"], WIFI_TIMEOUT):
            raise OSError("Wi-Fi connection failed")

    def _connect(self):
        transport = self.platform.open_tls(
            self.config["endpoint"],
            self.config["port"],
            settings.CERT_PATH,
            settings.KEY_PATH,
            settings.ROOT_CA_PATH,
            SOCKET_TIMEOUT,
        )
        client = mqtt.MQTTClient(
            self.thing,
            keepalive=self.config["keepalive_seconds"],
            on_message=self._on_message,
            clock=self.platform.clock,
            timeout=SOCKET_TIMEOUT,
        )
        try:
            client.connect(transport)
        except BaseException:
            client.close()
            raise
        self.connects += 1
        return client

    def _session(self, client):
        client.subscribe(self.topics.subscriptions())
        # Ask for the shadow: the answer (get/accepted, or get/rejected when there is none yet)
        # sets the interval; AWS ignores the payload of a get request.
        client.publish(self.topics.shadow_get, b"", qos=QOS)
        self.backoff.reset()  # connected, subscribed and acknowledged: the link works
        endpoint = self.config["endpoint"]
        self.platform.log(f"connected to {endpoint} as {self.thing}")
        self._last_sample = None
        while self._running:
            self.platform.watchdog_feed()
            if self._report_pending:
                self._report_pending = False
                self._report(client)
            now = self.platform.clock()
            if self._last_sample is None or now - self._last_sample >= self.interval:
                self._last_sample = now
                self._publish_telemetry(client)
            wait = self._last_sample + self.interval - self.platform.clock()
            client.loop(max(0.0, min(wait, MAX_WAIT)))
            if not self.platform.wifi_connected():
                raise OSError("Wi-Fi connection lost")

    def _pause(self, seconds):
        """Sleep between reconnects in small steps, feeding the watchdog."""
        self.platform.log(f"reconnecting in {seconds:.1f} s")
        while seconds > 0 and self._running:
            step = min(seconds, MAX_WAIT)
            self.platform.watchdog_feed()
            self.platform.sleep(step)
            seconds -= step

    # -- telemetry -----------------------------------------------------------------------------

    def _publish_telemetry(self, client):
        try:
            temperature, humidity = self.platform.read_sensor(self.config["sensor_type"], self.config["sensor_pin"])
        except hw.SensorError as err:
            self.skipped += 1
            self.platform.log(f"sensor read failed, skipped: {err}")
            return
        if not plausible(temperature, humidity):
            self.skipped += 1
            self.platform.log(f"implausible reading skipped: {temperature} C, {humidity} %")
            return
        payload = json.dumps({"temperature": temperature, "humidity": humidity})
        client.publish(self.topics.telemetry, payload, qos=QOS)
        self.published += 1

    # -- shadow --------------------------------------------------------------------------------

    def _report(self, client):
        payload = json.dumps({"state": {"reported": {SHADOW_KEY: self.interval}}})
        client.publish(self.topics.shadow_update, payload, qos=QOS)

    def _apply_interval(self, value):
        interval = settings.valid_interval(value)
        if interval is None:
            bounds = f"{settings.MIN_INTERVAL}..{settings.MAX_INTERVAL}"
            self.platform.log(f"ignoring {SHADOW_KEY}={value}: not an integer {bounds}")
            return
        if interval != self.interval:
            self.platform.log(f"{SHADOW_KEY} {self.interval} -> {interval}")
            self.interval = interval

    def _on_message(self, topic, payload):
        # Called from inside the MQTT client: never publish here (that would nest waits), and
        # never let a malformed message end the session.
        try:
            self._dispatch(topic, payload)
        except Exception as err:  # any bad document is logged and dropped
            self.platform.log(f"ignored message on {topic}: {err}")

    def _dispatch(self, topic, payload):
        if topic == self.topics.shadow_delta:
            state = json.loads(payload).get("state") or {}
            if SHADOW_KEY in state:
                self._apply_interval(state[SHADOW_KEY])
                # Report what is in force, accepted or not, so reported always tells the truth.
                self._report_pending = True
        elif topic == self.topics.shadow_get_accepted:
            state = json.loads(payload).get("state") or {}
            desired = state.get("desired") or {}
            reported = state.get("reported") or {}
            if SHADOW_KEY in desired:
                self._apply_interval(desired[SHADOW_KEY])
            if reported.get(SHADOW_KEY) != self.interval:
                self._report_pending = True
        elif topic == self.topics.shadow_get_rejected:
            self._report_pending = True  # no shadow yet: reporting creates it
        elif topic == self.topics.downlink:
            self.platform.log(f"downlink: {payload}")


def main(platform=None):
    """Entry point of main.py on the board; virtual devices pass their own HostPlatform."""
    platform = platform or hw.default_platform()
    try:
        config = settings.load(platform)
    except (OSError, settings.ConfigError) as err:
        # Nothing sensible to do without a configuration: stay in the REPL (watchdog not started).
        platform.log(f"cannot start: {err}")
        return None
    device = Device(config, platform)
    device.run()
    return device
