"""Each board's filesystem image: the application, its configuration and its credentials, as LittleFS.

One shared MicroPython image serves the whole fleet; what differs per board lives here (DESIGN
section 4). The image fills the board's filesystem partition exactly and is built deterministically
(same inputs, same bytes): files are written in sorted order, littlefs stores no timestamps, and
config.json is serialized with sorted keys. So comparing flash MD5s is a valid no-change test.

The littlefs settings are MicroPython's (extmod/vfs_lfs.c and vfs_lfsx.c, used by `vfs.mount`'s
auto-detection on the esp32 port): block size = the partition's 4096, read/prog size 32, cache size
4 x 32 = 128, lookahead 32, block_cycles 100, name_max 255, and the block count is the partition's
(littlefs refuses to mount an image whose block count differs). The on-disk version is written as
2.0, which every MicroPython littlefs driver reads (the newest write 2.1, older ones only know 2.0).

The image holds the board's private key: treat the file like the key store (it is written 0600).

Library use: `build_board_image(...)` -> bytes, `read_image(bytes)` -> {path: bytes}.
CLI: `python -m firmware.fsimage build|list|extract ...` (see `--help`).
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from littlefs import LittleFS
from littlefs import LittleFSError
from littlefs import UserContext

from firmware import layout as flash
from firmware.app import settings

APP_DIR = Path(__file__).resolve().parent / "app"
ROOT_SCRIPTS = ("boot.py", "main.py")  # the board runs these from "/"; the rest is the /app package
APP_PACKAGE = "/app"

LFS_CONFIG = {
    "block_size": flash.BLOCK_SIZE,
    "read_size": 32,
    "prog_size": 32,
    "cache_size": 128,
    "lookahead_size": 32,
    "block_cycles": 100,
    "name_max": 255,
    "disk_version": 0x00020000,
}


class FsImageError(ValueError):
    """The files do not make a valid image for this partition; the message says why."""


def app_files(app_dir=APP_DIR):
    """The application's files as they sit on the board: {"/main.py": ..., "/app/mqtt.py": ...}."""
    app_dir = Path(app_dir)
    files = {}
    for path in sorted(app_dir.glob("*.py")):
        target = "/" + path.name if path.name in ROOT_SCRIPTS else f"{APP_PACKAGE}/{path.name}"
        files[target] = path.read_bytes()
    missing = [name for name in ROOT_SCRIPTS + ("__init__.py",) if not (app_dir / name).is_file()]
    if missing:
        raise FsImageError(f"application folder {app_dir} lacks {', '.join(missing)}")
    return files


def board_files(config, certificate, private_key, root_ca, app_dir=APP_DIR):
    """Every file of one board's filesystem. Raises FsImageError for an invalid configuration."""
    try:
        config_bytes = settings.encode(config)
    except settings.ConfigError as err:
        raise FsImageError(str(err)) from err
    files = app_files(app_dir)
    files[settings.CONFIG_PATH] = config_bytes
    for path, data, marker in (
        (settings.CERT_PATH, certificate, b"-----BEGIN CERTIFICATE-----"),
        (settings.KEY_PATH, private_key, b"PRIVATE KEY-----"),
        (settings.ROOT_CA_PATH, root_ca, b"-----BEGIN CERTIFICATE-----"),
    ):
        data = data.encode("ascii") if isinstance(data, str) else bytes(data)
        if marker not in data:
            # Never echo the content: it may be a key in the wrong slot.
            raise FsImageError(f"{path} does not look like a PEM file ({marker.decode().strip('-')} expected)")
        files[path] = data
    return files


def build_image(files, size):
    """A LittleFS image of exactly `size` bytes holding `files` ({"/dir/name": bytes})."""
    block_size = LFS_CONFIG["block_size"]
    if size % block_size or size < 2 * block_size:
        raise FsImageError(f"partition size {size} is not a whole number of {block_size}-byte blocks (at least 2)")
    context = UserContext(size)
    fs = LittleFS(context=context, mount=False, block_count=size // block_size, **LFS_CONFIG)
    fs.format()
    fs.mount()
    made = set()
    try:
        for name in sorted(files):  # sorted: the same files always take the same blocks
            _check_name(name)
            parts = name.strip("/").split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in made:
                    fs.mkdir(folder)
                    made.add(folder)
            with fs.open(name.strip("/"), "wb") as handle:
                handle.write(files[name])
        fs.unmount()
    except LittleFSError as err:
        if err.code == LittleFSError.Error.LFS_ERR_NOSPC:
            total = sum(len(data) for data in files.values())
            raise FsImageError(f"{len(files)} files ({total} bytes) do not fit a {size}-byte partition") from err
        raise
    return bytes(context.buffer)


def build_board_image(config, certificate, private_key, root_ca, size, app_dir=APP_DIR):
    """One board's filesystem image (bytes, exactly `size` long), verified by reading it back."""
    files = board_files(config, certificate, private_key, root_ca, app_dir)
    image = build_image(files, size)
    if read_image(image) != files:
        raise FsImageError("the image read back differs from its files")  # littlefs-python regression guard
    return image


def read_image(image, block_size=flash.BLOCK_SIZE):
    """Mount an image the way MicroPython does and return {"/path": bytes} of every file."""
    if len(image) % block_size:
        raise FsImageError(f"image size {len(image)} is not a multiple of {block_size}")
    fs = LittleFS(
        context=UserContext(buffer=bytearray(image)),
        mount=False,  # mount=True would silently format an image that fails to mount
        block_count=len(image) // block_size,
        **LFS_CONFIG,
    )
    try:
        fs.mount()
    except LittleFSError as err:
        raise FsImageError(f"not a littlefs image MicroPython can mount: {err}") from err
    files = {}
    for top, _dirs, names in fs.walk("/"):
        for name in names:
            path = top.rstrip("/") + "/" + name
            with fs.open(path, "rb") as handle:
                files["/" + path.lstrip("/")] = handle.read()
    fs.unmount()
    return files


def extract_image(image, dest):
    """Write an image's files under `dest` (0700 folders, 0600 files: the key is among them)."""
    dest = Path(dest)
    for name, data in sorted(read_image(image).items()):
        target = dest / name.lstrip("/")
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(target, data)
    return dest


def write_private(path, data):
    """Write atomically with mode 0600 (created that way, never world-readable in between)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_name(name):
    if not name.startswith("/") or "//" in name or name.endswith("/") or "/../" in name + "/":
        raise FsImageError(f"bad file name {name!r}: absolute paths without empty or '..' parts only")
    if any(len(part.encode()) > LFS_CONFIG["name_max"] for part in name.split("/")):
        raise FsImageError(f"bad file name {name!r}: a part is longer than {LFS_CONFIG['name_max']} bytes")


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
