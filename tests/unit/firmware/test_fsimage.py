"""Board filesystem images: contents, round trip, determinism, what MicroPython checks at mount."""

import ast
import json
import os
import struct
from pathlib import Path

import pytest
from littlefs import LittleFS
from littlefs import LittleFSError
from littlefs import UserContext

from firmware import fsimage
from firmware import layout
from firmware import testing
from tests.unit.firmware.conftest import THING
from tests.unit.firmware.conftest import device_config

SIZE = 0x200000  # MicroPython's 4 MiB layout: vfs from 0x200000 to the end of flash


@pytest.fixture
def inputs(pki):
    return device_config(8883, endpoint="abc123-ats.iot.eu-north-1.amazonaws.com"), pki.pem


def build(inputs, size=SIZE, **config_overrides):
    config, pem = inputs
    return fsimage.build_board_image(
        dict(config, **config_overrides), pem["device.crt"], pem["device.key"], pem["ca.pem"], size
    )


def test_image_round_trip_holds_app_config_and_credentials(inputs):
    config, pem = inputs
    image = build(inputs)
    assert len(image) == SIZE
    files = fsimage.read_image(image)
    app_dir = Path(fsimage.APP_DIR)
    assert files["/main.py"] == (app_dir / "main.py").read_bytes()
    assert files["/boot.py"] == (app_dir / "boot.py").read_bytes()
    for module in ("__init__", "device", "hw", "mqtt", "net", "settings"):
        assert files[f"/app/{module}.py"] == (app_dir / f"{module}.py").read_bytes()
    assert json.loads(files["/config.json"]) == config
    assert files["/certs/device.crt"] == pem["device.crt"]
    assert files["/certs/device.key"] == pem["device.key"]
    assert files["/certs/root-ca.pem"] == pem["ca.pem"]
    credentials = ["/certs/device.crt", "/certs/device.key", "/certs/root-ca.pem", "/config.json"]
    assert sorted(files) == sorted(list(fsimage.app_files()) + credentials)


def test_same_inputs_same_bytes_and_any_change_shows(inputs):
    config, pem = inputs
    first = build(inputs)
    assert build(inputs) == first
    reordered = dict(reversed(list(config.items())))  # key order of the inventory must not matter
    assert fsimage.build_board_image(reordered, pem["device.crt"], pem["device.key"], pem["ca.pem"], SIZE) == first
    files = fsimage.board_files(config, pem["device.crt"], pem["device.key"], pem["ca.pem"])
    shuffled = dict(sorted(files.items(), reverse=True))
    assert fsimage.build_image(shuffled, SIZE) == fsimage.build_image(files, SIZE)
    assert build(inputs, wifi_password="changed") != first


