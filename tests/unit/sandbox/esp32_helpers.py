"""Virtual boards in process for tests, and a runner for the device modules (they take no AWS options)."""

import contextlib
import dataclasses
import json
import os
import socket
import threading
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from sandbox.esp32_board import CHIPS
from sandbox.esp32_board import ESP32S3
from sandbox.esp32_board import Board
from sandbox.esp32_board import BoardServer
from sandbox.esp32_board import parse_flash_size
from sandbox.esp32_board import parse_mac
from tests.unit.conftest import ModuleExit
from tests.unit.conftest import _exit_json
from tests.unit.conftest import _fail_json

S3_MAC = "48:27:E2:E5:91:90"
ESP32_MAC = "24:0A:C4:12:34:56"
# A chip esptool knows but the collection does not flash: the ESP32-S3's answers with the C3's chip id.
ESP32C3 = dataclasses.replace(ESP32S3, name="ESP32-C3", security_chip_id=5)


class BoardFactory:
    """Starts virtual boards on free ports, each with its flash file in `folder`; stop_all() ends them."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.servers: list[BoardServer] = []

    def start(self, chip="esp32s3", mac=S3_MAC, flash_size="4MB", name=None, flash_file=None) -> BoardServer:
        chip = CHIPS[chip] if isinstance(chip, str) else chip
        flash_file = flash_file or self.folder / f"{name or f'board{len(self.servers)}'}.flash"
        board = Board(chip, parse_mac(mac), parse_flash_size(flash_size), flash_file)
        server = BoardServer(board).start()
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SilentServer:
    """Accepts TCP connections and never answers: a port where no ESP32 loader speaks."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _peer = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


def flash_bytes(server: BoardServer, offset: int, length: int) -> bytes:
    """What the board's flash holds, read from its file (0xFF past the end of the file)."""
    with open(server.board.flash_file, "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    return data + b"\xff" * (length - len(data))


def corrupt(server: BoardServer, offset: int, data: bytes = b"\x00\x01\x02\x03") -> None:
    """Overwrite flash bytes directly in the board's file, as a fault in the field would."""
    fd = os.open(server.board.flash_file, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


@contextlib.contextmanager
def started_boards(folder: Path):
    """A BoardFactory whose boards are all stopped on the way out."""
    factory = BoardFactory(folder)
    try:
        yield factory
    finally:
        factory.stop_all()


def device_module_runner(monkeypatch):
    """run(module, args, check_mode=False, diff=False, expect_failure=False) -> result dict."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)

    def run(module, args, check_mode=False, diff=False, expect_failure=False):
        module_args = dict(args)
        if check_mode:
            module_args["_ansible_check_mode"] = True
        if diff:
            module_args["_ansible_diff"] = True
        with patch_module_args(module_args):
            with pytest.raises(ModuleExit) as exc:
                module.main()
        result = exc.value.result
        if exc.value.failed != expect_failure:
            raise AssertionError(
                f"failed={exc.value.failed}, expected {expect_failure}: {json.dumps(result, default=str)}"
            )
        return result

    return run
