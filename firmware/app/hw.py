"""The platform layer: everything the application needs from the hardware, and nothing else.

Only four things differ between a board and CPython, so only they are behind this layer: Wi-Fi, the
sensor, the watchdog and the filesystem root. Time, randomness and TLS use modules both have
(`time`, `random`, `socket`, `ssl`), wrapped here where their APIs differ.

`HostPlatform` is the CPython implementation (tests, virtual devices): files come from a directory
standing for the board's filesystem, Wi-Fi is always up, the watchdog does nothing, and the sensor
is whatever callable the caller gives. `BoardPlatform` is the MicroPython one; its hardware modules
(machine, network, dht) are imported lazily so this file imports cleanly on CPython.
"""

import sys

from . import net

IS_MICROPYTHON = sys.implementation.name == "micropython"


class SensorError(Exception):
    """A reading failed or was implausible; the application skips it."""


class HostPlatform:
    """CPython: the board's filesystem is a directory; the sensor is a callable returning (t, h).

    `connect_to=(ip, port)` makes the TLS connection go there instead of the configured endpoint,
    while the server is still verified under the endpoint's name (for a local stand-in broker).
    """

    def __init__(self, root, sensor=None, clock=None, sleep=None, rand=None, log=None, connect_to=None):
        import random
        import time

        self.root = str(root).rstrip("/")
        self._sensor = sensor
        self.clock = clock or time.monotonic  # monotonic seconds (float)
        self._sleep = sleep or time.sleep
        self.rand = rand or random.random  # uniform in [0, 1)
        self._log = log
        self.connect_to = connect_to
        self.watchdog_feeds = 0

    # -- filesystem (read only: the firmware never writes it, DESIGN section 4) ----------------

    def path(self, name):
        return self.root + "/" + name.lstrip("/")

    def read_file(self, name):
        with open(self.path(name), "rb") as handle:
            return handle.read()

    # -- network -------------------------------------------------------------------------------

    def wifi_connect(self, ssid, password, timeout):
        return True  # the host's network is already up

    def wifi_connected(self):
        return True

    def open_tls(self, host, port, certfile, keyfile, cafile, timeout):
        paths = (self.path(certfile), self.path(keyfile), self.path(cafile))
        return net.open_tls(host, port, *paths, timeout=timeout, address=self.connect_to)

    # -- sensor, watchdog, time ----------------------------------------------------------------

    def read_sensor(self, sensor_type, pin):
        if self._sensor is None:
            raise SensorError("no sensor attached")
        try:
            return self._sensor()
        except SensorError:
            raise
        except Exception as err:
            raise SensorError(str(err)) from None

    def watchdog_start(self, timeout_ms):
        pass

    def watchdog_feed(self):
        self.watchdog_feeds += 1

    def sleep(self, seconds):
        if seconds > 0:
            self._sleep(seconds)

    def log(self, message):
        if self._log is not None:
            self._log(message)
        else:
            print(message)

    def reset(self):
        raise SystemExit("device reset requested")


class _TicksClock:
    """Monotonic seconds from time.ticks_ms, which wraps (every ~12 days on ESP32): accumulate diffs."""

    def __init__(self, time_module):
        self._time = time_module
        self._last = time_module.ticks_ms()
        self._total_ms = 0

    def __call__(self):
        now = self._time.ticks_ms()
        self._total_ms += self._time.ticks_diff(now, self._last)
        self._last = now
        return self._total_ms / 1000


class BoardPlatform(HostPlatform):
    """MicroPython on an ESP32 / ESP32-S3: real Wi-Fi, DHT sensor and hardware watchdog."""

    def __init__(self):
        import random
        import time

        super().__init__("", clock=_TicksClock(time), sleep=time.sleep, rand=self._random)
        self._random_module = random
        self._wlan = None
        self._wdt = None
        self._dht = None

    def _random(self):
        return self._random_module.getrandbits(16) / 65536  # getrandbits is always built in

    def wifi_connect(self, ssid, password, timeout):
        import network

        if self._wlan is None:
            self._wlan = network.WLAN(network.STA_IF)
        self._wlan.active(True)
        if self._wlan.isconnected():
            return True
        self._wlan.connect(ssid, password)
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            if self._wlan.isconnected():
                return True
            self.watchdog_feed()
            self.sleep(0.25)
        self._wlan.disconnect()
        return False

    def wifi_connected(self):
        return self._wlan is not None and self._wlan.isconnected()

    def read_sensor(self, sensor_type, pin):
        import dht
        import machine

        if self._dht is None:
            driver = dht.DHT22 if sensor_type == "DHT22" else dht.DHT11
            self._dht = driver(machine.Pin(pin))
        try:
            self._dht.measure()  # raises OSError on a timeout or checksum error
        except OSError as err:
            raise SensorError(f"{sensor_type} on pin {pin}: {err}") from None
        return self._dht.temperature(), self._dht.humidity()

    def watchdog_start(self, timeout_ms):
        import machine

        self._wdt = machine.WDT(timeout=timeout_ms)  # cannot be stopped once started: feed it

    def watchdog_feed(self):
        if self._wdt is not None:
            self._wdt.feed()

    def reset(self):
        import machine

        machine.reset()


def default_platform():
    """The platform of the running interpreter; on CPython the caller must build a HostPlatform."""
    if IS_MICROPYTHON:
        return BoardPlatform()
    raise RuntimeError("on CPython construct hw.HostPlatform(root=..., sensor=...) explicitly")
