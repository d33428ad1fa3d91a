"""Helpers shared by the e2e tests: waiting for something to happen, and a virtual device's sensor."""

import threading
import time

PATIENCE = 30.0  # how long to wait for anything (the wait ends as soon as it happens)


def wait_until(check, timeout=PATIENCE, interval=0.1, what="the condition"):
    """Poll check() until it returns something truthy; return it, or fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s (last: {value!r})")
        time.sleep(interval)


class Sensor:
    """The virtual device's sensor: a settable reading; remembers when it was first read after a set()."""

    def __init__(self, reading):
        self._lock = threading.Lock()
        self.set(reading)

    def set(self, reading):
        with self._lock:
            self.reading = reading
            self.first_read = None

    def __call__(self):
        with self._lock:
            if self.first_read is None:
                self.first_read = time.monotonic()
            return self.reading
