# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Helpers shared by the iotfleet.aws ESP32 device modules.

A module opens one esptool session per call (esp32_session), through esptool's library API
(esptool.cmds), never its command line. Everything that can go wrong is raised as Esp32Error with
a message that names the option at fault; main() turns it into fail_json. Inputs are checked
(load_regions, check_regions_fit, check_mac) before anything is written.

esptool prints progress to stdout, where a module may only write its JSON result: during a
session its logger is replaced by a silent one.
"""

import contextlib
import hashlib
import os
import re
import traceback

try:
    import serial
    from esp_pylib.logger import EspLog
    from esp_pylib.logger import EspLogBase
    from esptool.cmds import attach_flash
    from esptool.cmds import detect_chip
    from esptool.cmds import detect_flash_size
    from esptool.cmds import reset_chip
    from esptool.cmds import run_stub
    from esptool.cmds import write_flash
    from esptool.loader import DEFAULT_CONNECT_ATTEMPTS
    from esptool.util import FatalError
    from esptool.util import flash_size_bytes
except ImportError:
    HAS_ESPTOOL = False
    ESPTOOL_IMPORT_ERROR = traceback.format_exc()
    EspLogBase = object
    DEFAULT_CONNECT_ATTEMPTS = 7
else:
    HAS_ESPTOOL = True
    ESPTOOL_IMPORT_ERROR = None

# The chips this collection flashes (DESIGN §4), as esptool names them.
SUPPORTED_CHIPS = ("ESP32", "ESP32-S3")
# The ROM loader's erase unit: esptool erases whole sectors around what it writes.
SECTOR_SIZE = 0x1000
MAC_RE = re.compile(r"^[0-9A-F]{12}$")


class Esp32Error(Exception):
    """A failure with a message meant for the user; nothing was written unless it says so."""


def _esptool_errors():
    return (FatalError, serial.SerialException, OSError)


class _Silent(EspLogBase):
    """esptool's logger during a session: says nothing (what goes wrong comes back as FatalError)."""

    def print(self, *args, **kwargs):
        pass

    def note(self, *args):
        pass

    def hint(self, *args):
        pass

    def warn(self, *args, suggestion=None):
        pass

    def err(self, *args, suggestion=None):
        pass

    def warning(self, message, suggestion=None):
        pass

    def error(self, message, suggestion=None):
        pass

    def debug(self, *args):
        pass

    def set_verbosity(self, mode):
        pass

    def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
        pass


@contextlib.contextmanager
def _silent_esptool():
    previous = EspLog.instance
    EspLog.instance = _Silent()
    try:
        yield
    finally:
        EspLog.instance = previous


def normalize_mac(value):
    """'48:27:e2:e5:91:90', '48-27-E2-E5-91-90' or '4827E2E59190' -> '4827E2E59190'; None if not a MAC."""
    digits = re.sub(r"[:\-.\s]", "", str(value)).upper()
    return digits if MAC_RE.match(digits) else None


def colon_mac(thing_name):
    """'4827E2E59190' -> '48:27:E2:E5:91:90'."""
    return ":".join(thing_name[i : i + 2] for i in range(0, 12, 2))


