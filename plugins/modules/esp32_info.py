#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: esp32_info
version_added: 0.1.0
short_description: Read an ESP32 board's chip, revision, MAC address and flash size
description:
  - Connects to an ESP32 or ESP32-S3 board in serial download mode with esptool's library API and
    reads what the fleet needs to register and flash it. The board's base MAC address, as 12
    upper-case hex digits, is the name of its AWS IoT thing.
  - Talks to the chip's ROM boot loader only (no flasher stub is uploaded) and changes nothing on
    the board.
  - Fails with a clear message when the port does not exist or is busy, or when what answers is not
    an ESP32 or ESP32-S3.
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - iotfleet.aws.esp32
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
    details: The module changes nothing.
"""

EXAMPLES = r"""
- name: Read the board that hangs off this station's USB port
  iotfleet.aws.esp32_info:
    esp32_port: /dev/ttyUSB0
  delegate_to: "{{ esp32_station | default('localhost') }}"
  register: board

- name: Show its thing name
  ansible.builtin.debug:
    msg: "{{ board.chip }} rev {{ board.revision }}, thing {{ board.thing_name }}, {{ board.flash_size }} flash"

- name: A virtual board of the sandbox
  iotfleet.aws.esp32_info:
    esp32_port: socket://127.0.0.1:4601
"""

RETURN = r"""
chip:
  description: The chip model, as esptool names it.
  returned: always
  type: str
  sample: ESP32-S3
chip_description:
  description: The chip model with its package and revision.
  returned: always
  type: str
  sample: ESP32-S3 (QFN56) (revision v0.2)
revision:
  description: The chip revision, major and minor.
  returned: always
  type: str
  sample: v0.2
features:
  description: The chip's features, as esptool lists them.
  returned: always
  type: list
  elements: str
  sample: ["Wi-Fi", "BT 5 (LE)", "Dual Core + LP Core", "240MHz"]
crystal_mhz:
  description: The crystal frequency in MHz.
  returned: always
  type: int
  sample: 40
mac:
  description: The base MAC address, upper-case hex pairs separated by colons.
  returned: always
  type: str
  sample: 48:27:E2:E5:91:90
thing_name:
  description: The base MAC address as 12 upper-case hex digits, the board's AWS IoT thing name.
  returned: always
  type: str
  sample: 4827E2E59190
flash_size:
  description: The flash size detected from the flash chip's JEDEC id, or null if esptool does not know the id.
  returned: always
  type: str
  sample: 8MB
flash_size_bytes:
  description: The flash size in bytes, or null if unknown.
  returned: always
  type: int
  sample: 8388608
port:
  description: The port the board was reached on.
  returned: always
  type: str
  sample: /dev/ttyUSB0
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.basic import missing_required_lib

from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import ESPTOOL_IMPORT_ERROR
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import HAS_ESPTOOL
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import Esp32Error
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32 import esp32_session


def main():
    argument_spec = dict(
        esp32_port=dict(type="str", required=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_ESPTOOL:
        module.fail_json(msg=missing_required_lib("esptool"), exception=ESPTOOL_IMPORT_ERROR)
    try:
        with esp32_session(module.params["esp32_port"]) as board:
            info = board.describe()
    except Esp32Error as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=False, **info)


if __name__ == "__main__":
    main()
