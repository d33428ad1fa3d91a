# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A board's flash layout and its filesystem (credentials) image: the one implementation.

Used by the module esp32_fs_image (shipped to the controller by AnsiballZ, so it may import only
module_utils) and by the firmware package's command line (firmware/layout.py, firmware/fsimage.py,
which load this file by its path). So this file imports nothing of the collection: standard
library and littlefs-python only.

Flash layout. Facts this relies on (see firmware/README.md for how they were checked):
- A MicroPython ESP32 release image (`firmware.bin`) is the bootloader, the partition table and the
  application merged into one file that starts at the chip's bootloader offset: 0x1000 on the
  classic ESP32, 0x0 on the ESP32-S3 (the same offsets esptool uses). Its first byte is the ESP
  image magic 0xE9 and bytes 12-13 of the bootloader header carry the chip id (0 = ESP32, 9 = S3).
- The partition table sits at flash offset 0x8000 (ESP-IDF's CONFIG_PARTITION_TABLE_OFFSET default),
  i.e. at 0x8000 - image offset inside the file. Format (ESP-IDF gen_esp32part.py): 32-byte entries
  `<2sBBLL16sL` (magic AA 50, type, subtype, offset, size, label, flags), optionally an MD5 entry
  (EB EB, 14 x FF, md5 of the entries before it), then FF padding; at most 0xC00 bytes.
- MicroPython mounts the data partition labelled "vfs" (TinyUF2 layouts: "ffat") as its filesystem
  and auto-detects littlefs v2 on it. Since MicroPython 1.26 (PR #17337) the generic images' tables
  have no "vfs" entry: at boot the firmware registers one from the end of the last partition to the
  end of the physical flash. Then the filesystem's size depends on the board's flash size, which the
  caller must pass (esptool reports it); it is never guessed.

Filesystem image. One shared MicroPython image serves the whole fleet; what differs per board lives
in its filesystem (DESIGN section 4). The image fills the board's filesystem partition exactly and is
built deterministically (same inputs, same bytes): files are written in sorted order, littlefs stores
no timestamps, and config.json is serialized with sorted keys. So comparing flash MD5s is a valid
no-change test. The littlefs settings are MicroPython's (extmod/vfs_lfs.c and vfs_lfsx.c, used by
`vfs.mount`'s auto-detection on the esp32 port): block size = the partition's 4096, read/prog size 32,
cache size 4 x 32 = 128, lookahead 32, block_cycles 100, name_max 255, and the block count is the
partition's (littlefs refuses to mount an image whose block count differs). The on-disk version is
written as 2.0, which every MicroPython littlefs driver reads (the newest write 2.1, older ones only
know 2.0).

The configuration is validated by the application's own `settings.py` (the one in the folder whose
files go into the image), so a board never receives a configuration its firmware would refuse.

An image holds the board's private key: it is written 0600, and nothing here returns or prints file
contents.
"""

import hashlib
import importlib.util
import os
import struct
import sys
import traceback

try:
    from littlefs import LittleFS
    from littlefs import LittleFSError
    from littlefs import UserContext
except ImportError:
    HAS_LITTLEFS = False
    LITTLEFS_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_LITTLEFS = True
    LITTLEFS_IMPORT_ERROR = None

# -- flash layout ---------------------------------------------------------------------------------

BLOCK_SIZE = 4096  # flash erase sector = littlefs block size used by MicroPython's esp32 Partition
PARTITION_TABLE_OFFSET = 0x8000
PARTITION_TABLE_MAX = 0xC00
ENTRY = struct.Struct("<2sBBLL16sL")
ENTRY_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb" + b"\xff" * 14
IMAGE_MAGIC = 0xE9
FS_LABELS = ("vfs", "ffat")  # the order MicroPython's flashbdev.py looks them up

TYPE_APP = 0x00
TYPE_DATA = 0x01
SUBTYPE_FAT = 0x81

# chip -> (offset of the merged image in flash, chip id in the image header)
CHIPS = {
    "esp32": (0x1000, 0),
    "esp32s3": (0x0, 9),
}
# Image chip ids (esptool's IMAGE_CHIP_ID), to name the chip an image was built for in errors.
CHIP_IDS = {0: "esp32", 2: "esp32s2", 5: "esp32c3", 9: "esp32s3", 12: "esp32c2", 13: "esp32c6", 16: "esp32h2"}


class LayoutError(ValueError):
    """The image and the board do not make a valid layout; the message says why."""


class Partition:
    def __init__(self, label, ptype, subtype, offset, size, flags=0):
        self.label = label
        self.type = ptype
        self.subtype = subtype
        self.offset = offset
        self.size = size
        self.flags = flags

    @property
    def end(self):
        return self.offset + self.size

    def as_dict(self):
        return {
            "label": self.label,
            "type": self.type,
            "subtype": self.subtype,
            "offset": self.offset,
            "size": self.size,
            "flags": self.flags,
        }

    def __repr__(self):
        return f"{self.label!r} (type {self.type}, subtype 0x{self.subtype:02x}, 0x{self.offset:x}+0x{self.size:x})"


def normalize_chip(chip):
    """'ESP32-S3' (esptool's CHIP_NAME), 'esp32s3', 'esp32_s3' -> 'esp32s3'."""
    key = str(chip).lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in CHIPS:
        raise LayoutError(f"unsupported chip {chip!r}: supported are {', '.join(sorted(CHIPS))}")
    return key


def image_offset(chip):
    """Flash offset of the MicroPython image for this chip."""
    return CHIPS[normalize_chip(chip)][0]


def parse_partition_table(data):
    """Parse an ESP-IDF binary partition table; raises LayoutError on a missing or corrupt table."""
    data = bytes(data[:PARTITION_TABLE_MAX])
    partitions = []
    pos = 0
    while pos + ENTRY.size <= len(data):
        entry = data[pos : pos + ENTRY.size]
        if entry[:2] == ENTRY_MAGIC:
            _magic, ptype, subtype, offset, size, label, flags = ENTRY.unpack(entry)
            label = label.split(b"\x00", 1)[0].decode("ascii", "replace")
            partitions.append(Partition(label, ptype, subtype, offset, size, flags))
        elif entry[:16] == MD5_MAGIC:
            # Optional (gen_esp32part --disable-md5sum); checked when present.
            if hashlib.md5(data[:pos]).digest() != entry[16:]:
                raise LayoutError("partition table MD5 does not match its entries (corrupt table)")
        elif entry == b"\xff" * ENTRY.size:
            break
        else:
            if not partitions:
                raise LayoutError("no partition table (magic 0xAA50 not found)")
            raise LayoutError(f"corrupt partition table entry at byte {pos}")
        pos += ENTRY.size
    if not partitions:
        raise LayoutError("no partition table (magic 0xAA50 not found)")
    return partitions


def read_file(path, what):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise LayoutError(f"cannot read {what} {path}: {err.strerror}") from None


def _read_image(image):
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    return read_file(os.fspath(image), "base image")


def image_chip(data):
    """Chip family named by the image's bootloader header, or None if the header is too short."""
    if len(data) < 16:
        return None
    chip_id = int.from_bytes(data[12:14], "little")
    return CHIP_IDS.get(chip_id, f"unknown chip id {chip_id}")


def read_partition_table(image, chip, table_offset=PARTITION_TABLE_OFFSET):
    """Partitions of a merged MicroPython image (path or bytes) meant for `chip`."""
    chip = normalize_chip(chip)
    data = _read_image(image)
    offset = image_offset(chip)
    if not data or data[0] != IMAGE_MAGIC:
        raise LayoutError(
            f"not a merged ESP32 image: first byte is not 0xE9 (is it the {chip} image, meant for 0x{offset:x}?)"
        )
    found = image_chip(data)
    if found != chip:
        raise LayoutError(f"the image is built for {found}, the board is {chip}")
    start = table_offset - offset
    if len(data) < start + ENTRY.size:
        raise LayoutError(f"image too short to hold a partition table at flash offset 0x{table_offset:x}")
    return parse_partition_table(data[start : start + PARTITION_TABLE_MAX])


def parse_size(value):
    """Flash sizes as esptool and inventories write them: 4194304, '4MB', '4MiB', '8M', '0x800000'."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip().upper().replace("IB", "B")
    for suffix, factor in (("MB", 1 << 20), ("M", 1 << 20), ("KB", 1 << 10), ("K", 1 << 10)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text, 0)


def flash_layout(image, chip, flash_size=None, table_offset=PARTITION_TABLE_OFFSET):
    """The board's layout: where the image goes and which flash range holds the filesystem.

    Returns a dict: chip, image_offset, image_size, flash_size, partitions (list of dicts) and
    filesystem: {label, offset, size, block_size, block_count, implicit}. `implicit` is true when the
    table has no vfs entry and MicroPython >= 1.26 creates it at boot (then flash_size is required).
    """
    chip = normalize_chip(chip)
    data = _read_image(image)
    flash_size = parse_size(flash_size)
    partitions = read_partition_table(data, chip, table_offset)
    offset = image_offset(chip)
    fs = None
    for label in FS_LABELS:
        fs = next((p for p in partitions if p.type == TYPE_DATA and p.label == label), None)
        if fs is not None:
            break
    implicit = fs is None
    if implicit:
        if flash_size is None:
            raise LayoutError(
                "the image's partition table has no vfs partition (MicroPython >= 1.26 creates it at boot "
                "from the end of the last partition to the end of flash): the board's flash size is needed"
            )
        start = max(p.end for p in partitions)
        if flash_size <= start:
            raise LayoutError(
                f"no room for a filesystem: partitions end at 0x{start:x}, flash size is 0x{flash_size:x}"
            )
        fs = Partition("vfs", TYPE_DATA, SUBTYPE_FAT, start, flash_size - start)
    if fs.offset % BLOCK_SIZE or fs.size % BLOCK_SIZE or fs.size < 2 * BLOCK_SIZE:
        raise LayoutError(f"filesystem partition {fs!r} is not a whole number of 4 KiB blocks (at least 2)")
    if flash_size is not None and fs.end > flash_size:
        raise LayoutError(f"filesystem partition {fs!r} ends beyond the flash size 0x{flash_size:x}")
    if offset + len(data) > fs.offset:
        raise LayoutError(
            f"the image (0x{offset:x}+0x{len(data):x}) overlaps the filesystem partition at 0x{fs.offset:x}"
        )
    return {
        "chip": chip,
        "image_offset": offset,
        "image_size": len(data),
        "flash_size": flash_size,
        "partitions": [p.as_dict() for p in partitions],
        "filesystem": {
            "label": fs.label,
            "offset": fs.offset,
            "size": fs.size,
            "block_size": BLOCK_SIZE,
            "block_count": fs.size // BLOCK_SIZE,
            "implicit": implicit,
        },
    }


def check_fs_image(layout, fs_image_size):
    """Raise LayoutError unless an image of fs_image_size bytes fills the filesystem partition exactly."""
    size = layout["filesystem"]["size"]
    if fs_image_size > size:
        raise LayoutError(f"filesystem image of {fs_image_size} bytes is bigger than the partition ({size} bytes)")
    if fs_image_size != size:
        # littlefs refuses to mount when its block count differs from the partition's.
        raise LayoutError(f"filesystem image of {fs_image_size} bytes does not match the partition ({size} bytes)")


def flash_regions(layout, base_image, fs_image):
    """The [{offset, image}] list for esp32_flash: the shared image and this board's filesystem."""
    return [
        {"offset": layout["image_offset"], "image": str(base_image)},
        {"offset": layout["filesystem"]["offset"], "image": str(fs_image)},
    ]


# -- filesystem image -----------------------------------------------------------------------------

ROOT_SCRIPTS = ("boot.py", "main.py")  # the board runs these from "/"; the rest is the /app package
APP_PACKAGE = "/app"
SETTINGS_FILE = "settings.py"  # the application's configuration schema (firmware/app/settings.py)

LFS_CONFIG = {
    "block_size": BLOCK_SIZE,
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


def _require_littlefs():
    if not HAS_LITTLEFS:
        raise FsImageError("littlefs-python is not installed (pip install littlefs-python)")


def app_files(app_dir):
    """The application's files as they sit on the board: {"/main.py": ..., "/app/mqtt.py": ...}."""
    app_dir = os.fspath(app_dir)
    if not os.path.isdir(app_dir):
        raise FsImageError(f"application folder {app_dir} does not exist")
    files = {}
    for name in sorted(os.listdir(app_dir)):
        path = os.path.join(app_dir, name)
        if not name.endswith(".py") or not os.path.isfile(path):
            continue
        target = "/" + name if name in ROOT_SCRIPTS else f"{APP_PACKAGE}/{name}"
        with open(path, "rb") as handle:
            files[target] = handle.read()
    missing = [name for name in ROOT_SCRIPTS + ("__init__.py",) if not os.path.isfile(os.path.join(app_dir, name))]
    if missing:
        raise FsImageError(f"application folder {app_dir} lacks {', '.join(missing)}")
    return files


def load_settings(app_dir):
    """The application's own settings module (its config schema), loaded from `app_dir`."""
    path = os.path.join(os.fspath(app_dir), SETTINGS_FILE)
    if not os.path.isfile(path):
        raise FsImageError(f"application folder {app_dir} lacks {SETTINGS_FILE} (the configuration schema)")
    name = "_iotfleet_app_settings_" + hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def board_files(config, certificate, private_key, root_ca, app_dir, settings=None):
    """Every file of one board's filesystem. Raises FsImageError for an invalid configuration.

    `settings` is the application's settings module; by default the one in `app_dir`.
    """
    settings = settings if settings is not None else load_settings(app_dir)
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


def _check_name(name):
    if not name.startswith("/") or "//" in name or name.endswith("/") or "/../" in name + "/":
        raise FsImageError(f"bad file name {name!r}: absolute paths without empty or '..' parts only")
    if any(len(part.encode()) > LFS_CONFIG["name_max"] for part in name.split("/")):
        raise FsImageError(f"bad file name {name!r}: a part is longer than {LFS_CONFIG['name_max']} bytes")


def build_image(files, size):
    """A LittleFS image of exactly `size` bytes holding `files` ({"/dir/name": bytes})."""
    _require_littlefs()
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


def read_image(image, block_size=BLOCK_SIZE):
    """Mount an image the way MicroPython does and return {"/path": bytes} of every file."""
    _require_littlefs()
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


def build_board_image(config, certificate, private_key, root_ca, size, app_dir, settings=None):
    """One board's filesystem image (bytes, exactly `size` long), verified by reading it back."""
    files = board_files(config, certificate, private_key, root_ca, app_dir, settings)
    image = build_image(files, size)
    if read_image(image) != files:
        raise FsImageError("the image read back differs from its files")  # littlefs-python regression guard
    return image


def write_private(path, data):
    """Write atomically with mode 0600 (created that way, never readable by others in between)."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
