# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # The connection option and requirements shared by the ESP32 device modules.
    DOCUMENTATION = r"""
options:
  esp32_port:
    description:
      - Where the board is connected, on the host the module runs on (the board's flashing station;
        use C(delegate_to)).
      - A serial device path such as C(/dev/ttyUSB0), or any pyserial URL such as
        C(socket://127.0.0.1:4601) (the sandbox's virtual boards).
      - The board must be in its serial download mode. Over a serial device esptool resets it into
        that mode through DTR/RTS; over C(socket://) it cannot, and the board has to be there already.
    type: str
    required: true
requirements:
  - esptool >= 5.6 (its library API, C(esptool.cmds))
  - pyserial
notes:
  - These modules talk to a device, not to AWS, and are not in the C(group/iotfleet.aws.aws) action group.
  - One esptool session per task; the port is opened exclusively and closed when the task ends.
  - Connecting resets a board on a serial port into its download mode (DTR/RTS), in check mode
    too, so the board does not run its firmware while the task talks to it.
  - When the task succeeds, the board is reset through the RTS line so that it runs its firmware
    again, as esptool does by default (C(--after hard-reset)). Over C(socket://) there is no RTS line;
    the sandbox's virtual boards start afresh on every connection instead.
"""
