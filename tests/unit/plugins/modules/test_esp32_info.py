"""esp32_info against virtual boards, with the real esptool."""

import os
import pty
import socket

import pytest
import serial

from ansible_collections.iotfleet.aws.plugins.module_utils import esp32
from ansible_collections.iotfleet.aws.plugins.modules import esp32_info
from tests.unit.sandbox.esp32_helpers import ESP32_MAC
from tests.unit.sandbox.esp32_helpers import ESP32C3
from tests.unit.sandbox.esp32_helpers import S3_MAC
from tests.unit.sandbox.esp32_helpers import SilentServer
from tests.unit.sandbox.esp32_helpers import device_module_runner
from tests.unit.sandbox.esp32_helpers import free_port
from tests.unit.sandbox.esp32_helpers import started_boards


@pytest.fixture
def boards(tmp_path):
    with started_boards(tmp_path) as factory:
        yield factory


@pytest.fixture
def run_device_module(monkeypatch):
    return device_module_runner(monkeypatch)


def test_reads_an_esp32_s3(boards, run_device_module, capsys):
    server = boards.start(chip="esp32s3", mac=S3_MAC, flash_size="8MB")

    result = run_device_module(esp32_info, {"esp32_port": server.url})

    assert capsys.readouterr() == ("", "")  # esptool's progress must not reach a module's stdout

    assert result == {
        "changed": False,
        "chip": "ESP32-S3",
        "chip_description": "ESP32-S3 (QFN56) (revision v0.2)",
        "revision": "v0.2",
        "features": ["Wi-Fi", "BT 5 (LE)", "Dual Core + LP Core", "240MHz"],
        "crystal_mhz": 40,
        "mac": "48:27:E2:E5:91:90",
        "thing_name": "4827E2E59190",
        "flash_size": "8MB",
        "flash_size_bytes": 8 << 20,
        "port": server.url,
    }
    assert server.counters.bytes_written == 0


def test_reads_a_classic_esp32_in_check_mode(boards, run_device_module):
    server = boards.start(chip="esp32", mac=ESP32_MAC, flash_size="4MB")

    result = run_device_module(esp32_info, {"esp32_port": server.url}, check_mode=True)

    assert result["chip"] == "ESP32"
    assert result["chip_description"] == "ESP32-D0WD-V3 (revision v3.0)"
    assert result["revision"] == "v3.0"
    assert result["mac"] == "24:0A:C4:12:34:56"
    assert result["thing_name"] == "240AC4123456"
    assert (result["flash_size"], result["flash_size_bytes"]) == ("4MB", 4 << 20)
    assert "BT" in result["features"]


def test_nothing_listening(run_device_module):
    port = f"socket://127.0.0.1:{free_port()}"
    result = run_device_module(esp32_info, {"esp32_port": port}, expect_failure=True)
    assert result["msg"].startswith(f"esp32_port: nothing listens at {port} (connection refused)")


def test_missing_device_path(run_device_module, tmp_path):
    port = str(tmp_path / "ttyUSB9")
    result = run_device_module(esp32_info, {"esp32_port": port}, expect_failure=True)
    assert result["msg"] == f"esp32_port: no device {port} on this host; is the board plugged in to this station?"


def test_busy_port(boards, run_device_module):
    server = boards.start()
    with socket.create_connection(("127.0.0.1", server.port)):  # another program holds the port
        result = run_device_module(esp32_info, {"esp32_port": server.url}, expect_failure=True)
    assert result["msg"].startswith(f"esp32_port: {server.url} is busy")


def test_busy_serial_device(run_device_module):
    master, slave = pty.openpty()
    device = os.ttyname(slave)
    try:
        with serial.Serial(device, exclusive=True):  # a serial monitor holds it
            result = run_device_module(esp32_info, {"esp32_port": device}, expect_failure=True)
    finally:
        os.close(master)
        os.close(slave)
    assert result["msg"].startswith(f"esp32_port: {device} is busy: another program holds it")


def test_unsupported_chip(boards, run_device_module):
    server = boards.start(chip=ESP32C3)
    result = run_device_module(esp32_info, {"esp32_port": server.url}, expect_failure=True)
    assert result["msg"] == (
        f"esp32_port: the board on {server.url} is an ESP32-C3; this collection supports ESP32 and ESP32-S3."
    )


def test_no_esp32_loader_answers():
    silent = SilentServer()
    try:
        with pytest.raises(esp32.Esp32Error, match="no ESP32 boot loader answers"):
            with esp32.esp32_session(f"socket://127.0.0.1:{silent.port}", connect_attempts=1):
                pass
    finally:
        silent.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("48:27:e2:e5:91:90", "4827E2E59190"), ("48-27-E2-E5-91-90", "4827E2E59190"), ("4827e2e59190", "4827E2E59190")],
)
def test_normalize_mac(value, expected):
    assert esp32.normalize_mac(value) == expected
    assert esp32.colon_mac(expected) == "48:27:E2:E5:91:90"


@pytest.mark.parametrize("value", ["48:27:E2:E5:91", "4827E2E5919G", "", None])
def test_normalize_mac_refuses(value):
    assert esp32.normalize_mac(value) is None