def test_image_is_what_micropython_mounts(inputs):
    image = build(inputs)
    # vfs.mount() auto-detection: "littlefs" at offset 8 of block 0 -> VfsLfs2(bdev) with defaults.
    assert image[8:16] == b"littlefs"
    # Superblock (inline struct after the name): version 2.0, block size, block count = partition's.
    version, block_size, block_count = struct.unpack("<III", image[20:32])
    assert (version, block_size, block_count) == (0x00020000, 4096, SIZE // 4096)
    # MicroPython's VfsLfs2 config (read/prog 32, lookahead 32, cache 4 x 32), block count from the partition.
    micropython = {"read_size": 32, "prog_size": 32, "lookahead_size": 32, "cache_size": 128, "block_size": 4096}
    fs = LittleFS(context=UserContext(buffer=bytearray(image)), mount=False, block_count=SIZE // 4096, **micropython)
    fs.mount()
    with fs.open("config.json", "rb") as handle:
        assert json.loads(handle.read())["thing_name"] == THING
    # ... and littlefs refuses a partition of another size, which is why the image fills it exactly.
    other = LittleFS(
        context=UserContext(buffer=bytearray(image)), mount=False, block_count=SIZE // 4096 - 1, **micropython
    )
    with pytest.raises(LittleFSError):
        other.mount()


def test_invalid_configuration_and_misplaced_pem_are_refused(inputs):
    config, pem = inputs
    with pytest.raises(fsimage.FsImageError, match="thing_name must be 12 upper-case hex digits"):
        build(inputs, thing_name="48:27:e2:e5:91:90")
    with pytest.raises(fsimage.FsImageError, match="send_interval_seconds must be an integer 1..3600"):
        build(inputs, send_interval_seconds=0)
    with pytest.raises(fsimage.FsImageError, match="unknown setting colour"):
        build(inputs, colour="blue")
    with pytest.raises(fsimage.FsImageError) as exc:
        fsimage.build_board_image(config, pem["device.key"], pem["device.key"], pem["ca.pem"], SIZE)
    assert "/certs/device.crt does not look like a PEM file" in str(exc.value)
    assert "PRIVATE KEY-----\n" not in str(exc.value) and pem["device.key"].decode()[40:80] not in str(exc.value)


def test_files_that_do_not_fit_are_a_clear_error():
    with pytest.raises(fsimage.FsImageError, match="do not fit"):
        fsimage.build_image({"/big.bin": os.urandom(5 * 4096)}, 4 * 4096)
    with pytest.raises(fsimage.FsImageError, match="whole number"):
        fsimage.build_image({}, 5000)
    with pytest.raises(fsimage.FsImageError, match="bad file name"):
        fsimage.build_image({"/../etc/passwd": b""}, 16 * 4096)


def test_corrupt_image_is_not_silently_formatted():
    with pytest.raises(fsimage.FsImageError, match="MicroPython can mount"):
        fsimage.read_image(b"\xff" * SIZE)


def test_cli_builds_from_the_base_image_and_is_idempotent(inputs, pki, tmp_path, capsys, monkeypatch):
    config, _pem = inputs
    base = testing.write_base_image(tmp_path / "base.bin", "esp32")
    (tmp_path / "board.json").write_text(json.dumps(config))
    out = tmp_path / "keys" / "board.img"
    out.parent.mkdir()
    argv = ["build", "--config", str(tmp_path / "board.json"), "--cert", pki.path("device.crt")]
    argv += ["--key", pki.path("device.key"), "--root-ca", pki.path("ca.pem"), "--out", str(out)]
    argv += ["--base-image", str(base), "--chip", "esp32", "--flash-size", "4MB"]
    assert fsimage.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] is True
    assert result["size"] == out.stat().st_size == 0x200000
    assert out.stat().st_mode & 0o777 == 0o600  # it holds the private key
    assert result["regions"] == [
        {"offset": 0x1000, "image": str(base.resolve())},
        {"offset": 0x200000, "image": str(out.resolve())},
    ]
    assert fsimage.main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["changed"], again["md5"]) == (False, result["md5"])
    # The same from stdin (Wi-Fi secrets need not touch the disk), with an explicit size.
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(json.dumps(config)))
    argv_stdin = [a if a != str(tmp_path / "board.json") else "-" for a in argv[:-6]] + ["--size", "0x200000"]
    assert fsimage.main(argv_stdin) == 0
    assert json.loads(capsys.readouterr().out)["md5"] == result["md5"]


def test_cli_lists_and_extracts_from_a_flash_dump(inputs, tmp_path, capsys):
    image = build(inputs)
    dump = tmp_path / "flash.bin"
    dump.write_bytes(b"\xff" * 0x200000 + image)  # a 4 MB board's flash read back
    assert fsimage.main(["list", str(dump), "--offset", "0x200000", "--size", "2MB"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["/certs/device.key"] > 0 and "/app/mqtt.py" in listed
    dest = tmp_path / "fs"
    assert fsimage.main(["extract", str(dump), "--offset", "0x200000", "--dest", str(dest)]) == 0
    assert (dest / "certs" / "device.key").stat().st_mode & 0o777 == 0o600
    assert json.loads((dest / "config.json").read_text())["thing_name"] == THING
    assert fsimage.main(["list", str(tmp_path / "nope.bin")]) == 1


def test_fs_image_fits_the_layout_of_a_base_image(inputs):
    board = layout.flash_layout(testing.base_image("esp32s3"), "esp32s3", "8MB")
    image = build(inputs, size=board["filesystem"]["size"])
    layout.check_fs_image(board, len(image))


# -- the application stays MicroPython code --------------------------------------------------------

APP_SOURCES = sorted(Path(fsimage.APP_DIR).glob("*.py"))
# What MicroPython lacks (or these boards do not ship): checked on the syntax tree, not by grep.
FORBIDDEN_MODULES = {"typing", "dataclasses", "asyncio", "threading", "pathlib", "logging", "enum", "abc"}


@pytest.mark.parametrize("path", APP_SOURCES, ids=lambda p: p.name)
def test_app_sources_avoid_what_micropython_lacks(path):
    source = path.read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        assert not isinstance(node, ast.NamedExpr), f"{path.name}:{node.lineno}: walrus"
        assert not isinstance(node, (ast.AsyncFunctionDef, ast.Match)), f"{path.name}:{node.lineno}"
        if isinstance(node, ast.Import):
            names = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]}
        else:
            names = set()
        assert not names & FORBIDDEN_MODULES, f"{path.name}:{node.lineno}: imports {names & FORBIDDEN_MODULES}"
        if isinstance(node, ast.JoinedStr):  # f-strings: no "=" specifier, no nested quotes
            segment = ast.get_source_segment(source, node) or ""
            assert "=}" not in segment, f"{path.name}:{node.lineno}: f-string '=' specifier"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip":
            assert not node.keywords, f"{path.name}:{node.lineno}: zip(strict=)"
