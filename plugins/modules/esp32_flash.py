#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: esp32_flash
version_added: 0.1.0
short_description: Write images to an ESP32's flash, only where the flash differs
description:
  - Writes a list of images, each at its flash offset, to an ESP32 or ESP32-S3 board in serial
    download mode, with esptool's library API in one session.
  - For each region the board computes the MD5 of its flash (C(SPI_FLASH_MD5)), which is compared
    with the image's. Only the regions that differ are written (compressed), so a board that already
    holds the images is left alone and the task reports no change.
  - Every input is checked before anything is written, the board's MAC address and flash size
    included; a bad input leaves the flash as it was.
  - Writing erases the 4 KiB sectors a region covers, including the rest of its last sector.
options:
  regions:
    description:
      - The images to write and where.
    type: list
    elements: dict
    required: true
    suboptions:
      offset:
        description:
          - The flash offset of the image, a multiple of 4 KiB (C(0x1000)).
          - An integer, or a string such as C(0x10000) or C(65536).
        type: raw
        required: true
      image:
        description:
          - The path of the image file on the host the module runs on.
        type: path
        required: true
  expected_mac:
    description:
      - The base MAC address the board must have (colons optional, any case), such as the
        inventory's C(esp32_expected_mac). When the board on O(esp32_port) has another, the module
        fails before writing anything, so a board plugged into the wrong port is not flashed with
        another board's credentials.
    type: str
  verify:
    description:
      - After writing, read the MD5 of every written region back from the board and fail if it
        differs from the image's.
      - esptool also checks each region it writes right after writing it; that check cannot be
        turned off.
    type: bool
    default: true
  baud:
    description:
      - The baud rate to switch to after connecting (the ROM loader answers at 115200).
      - Has no effect on C(socket://) ports.
    type: int
    default: 460800
  stub:
    description:
      - Upload esptool's flasher stub to the board's RAM and flash through it, as the esptool command
        line does by default (16 KiB blocks instead of 1 KiB). Set to V(false) to talk to the ROM
        loader only.
    type: bool
    default: true
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - iotfleet.aws.esp32
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Connects and compares the MD5 sums, writes nothing; RV(regions[].written) says what would be written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The MD5 of each region's flash before and after, keyed by offset.
"""

EXAMPLES = r"""
- name: Flash the shared firmware and the board's own filesystem image
  iotfleet.aws.esp32_flash:
    esp32_port: "{{ esp32_port }}"
    expected_mac: "{{ esp32_expected_mac | default(omit) }}"
    regions:
      - offset: 0x0
        image: "{{ firmware_dir }}/micropython-esp32s3.bin"
      - offset: "0x610000"
        image: "{{ build_dir }}/{{ inventory_hostname }}-fs.bin"
  delegate_to: "{{ esp32_station | default('localhost') }}"
  register: flashed

- name: Show what was written
  ansible.builtin.debug:
    msg: "{{ flashed.regions | selectattr('written') | map(attribute='image') | list }}, {{ flashed.bytes_written }} B"
"""

RETURN = r"""
chip:
  description: The chip model of the board, as esptool names it.
  returned: success
  type: str
  sample: ESP32-S3
mac:
  description: The board's base MAC address, upper-case hex pairs separated by colons.
  returned: success
  type: str
  sample: 48:27:E2:E5:91:90
thing_name:
  description: The board's base MAC address as 12 upper-case hex digits (its AWS IoT thing name).
  returned: success
  type: str
  sample: 4827E2E59190
regions:
  description:
    - One entry per requested region, in the order given.
    - Also returned when writing fails part way, to show what was written.
  returned: when the board was reached
  type: list
  elements: dict
  contains:
    offset:
      description: The flash offset.
      type: int
      sample: 65536
    offset_hex:
      description: The flash offset in hex.
      type: str
      sample: "0x10000"
    image:
      description: The image file.
      type: str
      sample: /srv/fleet/micropython-esp32s3.bin
    size:
      description: The image size in bytes.
      type: int
      sample: 1646592
    md5:
      description: The MD5 of the image.
      type: str
      sample: 3f6a5d0e1c2b4a8f9e7d6c5b4a392817
    flash_md5:
      description: The MD5 of the same bytes of flash before the module ran.
      type: str
      sample: 1b2c3d4e5f60718293a4b5c6d7e8f901
    written:
      description: Whether the region was written (in check mode, whether it would be).
      type: bool
      sample: true
bytes_written:
  description: The number of image bytes written (in check mode, that would be written); 0 when nothing differed.
  returned: when the board was reached
  type: int
  sample: 1646592
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.basic import missing_required_lib

from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import ESPTOOL_IMPORT_ERROR
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import HAS_ESPTOOL
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import Esp32Error
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import check_mac
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import check_regions_fit
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import colon_mac
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import esp32_session
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import load_regions
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import normalize_mac


class FlashFailed(Esp32Error):
    """A failure after the board was reached: carries what the result would have said so far."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def region_result(region, written):
    return dict(
        offset=region["offset"],
        offset_hex=f"0x{region['offset']:x}",
        image=region["image"],
        size=region["size"],
        md5=region["md5"],
        flash_md5=region["flash_md5"],
        written=written,
    )


def differing_regions(board, regions):
    """Read each region's flash MD5 from the board; return the regions whose flash differs from the image."""
    for region in regions:
        region["flash_md5"] = board.flash_md5(region["offset"], region["size"])
    return [region for region in regions if region["flash_md5"] != region["md5"]]


def verify_regions(board, regions):
    for region in regions:
        after = board.flash_md5(region["offset"], region["size"])
        if after != region["md5"]:
            raise Esp32Error(
                f"verify: regions[{region['index']}] ({region['image']} at 0x{region['offset']:x}) reads back "
                f"with MD5 {after}, the image's is {region['md5']}."
            )


def flash_result(board, thing, regions, written):
    """The module result; `written` are the regions written (in check mode, that would be)."""
    written_indexes = {region["index"] for region in written}
    return dict(
        changed=bool(written),
        chip=board.chip,
        mac=colon_mac(thing),
        thing_name=thing,
        regions=[region_result(region, region["index"] in written_indexes) for region in regions],
        bytes_written=sum(region["size"] for region in written),
    )


def flash(module, regions):
    """Compare, then (unless in check mode) write what differs; return the module result."""
    params = module.params
    expected_mac = params["expected_mac"]
    if expected_mac is not None and normalize_mac(expected_mac) is None:
        raise Esp32Error(f"expected_mac: {expected_mac!r} is not a MAC address (12 hex digits, colons optional).")
    with esp32_session(params["esp32_port"], stub=params["stub"], baud=params["baud"]) as board:
        thing = check_mac(board, expected_mac) if expected_mac is not None else board.thing_name()
        size = board.flash_size_bytes()
        if size is None:
            module.warn(f"cannot tell the flash size of the board on {board.port}; not checking that the images fit.")
        else:
            check_regions_fit(regions, size, board.port)
        to_write = differing_regions(board, regions)
        if module.check_mode:
            return flash_result(board, thing, regions, to_write)
        written = []
        try:
            for region in to_write:
                board.write(region["offset"], region["data"])
                written.append(region)
            if params["verify"]:
                verify_regions(board, written)
        except Esp32Error as e:
            raise FlashFailed(str(e), flash_result(board, thing, regions, written)) from e
        return flash_result(board, thing, regions, written)


def main():
    argument_spec = dict(
        esp32_port=dict(type="str", required=True),
        regions=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                offset=dict(type="raw", required=True),
                image=dict(type="path", required=True),
            ),
        ),
        expected_mac=dict(type="str"),
        verify=dict(type="bool", default=True),
        baud=dict(type="int", default=460800),
        stub=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_ESPTOOL:
        module.fail_json(msg=missing_required_lib("esptool"), exception=ESPTOOL_IMPORT_ERROR)
    if module.params["baud"] <= 0:
        module.fail_json(msg="baud: must be a positive number.")
    try:
        regions = load_regions(module.params["regions"])
        result = flash(module, regions)
    except FlashFailed as e:
        module.fail_json(msg=str(e), **e.result)
    except Esp32Error as e:
        module.fail_json(msg=str(e))
    if module._diff:
        result["diff"] = dict(
            before={r["offset_hex"]: r["flash_md5"] for r in result["regions"]},
            after={r["offset_hex"]: r["md5"] if r["written"] else r["flash_md5"] for r in result["regions"]},
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
