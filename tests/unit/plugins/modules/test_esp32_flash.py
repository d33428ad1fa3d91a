"""esp32_flash against virtual boards, with the real esptool."""

import hashlib
import random
import socket

import pytest

from ansible_collections.iotfleet.aws.plugins.module_utils import esp32
from ansible_collections.iotfleet.aws.plugins.modules import esp32_flash
from tests.unit.sandbox.esp32_helpers import ESP32_MAC
from tests.unit.sandbox.esp32_helpers import ESP32C3
from tests.unit.sandbox.esp32_helpers import S3_MAC
from tests.unit.sandbox.esp32_helpers import corrupt
from tests.unit.sandbox.esp32_helpers import device_module_runner
from tests.unit.sandbox.esp32_helpers import flash_bytes
from tests.unit.sandbox.esp32_helpers import free_port
from tests.unit.sandbox.esp32_helpers import started_boards


@pytest.fixture
def boards(tmp_path):
    with started_boards(tmp_path) as factory:
        yield factory


@pytest.fixture
def run_device_module(monkeypatch):
    return device_module_runner(monkeypatch)


FIRMWARE_OFFSET = 0x0
FS_OFFSET = 0x20000


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def images(tmp_path):
    """A compressible "firmware" and a random "filesystem" image (which does not compress)."""
    rng = random.Random(4)
    firmware = b"".join(rng.choice([b"MicroPython ", b"esp32 ", b"\x00" * 8]) for _count in range(12000))
    filesystem = rng.randbytes(0x6000 + 123)  # not a multiple of 4: esptool pads with 0xFF
    (tmp_path / "firmware.bin").write_bytes(firmware)
    (tmp_path / "fs.bin").write_bytes(filesystem)
    return {"firmware": (tmp_path / "firmware.bin", firmware), "fs": (tmp_path / "fs.bin", filesystem)}


def regions(images, fs_offset=FS_OFFSET):
    return [
        {"offset": FIRMWARE_OFFSET, "image": str(images["firmware"][0])},
        {"offset": hex(fs_offset), "image": str(images["fs"][0])},
    ]


def assert_board_holds(server, images, fs_offset=FS_OFFSET):
    firmware, filesystem = images["firmware"][1], images["fs"][1]
    assert flash_bytes(server, FIRMWARE_OFFSET, len(firmware)) == firmware
    assert flash_bytes(server, fs_offset, len(filesystem)) == filesystem


@pytest.mark.parametrize("stub", [True, False])
def test_first_run_writes_every_region_second_run_nothing(boards, run_device_module, images, stub):
    server = boards.start()
    args = {"esp32_port": server.url, "regions": regions(images), "stub": stub, "expected_mac": S3_MAC}

    first = run_device_module(esp32_flash, args)

    assert first["changed"] is True
    assert (first["chip"], first["mac"], first["thing_name"]) == ("ESP32-S3", S3_MAC, "4827E2E59190")
    firmware, filesystem = images["firmware"][1], images["fs"][1]
    assert first["bytes_written"] == len(firmware) + len(filesystem)
    assert first["regions"] == [
        {
            "offset": FIRMWARE_OFFSET,
            "offset_hex": "0x0",
            "image": str(images["firmware"][0]),
            "size": len(firmware),
            "md5": md5(firmware),
            "flash_md5": md5(b"\xff" * len(firmware)),
            "written": True,
        },
        {
            "offset": FS_OFFSET,
            "offset_hex": hex(FS_OFFSET),
            "image": str(images["fs"][0]),
            "size": len(filesystem),
            "md5": md5(filesystem),
            "flash_md5": md5(b"\xff" * len(filesystem)),
            "written": True,
        },
    ]
    assert_board_holds(server, images)
    written = server.counters.bytes_written

    second = run_device_module(esp32_flash, args)

    assert second["changed"] is False
    assert second["bytes_written"] == 0
    assert [r["written"] for r in second["regions"]] == [False, False]
    assert [r["flash_md5"] for r in second["regions"]] == [md5(firmware), md5(filesystem)]
    assert server.counters.bytes_written == written
    assert server.counters.connections == 2  # one esptool session per module call


