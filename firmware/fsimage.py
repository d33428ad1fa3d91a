"""Each board's filesystem image: the application, its configuration and its credentials, as LittleFS.

One shared MicroPython image serves the whole fleet; what differs per board lives here (DESIGN
section 4). The image fills the board's filesystem partition exactly and is built deterministically
(same inputs, same bytes), so comparing flash MD5s is a valid no-change test. The implementation,
with the littlefs settings and why, is plugins/module_utils/esp32_image.py, shared with the
esp32_fs_image module that the fleet role runs (see firmware/_image.py); this module binds it to
this package's application folder and adds the command line.

The image holds the board's private key: treat the file like the key store (it is written 0600).

Library use: `build_board_image(...)` -> bytes, `read_image(bytes)` -> {path: bytes}.
CLI: `python -m firmware.fsimage build|list|extract ...` (see `--help`).
"""

import hashlib
import json
import sys
from pathlib import Path

from firmware import layout as flash
from firmware._image import esp32_image as _impl
from firmware.app import settings

APP_DIR = Path(__file__).resolve().parent / "app"
ROOT_SCRIPTS = _impl.ROOT_SCRIPTS
APP_PACKAGE = _impl.APP_PACKAGE
LFS_CONFIG = _impl.LFS_CONFIG
FsImageError = _impl.FsImageError
build_image = _impl.build_image
read_image = _impl.read_image
write_private = _impl.write_private


def _settings_for(app_dir):
    """This package's settings module for its own app folder; another folder brings its own."""
    return settings if Path(app_dir).resolve() == APP_DIR else None


def app_files(app_dir=APP_DIR):
    """The application's files as they sit on the board: {"/main.py": ..., "/app/mqtt.py": ...}."""
    return _impl.app_files(app_dir)


def board_files(config, certificate, private_key, root_ca, app_dir=APP_DIR):
    """Every file of one board's filesystem. Raises FsImageError for an invalid configuration."""
    return _impl.board_files(config, certificate, private_key, root_ca, app_dir, _settings_for(app_dir))


def build_board_image(config, certificate, private_key, root_ca, size, app_dir=APP_DIR):
    """One board's filesystem image (bytes, exactly `size` long), verified by reading it back."""
    return _impl.build_board_image(config, certificate, private_key, root_ca, size, app_dir, _settings_for(app_dir))


def extract_image(image, dest):
    """Write an image's files under `dest` (0700 folders, 0600 files: the key is among them)."""
    dest = Path(dest)
    for name, data in sorted(read_image(image).items()):
        target = dest / name.lstrip("/")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(target, data)
    return dest


# -- command line -------------------------------------------------------------------------------


def _cmd_build(args):
    # Wi-Fi secrets can come on stdin, so they need not sit in a file or on a command line.
    config = json.loads(sys.stdin.read() if args.config == "-" else Path(args.config).read_text(encoding="utf-8"))
    if args.size:
        size = flash.parse_size(args.size)
        board_layout = None
    else:
        board_layout = flash.flash_layout(args.base_image, args.chip, args.flash_size)
        size = board_layout["filesystem"]["size"]
    image = build_board_image(
        config,
        Path(args.cert).read_bytes(),
        Path(args.key).read_bytes(),
        Path(args.root_ca).read_bytes(),
        size,
    )
    out = Path(args.out)
    unchanged = out.is_file() and out.read_bytes() == image
    if not unchanged:
        write_private(out, image)
    result = {
        "image": str(out),
        "size": len(image),
        "md5": hashlib.md5(image).hexdigest(),
        "sha256": hashlib.sha256(image).hexdigest(),
        "changed": not unchanged,
    }
    if board_layout is not None:
        result["layout"] = board_layout
        result["regions"] = flash.flash_regions(board_layout, Path(args.base_image).resolve(), out.resolve())
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _cmd_list(args):
    files = read_image(_read_region(args))
    print(json.dumps({name: len(data) for name, data in sorted(files.items())}, indent=2))
    return 0


def _cmd_extract(args):
    extract_image(_read_region(args), args.dest)
    print(args.dest)
    return 0


def _read_region(args):
    data = Path(args.image).read_bytes()
    offset = flash.parse_size(args.offset) or 0
    size = flash.parse_size(args.size) if args.size else len(data) - offset
    return data[offset : offset + size]


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m firmware.fsimage", description="Board filesystem images.")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build one board's image; prints JSON (md5, sha256, flash regions)")
    build.add_argument("--config", required=True, help="JSON file with the board's config.json content, - for stdin")
    build.add_argument("--cert", required=True, help="device certificate (PEM)")
    build.add_argument("--key", required=True, help="device private key (PEM), from the key store")
    build.add_argument("--root-ca", required=True, help="root CA that signs the endpoint (PEM)")
    build.add_argument("--out", required=True, help="image file to write (mode 0600: it holds the key)")
    where = build.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-image", help="MicroPython image whose partition table gives the partition")
    where.add_argument("--size", help="partition size in bytes, when no base image is at hand")
    build.add_argument("--chip", help="esp32 or esp32s3 (with --base-image)")
    build.add_argument("--flash-size", help="the board's flash size (with --base-image; needed for >= 1.26)")
    build.set_defaults(func=_cmd_build)

    for name, func, text in (
        ("list", _cmd_list, "list the files of an image (names and sizes only)"),
        ("extract", _cmd_extract, "write the files of an image into a folder (0600)"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("image", help="filesystem image, or a flash dump with --offset/--size")
        cmd.add_argument("--offset", help="where the filesystem starts in the file")
        cmd.add_argument("--size", help="filesystem size")
        if name == "extract":
            cmd.add_argument("--dest", required=True)
        cmd.set_defaults(func=func)

    args = parser.parse_args(argv)
    if args.command == "build" and args.base_image and not args.chip:
        parser.error("--base-image needs --chip")
    try:
        return args.func(args)
    except (FsImageError, flash.LayoutError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
