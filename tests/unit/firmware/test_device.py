"""The application loop on CPython, run the way a virtual device runs it: the board's files come from
a real fsimage build, only Wi-Fi, the sensor and the watchdog are shimmed (hw.HostPlatform)."""

import json
import threading

import pytest

from firmware.app import device as app
from firmware.app import hw
from firmware.app import settings
from tests.unit.firmware.conftest import THING
from tests.unit.firmware.conftest import device_config

SHADOW = f"$aws/things/{THING}/shadow/"


@pytest.fixture(autouse=True)
def quick_stop(monkeypatch):
    """The loop wakes every MAX_WAIT to feed the watchdog and notice stop(); shorter keeps tests fast."""
    monkeypatch.setattr(app, "MAX_WAIT", 0.2)


class Sensor:
    """Scripted readings: a tuple is a reading, an exception is raised; the last one repeats."""

    def __init__(self, *readings):
        self.readings = list(readings)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        reading = self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]
        if isinstance(reading, Exception):
            raise reading
        return reading


class Running:
    """A Device.run() in a thread, stopped and joined at the end of the test."""

    def __init__(self, dev):
        self.device = dev
        self.thread = threading.Thread(target=dev.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.device

    def __exit__(self, *exc):
        self.device.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def make_device(root, sensor, logs=None):
    platform = hw.HostPlatform(root, sensor=sensor, log=(logs.append if logs is not None else lambda _m: None))
    return app.Device(settings.load(platform), platform)


def telemetry(broker, count):
    return [json.loads(e.payload) for e in broker.wait_for("publish", count=count, topic=f"{THING}/telemetry")]


def reports(broker, count):
    events = broker.wait_for("publish", count=count, topic=SHADOW + "update")
    return [json.loads(e.payload)["state"]["reported"]["sendIntervalSeconds"] for e in events]


# -- pure logic ------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    rand = iter([0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    backoff = app.Backoff(base=1, cap=8, rand=lambda: next(rand))
    # d = 1, 2, 4, 8, 8, 8; delay = d/2 + rand * d/2
    assert [backoff.next_delay() for _unused in range(6)] == [0.5, 2.0, 3.0, 6.0, 6.0, 6.0]
    backoff.reset()
    backoff.rand = lambda: 0.0
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize(
    ("value", "expected"),
    [(30, 30), (1, 1), (3600, 3600), (30.0, 30), (0, None), (3601, None), (-5, None), (2.5, None), ("30", None)]
    + [(True, None), (None, None), (float("nan"), None), (float("inf"), None)],
)
def test_interval_bounds(value, expected):
    assert settings.valid_interval(value) == expected


@pytest.mark.parametrize(
    ("reading", "ok"),
    [((21.5, 40.2), True), ((-40, 0), True), ((81, 50), False), ((20, 101), False), ((float("nan"), 50), False)]
    + [((None, 50), False), ((True, 50), False)],
)
def test_plausible_readings(reading, ok):
    assert app.plausible(*reading) is ok


def test_shadow_messages_apply_bounded_interval_and_request_a_report(tmp_path, board_fs):
    dev = make_device(board_fs(device_config(8883, send_interval_seconds=10)), Sensor((20, 50)))
    dev._on_message(SHADOW + "get/accepted", json.dumps({"state": {"desired": {"sendIntervalSeconds": 30}}}).encode())
    assert (dev.interval, dev._report_pending) == (30, True)
    dev._report_pending = False
    for bad in (0, 3601, "60", None, 2.5):
        dev._on_message(SHADOW + "update/delta", json.dumps({"state": {"sendIntervalSeconds": bad}}).encode())
        assert dev.interval == 30
        assert dev._report_pending  # the value in force is reported, so the shadow tells the truth
        dev._report_pending = False
    dev._on_message(SHADOW + "update/delta", b"not json")  # ignored, never fatal
    dev._on_message(SHADOW + "update/delta", json.dumps({"state": {"other": 1}}).encode())
    assert (dev.interval, dev._report_pending) == (30, False)
    dev._on_message(SHADOW + "get/accepted", json.dumps({"state": {"reported": {"sendIntervalSeconds": 30}}}).encode())
    assert not dev._report_pending  # nothing desired, reported already right: nothing to send
    dev._on_message(SHADOW + "get/rejected", b'{"code": 404}')
    assert dev._report_pending


# -- against the TLS broker stub -------------------------------------------------------------------


def test_session_subscribes_gets_shadow_and_publishes_telemetry(broker, board_fs):
    root = board_fs(device_config(broker.port))
    dev = make_device(root, Sensor((21.5, 40.2), (22, 41)))
    with Running(dev):
        (connect,) = broker.wait_for("connect")
        readings = telemetry(broker, 2)
    assert (connect.client_id, connect.keepalive) == (THING, 30)
    assert broker.current.peer_cn == THING
    (subscribe,) = broker.of("subscribe")
    assert subscribe.topics == [
        (f"{THING}/downlink", 1),
        (SHADOW + "get/accepted", 1),
        (SHADOW + "get/rejected", 1),
        (SHADOW + "update/delta", 1),
    ]
    publishes = broker.of("publish")
    assert publishes[0].topic == SHADOW + "get"
    assert all(e.qos == 1 for e in publishes)
    assert readings[:2] == [{"temperature": 21.5, "humidity": 40.2}, {"temperature": 22, "humidity": 41}]
    assert {e.topic for e in publishes} <= {SHADOW + "get", SHADOW + "update", f"{THING}/telemetry"}
    assert dev.platform.watchdog_feeds > 0


def test_desired_interval_is_applied_and_reported_back(broker, board_fs):
    broker.shadow = {"desired": {"sendIntervalSeconds": 2}, "reported": {"sendIntervalSeconds": 1}}
    dev = make_device(board_fs(device_config(broker.port)), Sensor((20, 50)))
    with Running(dev):
        assert reports(broker, 1) == [2]
        broker.current.publish(SHADOW + "update/delta", {"state": {"sendIntervalSeconds": 0}, "version": 2}, qos=1)
        assert reports(broker, 2) == [2, 2]  # out of bounds: ignored, the value in force reported
        broker.current.publish(SHADOW + "update/delta", {"state": {"sendIntervalSeconds": 1}, "version": 3}, qos=1)
        assert reports(broker, 3) == [2, 2, 1]
    assert dev.interval == 1


def test_missing_shadow_gets_the_default_reported(broker, board_fs):
    dev = make_device(board_fs(device_config(broker.port, send_interval_seconds=7)), Sensor((20, 50)))
    with Running(dev):
        assert reports(broker, 1) == [7]  # get/rejected (no shadow yet) answered with a report


def test_failed_and_implausible_readings_are_skipped(broker, board_fs):
    sensor = Sensor(OSError("DHT timeout"), (float("nan"), 50), (300, 50), (19.5, 55.0))
    logs = []
    dev = make_device(board_fs(device_config(broker.port)), sensor, logs)
    with Running(dev):
        readings = telemetry(broker, 1)
    assert readings[0] == {"temperature": 19.5, "humidity": 55.0}
    assert all(r == {"temperature": 19.5, "humidity": 55.0} for r in readings)
    assert dev.skipped == 3
    assert any("sensor read failed" in line for line in logs)


def test_reconnects_after_the_broker_drops_the_session(broker, board_fs):
    dev = make_device(
        board_fs(device_config(broker.port, backoff_base_seconds=1, backoff_cap_seconds=1)), Sensor((20, 50))
    )
    with Running(dev):
        broker.wait_for("subscribe")
        broker.current.close()
        broker.wait_for("connect", count=2, timeout=15)
        broker.wait_for("subscribe", count=2)
    assert dev.connects == 2


def test_firmware_never_writes_its_filesystem(broker, board_fs):
    root = board_fs(device_config(broker.port))
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    dev = make_device(root, Sensor((20, 50)))
    with Running(dev):
        telemetry(broker, 2)
    after = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    assert after == before


# -- reconnect backoff without a network -----------------------------------------------------------


def test_connection_failures_back_off_with_jitter_and_feed_the_watchdog(board_fs):
    sleeps = []
    attempts = []
    root = board_fs(device_config(1, backoff_base_seconds=1, backoff_cap_seconds=8, watchdog_timeout_ms=30000))
    dev = make_device(root, Sensor((20, 50)))
    dev.platform.rand = lambda: 0.5
    dev.backoff.rand = dev.platform.rand
    dev.platform._sleep = sleeps.append  # no real waiting
    started = []
    dev.platform.watchdog_start = started.append

    def refuse(*args):
        attempts.append(args)
        if len(attempts) == 6:
            dev.stop()
        raise OSError(111, "Connection refused")

    dev.platform.open_tls = refuse
    pauses = []
    pause = dev._pause
    dev._pause = lambda seconds: (pauses.append(seconds), pause(seconds))
    dev.run()
    assert started == [30000]
    assert attempts[0][:2] == ("127.0.0.1", 1)
    assert attempts[0][2:5] == (settings.CERT_PATH, settings.KEY_PATH, settings.ROOT_CA_PATH)
    assert pauses == [0.75, 1.5, 3.0, 6.0, 6.0]  # 0.75 x (1, 2, 4, 8, 8): d/2 + 0.5 x d/2, capped at 8
    # Each pause is slept in <= 1 s slices with the watchdog fed between them.
    assert max(sleeps) <= app.MAX_WAIT
    assert sum(sleeps) == pytest.approx(sum(pauses))
    assert dev.platform.watchdog_feeds >= len(sleeps)
    assert isinstance(dev.last_error, OSError)


def test_main_without_valid_config_stays_in_the_repl(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"thing_name": "not-a-mac"}))
    logs = []
    assert app.main(hw.HostPlatform(tmp_path, log=logs.append)) is None
    assert "thing_name must be 12 upper-case hex digits" in logs[0]
    assert app.main(hw.HostPlatform(tmp_path / "missing", log=logs.append)) is None


def test_the_host_platform_reads_the_board_files(board_fs):
    root = board_fs(device_config(8883))
    platform = hw.HostPlatform(root)
    assert settings.load(platform)["thing_name"] == THING
    assert platform.read_file(settings.CERT_PATH).startswith(b"-----BEGIN CERTIFICATE-----")
    with pytest.raises(RuntimeError):
        hw.default_platform()
    with pytest.raises(hw.SensorError):
        platform.read_sensor("DHT11", 7)
