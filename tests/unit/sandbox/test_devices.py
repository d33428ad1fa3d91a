"""sandbox/devices.py: the flashed filesystem is found in a virtual board's flash as MicroPython finds it,
and the real firmware runs from it against a TLS broker (the firmware tests' scripted broker), in a
thread of the test or in the background runner process."""

import json
import os
import stat
import time
from pathlib import Path

import pytest

from firmware import fsimage
from firmware import layout
from firmware import testing
from firmware.app import device as app
from sandbox import devices
from sandbox import esp32_boards
from sandbox.esp32_boards import VirtualBoard
from sandbox.settings import load_settings
from tests.unit.firmware.broker import Broker
from tests.unit.firmware.conftest import PKI
from tests.unit.firmware.conftest import THING
from tests.unit.firmware.conftest import device_config


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(pki):
    server = Broker(pki.path("server.crt"), pki.path("server.key"), pki.path("ca.pem")).start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    return load_settings(state_dir=state_dir)


def board(name="board1", chip="esp32s3", flash_size="4MB"):
    return VirtualBoard(name=name, port=1, chip=chip, mac="48:27:E2:E5:91:90", flash_size=flash_size)


def flash_contents(pki, chip, flash_size, config, vfs=False):
    """What fleet.yml leaves in a board's flash: the base image at its offset and the filesystem image."""
    base = testing.base_image(chip, vfs=vfs)
    fs = layout.flash_layout(base, chip, flash_size)["filesystem"]
    pem = pki.pem
    image = fsimage.build_board_image(config, pem["device.crt"], pem["device.key"], pem["ca.pem"], fs["size"])
    flash = bytearray(b"\xff" * (fs["offset"] + fs["size"]))
    offset = layout.image_offset(chip)
    flash[offset : offset + len(base)] = base
    flash[fs["offset"] :] = image
    return bytes(flash)


def flash(settings, pki, vboard, config, **kwargs):
    path = esp32_boards.flash_file(settings, vboard.name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(flash_contents(pki, vboard.chip, vboard.flash_size, config, **kwargs))
    return path


@pytest.mark.parametrize(
    ("chip", "flash_size", "vfs"),
    [("esp32s3", "4MB", False), ("esp32", "4MB", True), ("esp32s3", "8MB", False)],
)
def test_the_flashed_filesystem_is_found_where_micropython_mounts_it(pki, chip, flash_size, vfs):
    config = device_config(8883)
    contents = flash_contents(pki, chip, flash_size, config, vfs=vfs)

    found = devices.read_filesystem(contents, chip, flash_size)

    expected = layout.flash_layout(testing.base_image(chip, vfs=vfs), chip, flash_size)["filesystem"]
    assert (found.offset, found.size) == (expected["offset"], expected["size"])
    assert found.thing == THING
    assert found.config == config
    assert found.files["/certs/device.key"] == pki.pem["device.key"]
    assert found.files["/app/device.py"] == (Path(app.__file__)).read_bytes()


def test_a_board_without_a_filesystem_image_is_not_flashed(pki, settings):
    vboard = board()
    with pytest.raises(devices.NotFlashed, match="no flash file"):
        devices.board_filesystem(settings, vboard)
    path = esp32_boards.flash_file(settings, vboard.name)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with pytest.raises(devices.NotFlashed, match="blank board"):
        devices.board_filesystem(settings, vboard)
    path.write_bytes(testing.base_image("esp32s3"))  # the firmware alone, no credentials image
    with pytest.raises(devices.NotFlashed, match="filesystem partition is blank"):
        devices.board_filesystem(settings, vboard)
    corrupt = bytearray(flash_contents(pki, "esp32s3", "4MB", device_config(8883)))
    corrupt[0x200000 : 0x200000 + 8192] = b"\x00" * 8192  # both superblocks gone
    path.write_bytes(bytes(corrupt))
    with pytest.raises(devices.NotFlashed, match="does not mount"):
        devices.board_filesystem(settings, vboard)
    assert devices.thing_names(settings, [vboard]) == {}


def test_thing_names_come_from_each_flashed_configuration(pki, settings):
    flashed, blank = board("board1"), board("board2", chip="esp32")
    flash(settings, pki, flashed, device_config(8883))

    assert devices.thing_names(settings, [flashed, blank]) == {"board1": THING}


def test_the_drifting_sensor_is_plausible_differs_per_board_and_drifts():
    first, second = devices.DriftingSensor("board1"), devices.DriftingSensor("board2")
    readings = [first() for _index in range(500)]

    assert all(app.plausible(t, h) for t, h in readings)
    assert all(15 < t < 27 and 5 <= h <= 95 for t, h in readings)
    assert len({t for t, _h in readings}) > 10  # it moves
    assert readings[:5] != [second() for _index in range(5)]
    assert devices.DriftingSensor("board1")() == readings[0]  # the same board starts alike


def test_a_device_runs_the_flashed_firmware_with_its_credentials(pki, settings, broker, monkeypatch):
    monkeypatch.setattr(app, "MAX_WAIT", 0.2)
    vboard = board()
    flash(settings, pki, vboard, device_config(broker.port, send_interval_seconds=1))
    readings = iter([(19.5, 41.0), (19.6, 41.5)])

    with devices.running_device(settings, vboard, sensor=lambda: next(readings, (19.7, 42.0))) as vdev:
        root = vdev.root
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(root / "certs" / "device.key").st_mode) == 0o600
        assert vdev.wait_connected(10), vdev.logs
        published = broker.wait_for("publish", count=2, topic=f"{THING}/telemetry")

    assert broker.of("connect")[0].client_id == THING
    assert [json.loads(event.payload) for event in published[:2]] == [
        {"temperature": 19.5, "humidity": 41.0},
        {"temperature": 19.6, "humidity": 41.5},
    ]
    assert not vdev.thread.is_alive()
    assert not root.exists()  # the extracted key is gone with the device
    assert vdev.device.published >= 2
    assert f"connected to 127.0.0.1 as {THING}" in vdev.logs


