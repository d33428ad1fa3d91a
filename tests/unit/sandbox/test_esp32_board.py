"""The virtual ESP32 boards, driven by the real esptool (library API) over socket://."""

import contextlib
import dataclasses
import hashlib
import io
import os
import random
import socket

import pytest
import serial
from esptool.cmds import attach_flash
from esptool.cmds import detect_chip
from esptool.cmds import detect_flash_size
from esptool.cmds import erase_region
from esptool.cmds import run_stub
from esptool.cmds import write_flash
from esptool.loader import ESPLoader
from esptool.util import FatalError

from sandbox import esp32_boards
from sandbox.esp32_board import slip_decode
from sandbox.esp32_board import slip_encode
from sandbox.esp32_board import xor_checksum
from sandbox.settings import load_settings
from tests.unit.sandbox.esp32_helpers import ESP32_MAC
from tests.unit.sandbox.esp32_helpers import S3_MAC
from tests.unit.sandbox.esp32_helpers import flash_bytes
from tests.unit.sandbox.esp32_helpers import free_port
from tests.unit.sandbox.esp32_helpers import started_boards


@pytest.fixture
def boards(tmp_path):
    with started_boards(tmp_path) as factory:
        yield factory


@contextlib.contextmanager
def session(server, stub=False):
    """One esptool session with its console output swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with detect_chip(server.url) as esp:
            if stub:
                esp = run_stub(esp)
            attach_flash(esp)
            yield esp


def mac_of(esp) -> str:
    return ":".join(f"{byte:02X}" for byte in esp.read_mac())


@pytest.mark.parametrize(
    ("chip", "mac", "flash_size", "name", "description"),
    [
        ("esp32s3", S3_MAC, "8MB", "ESP32-S3", "ESP32-S3 (QFN56) (revision v0.2)"),
        ("esp32", ESP32_MAC, "4MB", "ESP32", "ESP32-D0WD-V3 (revision v3.0)"),
        ("esp32s3", "48:27:E2:00:00:03", "16MB", "ESP32-S3", "ESP32-S3 (QFN56) (revision v0.2)"),
        ("esp32", "24:0A:C4:00:00:02", "2MB", "ESP32", "ESP32-D0WD-V3 (revision v3.0)"),
    ],
)
def test_esptool_detects_chip_mac_and_flash_size(boards, chip, mac, flash_size, name, description):
    server = boards.start(chip=chip, mac=mac, flash_size=flash_size)
    with session(server) as esp:
        assert esp.CHIP_NAME == name
        assert not esp.IS_STUB
        assert mac_of(esp) == mac
        assert detect_flash_size(esp) == flash_size
        assert esp.get_chip_description() == description
        assert esp.get_crystal_freq() == 40


@pytest.mark.parametrize(("chip", "stub"), [("esp32s3", False), ("esp32s3", True), ("esp32", False), ("esp32", True)])
def test_write_flash_of_a_1mb_random_image_then_md5_matches(boards, chip, stub):
    server = boards.start(chip=chip, mac=S3_MAC if chip == "esp32s3" else ESP32_MAC)
    image = random.Random(f"{chip}{stub}").randbytes(1 << 20)
    with session(server, stub=stub) as esp:
        assert esp.IS_STUB is stub
        write_flash(esp, [(0x10000, image)], compress=True, no_progress=True)
        assert esp.flash_md5sum(0x10000, len(image)) == hashlib.md5(image).hexdigest()
        assert esp.read_flash(0x10000 + 4096, 256) == image[4096 : 4096 + 256]
    assert flash_bytes(server, 0x10000, len(image)) == image
    assert flash_bytes(server, 0, 0x10000) == b"\xff" * 0x10000
    assert server.counters.bytes_written == len(image)


def test_compressible_image_goes_through_the_deflate_commands(boards):
    server = boards.start()
    image = b"MicroPython" * 20000 + b"\x00" * 50000
    with session(server, stub=True) as esp:
        write_flash(esp, [(0x0, image)], compress=True, no_progress=True)
        assert esp.flash_md5sum(0, len(image)) == hashlib.md5(image).hexdigest()
    # esptool pads to 4 bytes with 0xFF; the rest of the last sector is erased.
    assert flash_bytes(server, 0, len(image)) == image


def test_flash_survives_a_restart_and_clients_come_one_after_another(boards, tmp_path):
    flash_file = tmp_path / "kept.flash"
    image = os.urandom(20000)
    first = boards.start(flash_file=flash_file)
    with session(first, stub=True) as esp:
        write_flash(esp, [(0x8000, image)], compress=True, no_progress=True)
    with session(first) as esp:  # a second client on the same board: a fresh power-on, ROM loader again
        assert not esp.IS_STUB
        assert esp.flash_md5sum(0x8000, len(image)) == hashlib.md5(image).hexdigest()
    first.stop()

    second = boards.start(flash_file=flash_file)
    with session(second) as esp:
        assert esp.flash_md5sum(0x8000, len(image)) == hashlib.md5(image).hexdigest()
    assert second.counters.connections == 1


def test_a_second_client_is_refused_while_one_is_connected(boards):
    server = boards.start()
    with session(server) as esp:
        with pytest.raises((FatalError, serial.SerialException)):
            with session(server):
                pass
        assert esp.read_mac()  # the first session is unaffected


def test_erase_region_through_the_stub_and_nor_programming(boards):
    server = boards.start()
    image = b"\x00" * 0x3000
    with session(server, stub=True) as esp:
        write_flash(esp, [(0x2000, image)], no_progress=True)
        with contextlib.redirect_stdout(io.StringIO()):
            erase_region(esp, 0x3000, 0x1000)
        assert esp.flash_md5sum(0x3000, 0x1000) == hashlib.md5(b"\xff" * 0x1000).hexdigest()
    assert flash_bytes(server, 0x2000, 0x3000) == b"\x00" * 0x1000 + b"\xff" * 0x1000 + b"\x00" * 0x1000
    # An erase that reaches the end of the file shortens it instead of filling it with 0xFF.
    with session(server, stub=True) as esp, contextlib.redirect_stdout(io.StringIO()):
        erase_region(esp, 0x4000, 0x1000)
    assert server.board.flash_file.stat().st_size == 0x4000


def test_flash_commands_wait_for_spi_attach_in_the_rom(boards):
    server = boards.start()
    with contextlib.redirect_stdout(io.StringIO()), detect_chip(server.url) as esp:
        with pytest.raises(FatalError):
            esp.flash_md5sum(0, 4096)
        assert esp.flash_id() == 0xFFFFFF
        attach_flash(esp)
        assert esp.flash_id(cache=False) & 0xFF == 0xEF


def test_writes_past_the_end_of_the_flash_are_refused(boards):
    server = boards.start(flash_size="2MB")
    with session(server, stub=True) as esp:
        with pytest.raises(FatalError):
            esp.flash_md5sum(0x1FF000, 0x2000)
        with pytest.raises(FatalError, match="will not fit"):
            write_flash(esp, [(0x1FF000, b"\x00" * 0x2000)], no_progress=True)
    assert server.counters.bytes_written == 0


def test_slip_and_checksum_match_esptool():
    rng = random.Random(7)
    for length in (0, 1, 2, 3, 17, 1024, 4099):
        data = rng.randbytes(length) + b"\xc0\xdb\xdb\xdc\xc0"
        assert xor_checksum(data) == ESPLoader.checksum(data)
        assert slip_decode(slip_encode(data)[1:-1]) == data
    assert slip_decode(b"\xdb\x00") is None


def test_a_garbage_connection_does_not_break_the_board(boards):
    server = boards.start()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"\x01\x02\xc0\xc0\xdb\x00\xc0\xc0\x00\x08\x00\x00")
    with session(server) as esp:
        assert mac_of(esp) == S3_MAC


# --- the sandbox's board processes (sandbox/esp32_boards.py) ----------------------------------------


@pytest.fixture
def private_sandbox(tmp_path):
    """Settings of a sandbox with its own state dir; every board it started is stopped afterwards."""
    settings = load_settings(state_dir=tmp_path / "state", port=free_port())
    try:
        yield settings
    finally:
        esp32_boards.down(settings)


def virtual(name, chip="esp32s3", mac=S3_MAC, flash_size="4MB"):
    return esp32_boards.VirtualBoard(name=name, port=free_port(), chip=chip, mac=mac, flash_size=flash_size)


def test_up_status_and_down_of_injected_boards(private_sandbox, capsys):
    settings = private_sandbox
    listed = [virtual("s3"), virtual("classic", chip="esp32", mac=ESP32_MAC, flash_size="2MB")]

    assert esp32_boards.up(settings, listed) == 0
    assert "board s3 started" in capsys.readouterr().out
    pids = {board.name: esp32_boards.running_pid(settings, board.name) for board in listed}
    assert all(pids.values())
    with contextlib.redirect_stdout(io.StringIO()), detect_chip(listed[1].url) as esp:
        assert (esp.CHIP_NAME, mac_of(esp)) == ("ESP32", ESP32_MAC)
    lines, code = esp32_boards.status_lines(settings, listed)
    assert code == 0
    assert lines[0] == f"board s3 running (pid {pids['s3']}) at {listed[0].url}: ESP32-S3 {S3_MAC}, 4MB flash"

    assert esp32_boards.up(settings, listed) == 0  # idempotent
    assert "board s3 already running" in capsys.readouterr().out
    assert {board.name: esp32_boards.running_pid(settings, board.name) for board in listed} == pids

    changed = [dataclasses.replace(listed[0], mac="48:27:E2:00:00:09")]  # and "classic" dropped
    assert esp32_boards.up(settings, changed) == 0
    out = capsys.readouterr().out
    assert "board s3: its settings changed; restarting it" in out
    assert f"board classic stopped (pid {pids['classic']}): no longer in the boards' inventory" in out
    assert esp32_boards.running_pid(settings, "classic") is None
    with contextlib.redirect_stdout(io.StringIO()), detect_chip(listed[0].url) as esp:
        assert mac_of(esp) == "48:27:E2:00:00:09"

    esp32_boards.down(settings)
    assert esp32_boards.running_pid(settings, "s3") is None
    assert not esp32_boards.pid_file(settings, "s3").exists()
    assert esp32_boards.flash_file(settings, "s3").exists()  # the flash outlives the board process
    lines, code = esp32_boards.status_lines(settings, changed)
    assert code == 3 and lines == [f"board s3 not running ({changed[0].url}: ESP32-S3 48:27:E2:00:00:09, 4MB flash)"]


def test_a_stale_pid_file_is_replaced_and_a_taken_port_fails_with_the_log(private_sandbox, capsys):
    settings = private_sandbox
    board = virtual("b")
    esp32_boards.boards_dir(settings).mkdir(parents=True)
    esp32_boards.pid_file(settings, "b").write_text(f"{os.getpid()}\n")  # a live process that is not a board
    assert esp32_boards.running_pid(settings, "b") is None
    assert esp32_boards.up(settings, [board]) == 0
    assert esp32_boards.running_pid(settings, "b") not in (None, os.getpid())
    esp32_boards.down(settings)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", board.port))
        taken.listen()
        assert esp32_boards.up(settings, [board]) == 1
    err = capsys.readouterr().err
    assert "board b failed to start: it exited with code 1" in err
    assert "cannot listen on 127.0.0.1" in err


def test_which_boards_a_sandbox_starts(tmp_path, monkeypatch):
    monkeypatch.delenv(esp32_boards.BOARDS_ENV, raising=False)
    default = load_settings(state_dir=esp32_boards.DEFAULT_STATE_DIR, port=4599)
    names = [board.name for board in esp32_boards.configured_boards(default)]
    assert names == ["board1", "board2", "board3"]
    assert esp32_boards.configured_boards(load_settings(state_dir=tmp_path, port=4599)) == []

    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    fleet:\n      children:\n        esp32_boards:\n"
        "          vars: {virtual_board: {chip: esp32, mac: '24:0a:c4:00:00:01'}}\n"
        "          hosts:\n"
        "            v1: {esp32_port: 'socket://127.0.0.1:5001'}\n"
        "            real: {esp32_port: /dev/ttyUSB0, virtual_board: null}\n"
    )
    monkeypatch.setenv(esp32_boards.BOARDS_ENV, str(inventory))
    assert esp32_boards.configured_boards(load_settings(state_dir=tmp_path, port=4599)) == [
        esp32_boards.VirtualBoard(name="v1", port=5001, chip="esp32", mac="24:0A:C4:00:00:01", flash_size="4MB")
    ]
    monkeypatch.setenv(esp32_boards.BOARDS_ENV, "none")
    assert esp32_boards.configured_boards(default) == []


@pytest.mark.parametrize(
    ("host_vars", "error"),
    [
        ({"esp32_port": "/dev/ttyUSB0", "virtual_board": {"chip": "esp32"}}, "needs esp32_port: socket://"),
        ({"esp32_port": "socket://127.0.0.1:1", "virtual_board": {"chip": "esp32c3"}}, "chip must be one of"),
        ({"esp32_port": "socket://127.0.0.1:1", "virtual_board": {"chip": "esp32", "mac": "x"}}, "not a MAC"),
        (
            {
                "esp32_port": "socket://127.0.0.1:1",
                "virtual_board": {"chip": "esp32", "mac": S3_MAC, "flash_size": "3MB"},
            },
            "flash size must be one of",
        ),
    ],
)
def test_badly_described_virtual_boards(host_vars, error):
    with pytest.raises(ValueError, match=error):
        esp32_boards.board_from_host("b1", host_vars)
