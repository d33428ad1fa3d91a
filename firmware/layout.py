"""Flash layout of a board: where the MicroPython image and the filesystem go, read from the image.

Facts this relies on (see firmware/README.md for how they were checked):
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
"""

import hashlib
import json
import struct
import sys
from pathlib import Path

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


def _read_image(image):
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    path = Path(image)
    try:
        return path.read_bytes()
    except OSError as err:
        raise LayoutError(f"cannot read base image {path}: {err.strerror}") from err


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


def main(argv=None):
    """`python -m firmware.layout IMAGE --chip esp32s3 [--flash-size 8MB]`: print the layout as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m firmware.layout", description=main.__doc__)
    parser.add_argument("image", help="merged MicroPython image (firmware.bin)")
    parser.add_argument("--chip", required=True, help="esp32 or esp32s3 (esptool's names work too)")
    parser.add_argument("--flash-size", help="the board's flash size, e.g. 4MB or 8388608")
    args = parser.parse_args(argv)
    try:
        layout = flash_layout(args.image, args.chip, args.flash_size)
    except LayoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(layout, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