def test_a_corrupted_region_is_the_only_one_rewritten(boards, run_device_module, images):
    server = boards.start(chip="esp32", mac=ESP32_MAC)
    args = {"esp32_port": server.url, "regions": regions(images)}
    run_device_module(esp32_flash, args)
    corrupt(server, FS_OFFSET + 0x1234)
    before = server.counters.bytes_written

    result = run_device_module(esp32_flash, args, diff=True)

    assert result["changed"] is True
    assert [r["written"] for r in result["regions"]] == [False, True]
    filesystem = images["fs"][1]
    assert result["bytes_written"] == len(filesystem)
    assert server.counters.bytes_written - before == len(filesystem) + 1  # esptool pads to a multiple of 4
    assert_board_holds(server, images)
    firmware_md5 = md5(images["firmware"][1])
    assert result["diff"]["before"]["0x0"] == firmware_md5
    assert result["diff"]["before"][hex(FS_OFFSET)] != md5(filesystem)
    assert result["diff"]["after"] == {"0x0": firmware_md5, hex(FS_OFFSET): md5(filesystem)}


def test_check_mode_reports_what_would_be_written_and_writes_nothing(boards, run_device_module, images):
    server = boards.start()
    args = {"esp32_port": server.url, "regions": regions(images)}

    result = run_device_module(esp32_flash, args, check_mode=True, diff=True)

    assert result["changed"] is True
    assert [r["written"] for r in result["regions"]] == [True, True]
    assert result["bytes_written"] == len(images["firmware"][1]) + len(images["fs"][1])
    assert result["diff"]["after"] == {"0x0": md5(images["firmware"][1]), hex(FS_OFFSET): md5(images["fs"][1])}
    assert server.counters.bytes_written == 0
    assert flash_bytes(server, 0, 0x30000) == b"\xff" * 0x30000

    run_device_module(esp32_flash, args)
    again = run_device_module(esp32_flash, args, check_mode=True)
    assert again["changed"] is False and again["bytes_written"] == 0


def test_offsets_as_integers_and_decimal_strings(boards, run_device_module, images):
    server = boards.start()
    args = {
        "esp32_port": server.url,
        "regions": [
            {"offset": 0, "image": str(images["firmware"][0])},
            {"offset": str(FS_OFFSET), "image": str(images["fs"][0])},
        ],
    }
    assert run_device_module(esp32_flash, args)["changed"] is True
    assert_board_holds(server, images)


# --- errors: each before anything is written ----------------------------------------------------------


def failure(run_device_module, server, args):
    result = run_device_module(esp32_flash, args, expect_failure=True)
    if server is not None:
        assert server.counters.bytes_written == 0
    return result["msg"]


def test_mac_mismatch(boards, run_device_module, images):
    server = boards.start()
    args = {"esp32_port": server.url, "regions": regions(images), "expected_mac": "24:0a:c4:12:34:56"}
    assert failure(run_device_module, server, args) == (
        f"expected_mac: board on {server.url} has MAC 48:27:E2:E5:91:90, the inventory says 24:0A:C4:12:34:56."
    )


def test_expected_mac_that_is_not_a_mac(boards, run_device_module, images):
    server = boards.start()
    args = {"esp32_port": server.url, "regions": regions(images), "expected_mac": "board1"}
    assert failure(run_device_module, server, args).startswith("expected_mac: 'board1' is not a MAC address")
    assert server.counters.connections == 0


def test_image_larger_than_the_flash(boards, run_device_module, tmp_path):
    server = boards.start(flash_size="2MB")
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x00" * ((2 << 20) + 4096))
    args = {"esp32_port": server.url, "regions": [{"offset": 0, "image": str(big)}]}
    assert failure(run_device_module, server, args) == (
        f"regions[0].image: {big} ({(2 << 20) + 4096} bytes) is larger than the 2MB flash of the board on {server.url}."
    )


