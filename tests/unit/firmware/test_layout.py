"""Flash layout per chip, from the image's own partition table."""

import json

import pytest
from esptool.targets import CHIP_DEFS

from firmware import layout
from firmware import testing

MiB = 1 << 20


@pytest.mark.parametrize("chip", ["esp32", "esp32s3"])
def test_chip_offsets_and_ids_agree_with_esptool(chip):
    offset, chip_id = layout.CHIPS[chip]
    assert offset == CHIP_DEFS[chip].BOOTLOADER_FLASH_OFFSET  # 0x1000 classic ESP32, 0x0 ESP32-S3
    assert chip_id == CHIP_DEFS[chip].IMAGE_CHIP_ID
    assert layout.normalize_chip(CHIP_DEFS[chip].CHIP_NAME) == chip  # "ESP32-S3" as esptool reports it


@pytest.mark.parametrize(("chip", "offset"), [("esp32", 0x1000), ("esp32s3", 0x0)])
def test_table_is_read_at_0x8000_of_flash_for_each_chip(chip, offset):
    image = testing.base_image(chip)
    assert image[0x8000 - offset : 0x8000 - offset + 2] == b"\xaa\x50"
    partitions = layout.read_partition_table(image, chip)
    assert [(p.label, p.type, p.subtype, p.offset, p.size) for p in partitions] == list(testing.MICROPYTHON_PARTITIONS)


@pytest.mark.parametrize("chip", ["esp32", "esp32s3"])
def test_explicit_vfs_partition_is_used_as_is(chip):
    result = layout.flash_layout(testing.base_image(chip, vfs=True), chip)
    assert result["image_offset"] == layout.image_offset(chip)
    assert result["filesystem"] == {
        "label": "vfs",
        "offset": 0x200000,
        "size": 0x200000,
        "block_size": 4096,
        "block_count": 512,
        "implicit": False,
    }


@pytest.mark.parametrize(("flash_size", "size"), [("4MB", 2 * MiB), ("8MB", 6 * MiB), (16 * MiB, 14 * MiB)])
def test_missing_vfs_spans_end_of_last_partition_to_end_of_flash(flash_size, size):
    # MicroPython >= 1.26: the table stops after factory (0x10000 + 0x1F0000) and the firmware
    # registers vfs from there to the end of the physical flash at boot.
    fs = layout.flash_layout(testing.base_image("esp32s3"), "ESP32-S3", flash_size)["filesystem"]
    assert (fs["offset"], fs["size"], fs["block_count"], fs["implicit"]) == (0x200000, size, size // 4096, True)


def test_missing_vfs_without_flash_size_is_a_clear_error():
    with pytest.raises(layout.LayoutError, match="flash size is needed"):
        layout.flash_layout(testing.base_image("esp32"), "esp32")


def test_ffat_label_is_accepted_like_micropython_does():
    parts = testing.MICROPYTHON_PARTITIONS + (("ffat", layout.TYPE_DATA, layout.SUBTYPE_FAT, 0x200000, 0x100000),)
    fs = layout.flash_layout(testing.base_image("esp32", partitions=parts), "esp32")["filesystem"]
    assert (fs["label"], fs["offset"], fs["size"]) == ("ffat", 0x200000, 0x100000)


def test_image_for_the_other_chip_is_refused():
    with pytest.raises(layout.LayoutError, match="built for esp32s3, the board is esp32"):
        layout.flash_layout(testing.base_image("esp32s3"), "esp32", "4MB")


def test_no_partition_table_is_a_clear_error():
    image = bytearray(testing.base_image("esp32s3"))
    image[0x8000 : 0x8000 + 0xC00] = b"\xff" * 0xC00
    with pytest.raises(layout.LayoutError, match="no partition table"):
        layout.flash_layout(bytes(image), "esp32s3", "4MB")
    with pytest.raises(layout.LayoutError, match="too short"):
        layout.flash_layout(testing.base_image("esp32s3")[:0x4000], "esp32s3", "4MB")
    with pytest.raises(layout.LayoutError, match="not a merged ESP32 image"):
        layout.flash_layout(b"\x00" * 0x10000, "esp32s3", "4MB")


def test_corrupt_table_md5_is_detected_and_md5_is_optional():
    image = bytearray(testing.base_image("esp32", vfs=True))
    image[0x7000 + 8] ^= 0xFF  # flip a bit of the first entry's offset, MD5 entry unchanged
    with pytest.raises(layout.LayoutError, match="MD5"):
        layout.read_partition_table(bytes(image), "esp32")
    table = testing.partition_table(testing.MICROPYTHON_PARTITIONS, md5=False)
    assert [p.label for p in layout.parse_partition_table(table)] == ["nvs", "phy_init", "factory"]


def test_unsupported_chip_and_overlap_and_small_flash_are_errors():
    with pytest.raises(layout.LayoutError, match="unsupported chip 'esp32c3'"):
        layout.flash_layout(testing.base_image("esp32"), "esp32c3")
    big = testing.base_image("esp32s3", vfs=True, app_size=0x200000)  # image runs into vfs at 0x200000
    with pytest.raises(layout.LayoutError, match="overlaps the filesystem"):
        layout.flash_layout(big, "esp32s3")
    with pytest.raises(layout.LayoutError, match="no room for a filesystem"):
        layout.flash_layout(testing.base_image("esp32s3"), "esp32s3", "2MB")
    with pytest.raises(layout.LayoutError, match="ends beyond the flash size"):
        layout.flash_layout(testing.base_image("esp32s3", vfs=True), "esp32s3", "2MB")


def test_fs_image_must_fill_the_partition_exactly():
    result = layout.flash_layout(testing.base_image("esp32", vfs=True), "esp32")
    layout.check_fs_image(result, 0x200000)
    with pytest.raises(layout.LayoutError, match="bigger than the partition"):
        layout.check_fs_image(result, 0x200000 + 4096)
    with pytest.raises(layout.LayoutError, match="does not match the partition"):
        layout.check_fs_image(result, 0x100000)


def test_flash_regions_for_the_flashing_module(tmp_path):
    result = layout.flash_layout(testing.base_image("esp32"), "esp32", "4MB")
    assert layout.flash_regions(result, tmp_path / "base.bin", tmp_path / "fs.img") == [
        {"offset": 0x1000, "image": str(tmp_path / "base.bin")},
        {"offset": 0x200000, "image": str(tmp_path / "fs.img")},
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [("4MB", 4 * MiB), ("4MiB", 4 * MiB), ("8M", 8 * MiB), ("0x400000", 4 * MiB), ("512KB", 512 << 10)],
)
def test_parse_size(text, value):
    assert layout.parse_size(text) == value


def test_cli_prints_layout_json(tmp_path, capsys):
    path = testing.write_base_image(tmp_path / "base.bin", "esp32s3")
    assert layout.main([str(path), "--chip", "ESP32-S3", "--flash-size", "8MB"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["filesystem"]["offset"] == 0x200000
    assert printed["filesystem"]["size"] == 6 * MiB
    assert layout.main([str(tmp_path / "missing.bin"), "--chip", "esp32"]) == 1
    assert "cannot read base image" in capsys.readouterr().err
