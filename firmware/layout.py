"""Flash layout of a board: where the MicroPython image and the filesystem go, read from the image.

The implementation, with the facts it relies on, is plugins/module_utils/esp32_image.py, shared with
the esp32_fs_image module (see firmware/_image.py); this module re-exports it and adds the command
line `python -m firmware.layout IMAGE --chip esp32s3 [--flash-size 8MB]`.
"""

import json
import sys

from firmware._image import esp32_image as _impl

# The implementation is plugins/module_utils/esp32_image.py (shared with the esp32_fs_image module).
BLOCK_SIZE = _impl.BLOCK_SIZE
PARTITION_TABLE_OFFSET = _impl.PARTITION_TABLE_OFFSET
PARTITION_TABLE_MAX = _impl.PARTITION_TABLE_MAX
ENTRY = _impl.ENTRY
ENTRY_MAGIC = _impl.ENTRY_MAGIC
MD5_MAGIC = _impl.MD5_MAGIC
IMAGE_MAGIC = _impl.IMAGE_MAGIC
FS_LABELS = _impl.FS_LABELS
TYPE_APP = _impl.TYPE_APP
TYPE_DATA = _impl.TYPE_DATA
SUBTYPE_FAT = _impl.SUBTYPE_FAT
CHIPS = _impl.CHIPS
CHIP_IDS = _impl.CHIP_IDS
LayoutError = _impl.LayoutError
Partition = _impl.Partition
normalize_chip = _impl.normalize_chip
image_offset = _impl.image_offset
parse_partition_table = _impl.parse_partition_table
image_chip = _impl.image_chip
read_partition_table = _impl.read_partition_table
parse_size = _impl.parse_size
flash_layout = _impl.flash_layout
check_fs_image = _impl.check_fs_image
flash_regions = _impl.flash_regions


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