def test_region_running_past_the_end_of_the_flash(boards, run_device_module, images):
    server = boards.start(flash_size="2MB")
    args = {"esp32_port": server.url, "regions": regions(images, fs_offset=0x1FC000)}
    message = failure(run_device_module, server, args)
    assert message.startswith(f"regions[1].image: {images['fs'][0]} ({len(images['fs'][1])} bytes at 0x1fc000) ends at")
    assert message.endswith(f"past the end of the 2MB flash (0x200000) of the board on {server.url}.")


def test_overlapping_regions(run_device_module, images):
    args = {"esp32_port": "socket://127.0.0.1:1", "regions": regions(images, fs_offset=0x1000)}
    message = failure(run_device_module, None, args)
    assert message.startswith(f"regions: regions[0] ({images['firmware'][0]}, 0x0-0x")
    assert message.endswith(f"and regions[1] ({images['fs'][0]} at 0x1000) overlap.")


def test_offset_not_4k_aligned(run_device_module, images):
    args = {"esp32_port": "socket://127.0.0.1:1", "regions": regions(images, fs_offset=0x20800)}
    assert failure(run_device_module, None, args) == (
        "regions[1].offset: 0x20800 is not a multiple of 4 KiB (0x1000); flash is erased in 4 KiB sectors."
    )


def test_offset_that_is_not_a_number(run_device_module, images):
    args = {"esp32_port": "socket://127.0.0.1:1", "regions": [{"offset": "boot", "image": str(images["fs"][0])}]}
    assert failure(run_device_module, None, args).startswith("regions[0].offset: 'boot' is not a flash offset")


def test_image_missing(run_device_module, tmp_path):
    missing = tmp_path / "nope.bin"
    args = {"esp32_port": "socket://127.0.0.1:1", "regions": [{"offset": 0, "image": str(missing)}]}
    assert failure(run_device_module, None, args) == f"regions[0].image: no file {missing} on this host."


def test_port_missing(run_device_module, images):
    port = f"socket://127.0.0.1:{free_port()}"
    args = {"esp32_port": port, "regions": regions(images)}
    assert failure(run_device_module, None, args).startswith(f"esp32_port: nothing listens at {port}")


def test_port_busy(boards, run_device_module, images):
    server = boards.start()
    args = {"esp32_port": server.url, "regions": regions(images)}
    with socket.create_connection(("127.0.0.1", server.port)):  # another program holds the port
        message = failure(run_device_module, server, args)
    assert message.startswith(f"esp32_port: {server.url} is busy")


def test_not_a_supported_chip(boards, run_device_module, images):
    server = boards.start(chip=ESP32C3)
    args = {"esp32_port": server.url, "regions": regions(images)}
    assert failure(run_device_module, server, args) == (
        f"esp32_port: the board on {server.url} is an ESP32-C3; this collection supports ESP32 and ESP32-S3."
    )


def test_a_failed_write_reports_what_was_written(boards, run_device_module, images, monkeypatch):
    server = boards.start()
    original = esp32.Esp32Board.write

    def write_then_fail(board, offset, data):
        if offset == FS_OFFSET:
            raise esp32.Esp32Error(f"writing 0x{len(data):x} bytes at 0x{offset:x} on the board failed: unplugged")
        original(board, offset, data)

    monkeypatch.setattr(esp32.Esp32Board, "write", write_then_fail)
    result = run_device_module(esp32_flash, {"esp32_port": server.url, "regions": regions(images)}, expect_failure=True)

    assert result["msg"].endswith("failed: unplugged")
    assert result["changed"] is True
    assert [r["written"] for r in result["regions"]] == [True, False]
    assert result["bytes_written"] == len(images["firmware"][1])