def test_a_device_that_cannot_connect_keeps_retrying_and_says_why(pki, settings, monkeypatch):
    monkeypatch.setattr(app, "MAX_WAIT", 0.2)
    vboard = board()
    flash(settings, pki, vboard, device_config(1))  # nothing listens on port 1

    with devices.running_device(settings, vboard) as vdev:
        assert vdev.wait_for(lambda dev: dev.device.last_error is not None, 10)
        assert not vdev.connected
    assert isinstance(vdev.device.last_error, OSError)
    assert any(line.startswith("session ended: ConnectionRefusedError") for line in vdev.logs)


def test_the_runner_process_runs_every_flashed_board_until_down(pki, settings, broker, capsys):
    flashed, blank = board("board1"), board("board2", chip="esp32")
    flash(settings, pki, flashed, device_config(broker.port, send_interval_seconds=1))

    try:
        assert devices.up(settings, [flashed, blank]) == 0
        started = capsys.readouterr().out
        assert "device board2: not started, no flash file" in started
        assert f"board1 as {THING}" in started
        pid = devices.running_pid(settings)
        assert pid is not None
        assert broker.wait_for("connect", client_id=THING)
        assert len(broker.wait_for("publish", count=2, topic=f"{THING}/telemetry", timeout=15)) >= 2
        deadline = time.monotonic() + 10
        while "connected" not in devices.status_line(settings) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert devices.status_line(settings).startswith(f"devices running (pid {pid}): board1 as {THING} connected")
        (extracted,) = devices.files_dir(settings).iterdir()
        assert stat.S_IMODE(os.stat(extracted).st_mode) == 0o700

        assert devices.up(settings, [flashed, blank]) == 0  # same flash: left running
        assert devices.running_pid(settings) == pid
        assert "already running" in capsys.readouterr().out
    finally:
        devices.down(settings)

    assert devices.running_pid(settings) is None
    assert not devices.files_dir(settings).exists()
    assert devices.status_line(settings) == "devices not running"
    assert broker.wait_for("closed")


def test_a_reflashed_board_restarts_the_runner(pki, settings, broker, capsys):
    vboard = board()
    flash(settings, pki, vboard, device_config(broker.port))
    try:
        assert devices.up(settings, [vboard]) == 0
        first = devices.running_pid(settings)
        flash(settings, pki, vboard, device_config(broker.port, send_interval_seconds=5))

        assert devices.up(settings, [vboard]) == 0

        assert "flashed boards changed" in capsys.readouterr().out
        second = devices.running_pid(settings)
        assert second not in (None, first)
    finally:
        devices.down(settings)


def test_up_with_no_flashed_board_starts_nothing(settings, capsys):
    assert devices.up(settings, [board()]) == 0
    assert "no flashed board" in capsys.readouterr().out
    assert devices.running_pid(settings) is None