def parse_offset(value):
    """An int, or a string such as '0x1000' or '4096', as a non-negative int; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    offset = value if isinstance(value, int) else int(str(value).strip(), 0)
    if offset < 0:
        raise ValueError(value)
    return offset


def _port_is_device(port):
    return "://" not in port


def _open_error(port, error):
    """A message for esptool's "Could not open PORT" (and pyserial's own errors)."""
    # esptool says "the port is busy or doesn't exist" whatever the cause; the cause follows it.
    text = str(error).replace("the port is busy or doesn't exist", "")
    if re.search(r"Errno 2\b|No such file", text):
        return f"esp32_port: no device {port} on this host; is the board plugged in to this station?"
    if re.search(r"Connection refused|Errno 111\b", text):
        return (
            f"esp32_port: nothing listens at {port} (connection refused); for a virtual board, "
            f"start the sandbox (python -m sandbox up)."
        )
    if re.search(r"lock|busy|Errno 11\b|Errno 16\b|socket disconnected|Broken pipe|Connection reset", text, re.I):
        return (
            f"esp32_port: {port} is busy: another program holds it (a serial monitor, another "
            f"esptool or flashing task?) or the board closed the connection. Close it and run again."
        )
    if re.search(r"Permission denied|Errno 13\b", text):
        return f"esp32_port: no permission to open {port}; add the user to the group that owns it (dialout)."
    return f"esp32_port: cannot open {port}: {text}"


def _connect_error(port, error):
    text = str(error)
    if isinstance(error, (serial.SerialException, OSError)) or text.startswith("Could not open"):
        return _open_error(port, error)
    first_line = text.splitlines()[0].split("WARNING:")[0].strip() if text else ""
    if "Failed to connect" in text or "No serial data received" in text:
        return (
            f"esp32_port: no ESP32 boot loader answers on {port}. Is it an ESP32 board, in download mode "
            f"(hold BOOT while pressing RESET), at this port? esptool said: {first_line}"
        )
    if "autodetect" in text or "Unexpected chip" in text:
        return f"esp32_port: the device on {port} is not an ESP32 chip esptool knows: {first_line}"
    return f"esp32_port: cannot connect to the board on {port}: {text}"


class Esp32Board:
    """A connected board: the esptool loader (ROM or stub) and the port it was reached on."""

    def __init__(self, esp, port):
        self.esp = esp
        self.port = port

    @property
    def chip(self):
        return self.esp.CHIP_NAME

    def _call(self, what, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except _esptool_errors() as e:
            raise Esp32Error(f"{what} on the board at {self.port} failed: {e}") from e

    def thing_name(self):
        """The base MAC as the fleet names things: 12 upper-case hex digits."""
        mac = self._call("reading the MAC address", self.esp.read_mac, "BASE_MAC")
        return "".join(f"{byte:02X}" for byte in mac)

    def flash_size(self):
        """Detected flash size as esptool names it ('8MB'), or None if the flash id is not one it knows."""
        return self._call("detecting the flash size", detect_flash_size, self.esp)

    def flash_size_bytes(self):
        size = self.flash_size()
        return flash_size_bytes(size) if size else None

    def describe(self):
        """Chip, revision, features, crystal, MAC and flash size."""
        esp = self.esp
        thing = self.thing_name()
        size = self.flash_size()
        major = self._call("reading the chip revision", esp.get_major_chip_version)
        minor = self._call("reading the chip revision", esp.get_minor_chip_version)
        return dict(
            chip=esp.CHIP_NAME,
            chip_description=self._call("reading the chip description", esp.get_chip_description),
            revision=f"v{major}.{minor}",
            features=list(self._call("reading the chip features", esp.get_chip_features)),
            crystal_mhz=self._call("reading the crystal frequency", esp.get_crystal_freq),
            mac=colon_mac(thing),
            thing_name=thing,
            flash_size=size,
            flash_size_bytes=flash_size_bytes(size) if size else None,
            port=self.port,
        )

    def flash_md5(self, offset, size):
        """MD5 (lower-case hex) of `size` bytes of flash at `offset`, computed by the board (SPI_FLASH_MD5)."""
        return self._call(f"reading the MD5 of 0x{offset:x}+0x{size:x}", self.esp.flash_md5sum, offset, size)

    def write(self, offset, data):
        """Write `data` at `offset`, compressed (esptool falls back to plain if it does not shrink).

        esptool's write_flash erases the sectors it covers and checks the region's MD5 afterwards.
        """
        self._call(
            f"writing 0x{len(data):x} bytes at 0x{offset:x}",
            write_flash,
            self.esp,
            [(offset, data)],
            compress=True,
            no_progress=True,
        )


@contextlib.contextmanager
def esp32_session(port, stub=False, baud=None, connect_attempts=DEFAULT_CONNECT_ATTEMPTS):
    """Connect to the board on `port` (device path or pyserial URL); yield an Esp32Board.

    One esptool session: chip detection, optionally the flasher stub and a faster baud rate,
    the SPI flash attached. When the caller's block succeeds, the board is reset through RTS so that
    it runs its firmware again (esptool's default `--after hard-reset`). The port is closed on the
    way out, whatever happens.
    """
    if _port_is_device(port) and not os.path.exists(port):
        raise Esp32Error(f"esp32_port: no device {port} on this host; is the board plugged in to this station?")
    with _silent_esptool():
        try:
            loader = detect_chip(port, connect_attempts=connect_attempts)
        except _esptool_errors() as e:
            raise Esp32Error(_connect_error(port, e)) from e
        with loader:
            if loader.CHIP_NAME not in SUPPORTED_CHIPS:
                raise Esp32Error(
                    f"esp32_port: the board on {port} is an {loader.CHIP_NAME}; this collection supports "
                    f"{' and '.join(SUPPORTED_CHIPS)}."
                )
            board = Esp32Board(loader, port)
            if stub:
                board.esp = board._call("starting the flasher stub", run_stub, loader)
            if baud and baud != board.esp.get_baud():
                board._call(f"changing the baud rate to {baud}", board.esp.change_baud, baud)
            board._call("attaching the SPI flash", attach_flash, board.esp)
            yield board
            board._call("resetting the board", reset_chip, board.esp, "hard-reset")


def check_mac(board, expected):
    """Fail unless the board's base MAC is `expected` (any usual notation); return the thing name."""
    thing = board.thing_name()
    wanted = normalize_mac(expected)
    if wanted is None:
        raise Esp32Error(f"expected_mac: {expected!r} is not a MAC address (12 hex digits, colons optional).")
    if thing != wanted:
        raise Esp32Error(
            f"expected_mac: board on {board.port} has MAC {colon_mac(thing)}, the inventory says {colon_mac(wanted)}."
        )
    return thing


def load_regions(regions):
    """Read and check the requested regions before connecting.

    Returns dicts with offset, image, data, size and md5 in the given order. Fails on an offset that
    is not a number or not 4 KiB aligned, a missing or empty image, or regions that overlap.
    """
    if not regions:
        raise Esp32Error("regions: give at least one {offset, image}.")
    loaded = []
    for index, region in enumerate(regions):
        where = f"regions[{index}]"
        try:
            offset = parse_offset(region["offset"])
        except (TypeError, ValueError):
            raise Esp32Error(
                f"{where}.offset: {region['offset']!r} is not a flash offset "
                f"(an integer, or a string such as '0x1000')."
            ) from None
        if offset % SECTOR_SIZE:
            raise Esp32Error(
                f"{where}.offset: 0x{offset:x} is not a multiple of 4 KiB (0x1000); flash is erased in 4 KiB sectors."
            )
        image = region["image"]
        if not os.path.isfile(image):
            raise Esp32Error(f"{where}.image: no file {image} on this host.")
        with open(image, "rb") as handle:
            data = handle.read()
        if not data:
            raise Esp32Error(f"{where}.image: {image} is empty.")
        loaded.append(
            dict(index=index, offset=offset, image=image, data=data, size=len(data), md5=hashlib.md5(data).hexdigest())
        )
    ordered = sorted(loaded, key=lambda r: r["offset"])
    for position in range(1, len(ordered)):
        first, second = ordered[position - 1], ordered[position]
        if first["offset"] + first["size"] > second["offset"]:
            raise Esp32Error(
                f"regions: regions[{first['index']}] ({first['image']}, 0x{first['offset']:x}-"
                f"0x{first['offset'] + first['size'] - 1:x}) and regions[{second['index']}] ({second['image']} at "
                f"0x{second['offset']:x}) overlap."
            )
    return loaded


def _size_name(size):
    return f"{size >> 20}MB" if size >= 1 << 20 else f"{size >> 10}KB"


def check_regions_fit(regions, flash_size, port):
    """Fail if a region does not fit in the board's flash (`flash_size` bytes)."""
    for region in regions:
        end = region["offset"] + region["size"]
        if end <= flash_size:
            continue
        where = f"regions[{region['index']}].image"
        if region["size"] > flash_size:
            raise Esp32Error(
                f"{where}: {region['image']} ({region['size']} bytes) is larger than the {_size_name(flash_size)} "
                f"flash of the board on {port}."
            )
        raise Esp32Error(
            f"{where}: {region['image']} ({region['size']} bytes at 0x{region['offset']:x}) ends at 0x{end:x}, "
            f"past the end of the {_size_name(flash_size)} flash (0x{flash_size:x}) of the board on {port}."
        )
