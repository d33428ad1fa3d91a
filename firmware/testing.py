"""Stand-in MicroPython base images, so tests and the sandbox demo need no download.

A stand-in has what layout.py and the flashing code look at, in the places a real merged
`firmware.bin` has them: an ESP image header with the chip id at the start (the bootloader), the
partition table at flash offset 0x8000 (with its MD5 entry), and an "application" at 0x10000. It does
not boot, and a virtual board never runs it (the virtual device runs firmware/app on CPython).

The default table is the one of MicroPython >= 1.26 generic builds (partitions-4MiBplus.csv:
nvs, phy_init, factory; the vfs partition is created at boot up to the end of flash);
`vfs=True` adds the explicit vfs entry of older builds and custom tables.

CLI: `python -m firmware.testing --chip esp32s3 --out base.bin [--vfs]`.
"""

import hashlib
import struct
import sys
from pathlib import Path

from firmware import layout

# (label, type, subtype, offset, size) as in MicroPython's ports/esp32/partitions-4MiBplus.csv
MICROPYTHON_PARTITIONS = (
    ("nvs", layout.TYPE_DATA, 0x02, 0x9000, 0x6000),
    ("phy_init", layout.TYPE_DATA, 0x01, 0xF000, 0x1000),
    ("factory", layout.TYPE_APP, 0x00, 0x10000, 0x1F0000),
)
# The explicit vfs entry of MicroPython <= 1.25 4 MiB tables (and of custom tables).
VFS_PARTITION = ("vfs", layout.TYPE_DATA, layout.SUBTYPE_FAT, 0x200000, 0x200000)
APP_OFFSET = 0x10000


def partition_table(partitions, md5=True):
    """ESP-IDF binary partition table (gen_esp32part.py format), padded with 0xFF to 0xC00 bytes."""
    table = b""
    for label, ptype, subtype, offset, size in partitions:
        table += layout.ENTRY.pack(layout.ENTRY_MAGIC, ptype, subtype, offset, size, label.encode("ascii"), 0)
    if md5:
        table += layout.MD5_MAGIC + hashlib.md5(table).digest()
    return table + b"\xff" * (layout.PARTITION_TABLE_MAX - len(table))


def esp_image(chip, payload):
    """A minimal valid ESP app/bootloader image that esptool parses (so its chip check applies).

    Header: magic, 1 segment, DIO, 4 MB/40 MHz, entry point; extended header with the chip id at
    byte 12 and min/max chip revision 0/0xFFFF (any); one segment holding `payload`; checksum byte.
    """
    _offset, chip_id = layout.CHIPS[layout.normalize_chip(chip)]
    header = struct.pack("<BBBBI", layout.IMAGE_MAGIC, 1, 2, 0x20, 0x40080000)
    extended = struct.pack("<B3sHBHH4sB", 0xEE, b"\x00" * 3, chip_id, 0, 0, 0xFFFF, b"\x00" * 4, 0)
    payload = payload + b"\x00" * (-len(payload) % 4)
    segment = struct.pack("<II", 0x3FFE0000, len(payload)) + payload
    checksum = 0xEF
    for byte in payload:
        checksum ^= byte
    body = header + extended + segment
    body += b"\x00" * (15 - len(body) % 16) + bytes([checksum])  # checksum ends a 16-byte row
    return body


def base_image(chip, vfs=False, partitions=None, app_size=0x10000, marker="stand-in"):
    """Bytes of a stand-in merged image for `chip` (write it at layout.image_offset(chip)).

    `marker` changes the application bytes, to model two firmware versions.
    """
    offset = layout.image_offset(chip)
    if partitions is None:
        partitions = MICROPYTHON_PARTITIONS + ((VFS_PARTITION,) if vfs else ())
    filler = (f"MicroPython {marker} image for {layout.normalize_chip(chip)}. ".encode()) * 64
    bootloader = esp_image(chip, filler[:0x1000])
    data = bytearray(b"\xff" * (layout.PARTITION_TABLE_OFFSET - offset))
    data[: len(bootloader)] = bootloader
    data += partition_table(partitions)
    data += b"\xff" * (APP_OFFSET - offset - len(data))
    app = esp_image(chip, (filler * (app_size // len(filler) + 1))[: max(0, app_size - 64)])
    data += app
    return bytes(data)


def write_base_image(path, chip, **kwargs):
    path = Path(path)
    path.write_bytes(base_image(chip, **kwargs))
    return path


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m firmware.testing", description="Write a stand-in base image.")
    parser.add_argument("--chip", required=True, help="esp32 or esp32s3")
    parser.add_argument("--out", required=True)
    parser.add_argument("--vfs", action="store_true", help="explicit vfs partition (MicroPython <= 1.25 layout)")
    parser.add_argument("--marker", default="stand-in", help="text that makes two images differ")
    args = parser.parse_args(argv)
    write_base_image(args.out, args.chip, vfs=args.vfs, marker=args.marker)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
