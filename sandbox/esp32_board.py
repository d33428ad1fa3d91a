"""A virtual ESP32 / ESP32-S3 in serial download mode, for the real esptool over `socket://`.

    python -m sandbox.esp32_board --port 4601 --chip esp32s3 --mac 48:27:E2:E5:91:90 \\
        --flash-size 8MB --flash-file .sandbox/boards/board1.flash

esptool reaches it as `socket://127.0.0.1:4601` (a pyserial URL). Built from esptool 5.6's own
protocol code (loader.py, targets/esp32.py, targets/esp32s3.py, cmds.py):

- SLIP frames; a request is `<BBHI` (0x00, op, data length, checksum) + data, a response
  `<BBHI` (0x01, op, data length, value) + data + status bytes. The ROM loader sends 4 status
  bytes (status, error, 0, 0; error codes 0x05-0x0B), the flasher stub 2 (its codes 0xC0-0xC9, 0xFF).
- The ROM loader: SYNC (8 answers), READ_REG/WRITE_REG on a small register file (chip-detect
  magic, eFuse words with the MAC and chip revision, the SPI controller that runs flash commands
  such as RDID and RDSFDP), GET_SECURITY_INFO (ESP32-S3: chip id 9; the classic ESP32 ROM lacks
  it), SPI_ATTACH, SPI_SET_PARAMS, CHANGE_BAUDRATE, FLASH_BEGIN/DATA/END,
  FLASH_DEFL_BEGIN/DATA/END (zlib), SPI_FLASH_MD5 (32 lower-case hex characters),
  READ_FLASH_SLOW (64 bytes a command), MEM_BEGIN/DATA/END.
- esptool's flasher stub: MEM_END with an entry point answers, then says "OHAI", and from then on
  the board behaves as the stub (2 status bytes, 16 KiB blocks, raw 16-byte MD5, READ_FLASH with
  flow control, ERASE_FLASH, ERASE_REGION, FLASH_DEFL_END answered). The uploaded code itself is
  not run: whatever esptool loads and starts is taken to be its stub. So both work: the library
  without `run_stub` (ROM only) and with it (as the esptool command line does by default).

Each TCP connection is one power-on into download mode (over a socket esptool cannot toggle
DTR/RTS, so the board resets itself): ROM loader, flash not attached, registers fresh. One client
at a time, as a serial port opened exclusively: a second connection waits half a second for the
first to end, then is closed (esptool then fails with "socket disconnected"). Until SPI_ATTACH
the ROM reads the flash id as all ones and refuses flash commands: a real ROM does not reach the
flash chip before it either.

Flash: NOR semantics (erase sets 4 KiB sectors to 0xFF, programming only clears bits), kept in
`--flash-file`: the file holds the flash verbatim from offset 0 and every byte past its end reads
as 0xFF, so a new board's file is empty and grows only as far as it is written (an erase that
reaches the end of the file shortens it). The file is opened per connection and never cached,
so editing it between connections (to corrupt a region in a test) is seen by the next client.
"""

import argparse
import hashlib
import logging
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("esp32_board")

SECTOR_SIZE = 0x1000
ROM_BAUD = 115200
XTAL_HZ = 40_000_000
# A session with no traffic for this long is dropped so that a vanished client cannot hold the port.
IDLE_TIMEOUT = 300.0
ACCEPT_POLL = 0.25
BUSY_GRACE = 0.5

# Opcodes, as esptool's loader.ESP_CMDS names them.
FLASH_BEGIN = 0x02
FLASH_DATA = 0x03
FLASH_END = 0x04
MEM_BEGIN = 0x05
MEM_END = 0x06
MEM_DATA = 0x07
SYNC = 0x08
WRITE_REG = 0x09
READ_REG = 0x0A
SPI_SET_PARAMS = 0x0B
SPI_ATTACH = 0x0D
READ_FLASH_SLOW = 0x0E
CHANGE_BAUDRATE = 0x0F
FLASH_DEFL_BEGIN = 0x10
FLASH_DEFL_DATA = 0x11
FLASH_DEFL_END = 0x12
SPI_FLASH_MD5 = 0x13
GET_SECURITY_INFO = 0x14
ERASE_FLASH = 0xD0
ERASE_REGION = 0xD1
READ_FLASH = 0xD2
RUN_USER_CODE = 0xD3

# ROM error codes (second status byte, the first is 1).
ROM_INVALID_MESSAGE = 0x05
ROM_FAILED_TO_ACT = 0x06
ROM_BAD_CHECKSUM = 0x07
ROM_FLASH_WRITE_ERROR = 0x08
ROM_FLASH_READ_ERROR = 0x09
ROM_DEFLATE_ERROR = 0x0B
# Flasher stub error codes (first status byte), and which ROM code each stands for.
STUB_ERRORS = {
    ROM_INVALID_MESSAGE: 0xC0,  # bad data length
    ROM_BAD_CHECKSUM: 0xC1,
    ROM_FAILED_TO_ACT: 0xC4,  # failed SPI operation
    ROM_FLASH_WRITE_ERROR: 0xC4,
    ROM_FLASH_READ_ERROR: 0xC4,
    ROM_DEFLATE_ERROR: 0xC7,  # inflate error
}
STUB_NOT_IN_FLASH_MODE = 0xC6
STUB_NOT_ENOUGH_DATA = 0xC8
STUB_TOO_MUCH_DATA = 0xC9
STUB_NOT_IMPLEMENTED = 0xFF

SYNC_PAYLOAD = b"\x07\x07\x12\x20" + 32 * b"\x55"
ROM_SYNC_VALUE = 0x20120707
CHECKSUM_SEED = 0xEF
MAX_BLOCK = 0x10000

# JEDEC capacity byte of a Winbond W25Qxx part, which esptool's detect_flash_size maps back to a size.
FLASH_SIZES = {"2MB": 0x15, "4MB": 0x16, "8MB": 0x17, "16MB": 0x18}
FLASH_MANUFACTURER = 0xEF
FLASH_MEMORY_TYPE = 0x40
# SPI flash commands run through the controller registers (esptool run_spiflash_command).
SPIFLASH_RDID = 0x9F
SPIFLASH_RDSFDP = 0x5A
SPI_CMD_USR = 1 << 18
SPI_USR_MISO = 1 << 28
# An SFDP table with its signature and one (JEDEC basic) parameter header; no vendor byte 0x20 at
# 0x10, so esptool does not run its XMC start-up fix.
SFDP = (b"SFDP\x06\x01\x00\xff" + b"\x00\x06\x01\x10\x30\x00\x00\xff").ljust(0x80, b"\xff")


@dataclass(frozen=True)
class Chip:
    """What esptool sees of a chip model in download mode."""

    name: str
    # Answered by GET_SECURITY_INFO; None when the ROM lacks that command (classic ESP32).
    security_chip_id: int | None
    spi_base: int
    spi_usr: int
    spi_usr2: int
    spi_miso_dlen: int
    spi_w0: int
    # The classic ESP32 takes the flash address in the top bits of SPI_ADDR_REG.
    spi_addr_msb: bool
    uart_clkdiv_reg: int
    registers: Callable[[bytes], dict[int, int]]


def esp32_registers(mac: bytes) -> dict[int, int]:
    efuse = 0x3FF5A000
    return {
        0x40001000: 0x00F01D83,  # CHIP_DETECT_MAGIC_REG: classic ESP32
        efuse + 0x04: int.from_bytes(mac[2:], "big"),
        efuse + 0x08: int.from_bytes(mac[:2], "big"),  # MAC CRC (bits 16-23) left 0: esptool does not read it
        # chip rev bit 0, rated 240 MHz, package 1 (ESP32-D0WD-V3)
        efuse + 0x0C: (1 << 15) | (1 << 13) | (1 << 9),
        efuse + 0x10: 64,  # 8 MHz clock factor: with RTCCALICFG1 below, the ROM's crystal estimate is 40 MHz
        efuse + 0x14: 1 << 20,  # chip rev bit 1
        0x3FF6607C: 1 << 31,  # APB_CTL_DATE: chip rev bit 2 -> revision v3.0
        0x3FF5F06C: 1600 << 7,  # RTCCALICFG1
    }


def esp32s3_registers(mac: bytes) -> dict[int, int]:
    block1 = 0x60007044
    block2 = 0x6000705C
    return {
        block1: int.from_bytes(mac[2:], "big"),
        block1 + 0x04: int.from_bytes(mac[:2], "big"),
        # eFuse block version minor 1, chip minor revision 2, package 0 (QFN56), no embedded flash
        block1 + 0x0C: (1 << 24) | (2 << 18),
        block2 + 0x10: 1,  # eFuse block version major 1 -> revision v0.2
    }


ESP32 = Chip(
    name="ESP32",
    security_chip_id=None,
    spi_base=0x3FF42000,
    spi_usr=0x1C,
    spi_usr2=0x24,
    spi_miso_dlen=0x2C,
    spi_w0=0x80,
    spi_addr_msb=True,
    uart_clkdiv_reg=0x3FF40014,
    registers=esp32_registers,
)
ESP32S3 = Chip(
    name="ESP32-S3",
    security_chip_id=9,
    spi_base=0x60002000,
    spi_usr=0x18,
    spi_usr2=0x20,
    spi_miso_dlen=0x28,
    spi_w0=0x58,
    spi_addr_msb=False,
    uart_clkdiv_reg=0x60000014,
    registers=esp32s3_registers,
)
CHIPS = {"esp32": ESP32, "esp32s3": ESP32S3}


def parse_mac(text: str) -> bytes:
    """'48:27:E2:E5:91:90', '48-27-e2-e5-91-90' or '4827E2E59190' -> 6 bytes."""
    digits = re.sub(r"[:\-]", "", text.strip())
    if not re.fullmatch(r"[0-9A-Fa-f]{12}", digits):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes.fromhex(digits)


def parse_flash_size(text: str) -> int:
    key = text.strip().upper()
    if key not in FLASH_SIZES:
        raise ValueError(f"flash size must be one of {', '.join(FLASH_SIZES)}, got {text!r}")
    return int(key[:-2]) << 20


@dataclass(frozen=True)
class Board:
    chip: Chip
    mac: bytes
    flash_size: int
    flash_file: Path

    @property
    def flash_id(self) -> int:
        capacity = FLASH_SIZES[f"{self.flash_size >> 20}MB"]
        return FLASH_MANUFACTURER | (FLASH_MEMORY_TYPE << 8) | (capacity << 16)

    def describe(self) -> str:
        return f"{self.chip.name} {self.mac.hex(':').upper()} {self.flash_size >> 20}MB flash in {self.flash_file}"


def slip_encode(packet: bytes) -> bytes:
    return b"\xc0" + packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def slip_decode(raw: bytes) -> bytes | None:
    """Undo SLIP escapes; None for an invalid escape."""
    parts = raw.split(b"\xdb")
    out = bytearray(parts[0])
    for part in parts[1:]:
        if part[:1] == b"\xdc":
            out += b"\xc0"
        elif part[:1] == b"\xdd":
            out += b"\xdb"
        else:
            return None
        out += part[1:]
    return bytes(out)


def xor_checksum(data: bytes) -> int:
    """The ROM's block checksum (0xEF XOR every byte), folding the bytes as one big integer."""
    value = int.from_bytes(data, "little")
    width = len(data)
    while width > 1:
        half = (width + 1) // 2
        value = (value & ((1 << (8 * half)) - 1)) ^ (value >> (8 * half))
        width = half
    return CHECKSUM_SEED ^ (value & 0xFF)


class SlipReader:
    """SLIP frames from a socket, read in large chunks (the esptool side reads byte by byte)."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.buffer = bytearray()

    def frame(self) -> bytes | None:
        """The next decoded frame (invalid ones skipped); None at end of stream."""
        while True:
            start = self.buffer.find(b"\xc0")
            if start < 0:
                self.buffer.clear()
            else:
                del self.buffer[:start]
                end = self.buffer.find(b"\xc0", 1)
                if end == 1:
                    del self.buffer[:1]  # empty frame: the second END may open the next frame
                    continue
                if end > 0:
                    raw = bytes(self.buffer[1:end])
                    del self.buffer[: end + 1]
                    decoded = slip_decode(raw)
                    if decoded is not None:
                        return decoded
                    continue
            chunk = self.conn.recv(1 << 16)
            if not chunk:
                return None
            self.buffer += chunk


class FlashStore:
    """The board's flash in its file: verbatim from offset 0, 0xFF past the end of the file."""

    def __init__(self, path: Path, size: int):
        self.size = size
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        os.close(self.fd)

    def _length(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        return data + b"\xff" * (length - len(data))

    def _store(self, offset: int, data: bytes) -> None:
        length = self._length()
        if offset > length:
            os.pwrite(self.fd, b"\xff" * (offset - length), length)
        os.pwrite(self.fd, data, offset)

    def program(self, offset: int, data: bytes) -> None:
        """NOR programming: bits only go from 1 to 0 (writing 0xFF changes nothing)."""
        current = self.read(offset, len(data))
        if current != b"\xff" * len(data):
            merged = int.from_bytes(current, "little") & int.from_bytes(data, "little")
            data = merged.to_bytes(len(data), "little")
        if data != current:
            self._store(offset, data)

    def erase(self, offset: int, length: int) -> None:
        """Erase the 4 KiB sectors that [offset, offset + length) touches."""
        start = offset - offset % SECTOR_SIZE
        end = min(-(-(offset + length) // SECTOR_SIZE) * SECTOR_SIZE, self.size)
        file_length = self._length()
        if end >= file_length:
            if start < file_length:
                os.ftruncate(self.fd, start)
        elif end > start:
            os.pwrite(self.fd, b"\xff" * (end - start), start)

    def md5(self, offset: int, length: int) -> bytes:
        digest = hashlib.md5()
        position, end = offset, offset + length
        while position < end:
            chunk = min(1 << 20, end - position)
            digest.update(self.read(position, chunk))
            position += chunk
        return digest.digest()


class CommandError(Exception):
    """A command that the loader answers with a failure status."""

    def __init__(self, code: int, why: str, stub_code: int | None = None):
        super().__init__(why)
        self.code = code
        self.stub_code = stub_code


@dataclass
class Counters:
    """Totals over a board's connections (tests read them)."""

    connections: int = 0
    bytes_written: int = 0


@dataclass
class FlashWrite:
    """A FLASH_BEGIN or FLASH_DEFL_BEGIN in progress."""

    offset: int
    size: int
    block_size: int
    compressed: bool
    next_seq: int = 0
    written: int = 0  # bytes programmed so far (uncompressed)
    inflater: "zlib._Decompress | None" = None


class Session:
    """One connection: a power-on into download mode, first the ROM loader, maybe then the stub."""

    def __init__(self, board: Board, conn: socket.socket, flash: FlashStore, counters: Counters | None = None):
        self.board = board
        self.counters = counters or Counters()
        self.conn = conn
        self.flash = flash
        self.reader = SlipReader(conn)
        self.registers = dict(board.chip.registers(board.mac))
        self.stub = False
        self.attached = False
        self.baud = ROM_BAUD
        self.halted = False
        self.write: FlashWrite | None = None
        self.bytes_written = 0
        self.handlers = {
            SYNC: self.sync,
            READ_REG: self.read_reg,
            WRITE_REG: self.write_reg,
            GET_SECURITY_INFO: self.security_info,
            SPI_ATTACH: self.spi_attach,
            SPI_SET_PARAMS: self.spi_set_params,
            CHANGE_BAUDRATE: self.change_baudrate,
            FLASH_BEGIN: self.flash_begin,
            FLASH_DATA: self.flash_data,
            FLASH_END: self.flash_end,
            FLASH_DEFL_BEGIN: self.flash_defl_begin,
            FLASH_DEFL_DATA: self.flash_data,
            FLASH_DEFL_END: self.flash_end,
            SPI_FLASH_MD5: self.flash_md5,
            READ_FLASH_SLOW: self.read_flash_slow,
            MEM_BEGIN: self.mem_begin,
            MEM_DATA: self.mem_data,
            MEM_END: self.mem_end,
            ERASE_FLASH: self.erase_flash,
            ERASE_REGION: self.erase_region,
            READ_FLASH: self.read_flash,
            RUN_USER_CODE: self.run_user_code,
        }
        self.stub_only = {ERASE_FLASH, ERASE_REGION, READ_FLASH, RUN_USER_CODE}

    # --- framing ---------------------------------------------------------------------------------

    def send(self, packet: bytes) -> None:
        self.conn.sendall(slip_encode(packet))

    def respond(self, op: int, value: int = 0, data: bytes = b"", copies: int = 1) -> None:
        status = b"\x00\x00" if self.stub else b"\x00\x00\x00\x00"
        body = data + status
        packet = slip_encode(struct.pack("<BBHI", 1, op, len(body), value) + body)
        self.conn.sendall(packet * copies)

    def fail(self, op: int, error: CommandError) -> None:
        LOG.warning("command 0x%02x failed: %s", op, error)
        if self.stub:
            status = bytes([error.stub_code or STUB_ERRORS.get(error.code, STUB_NOT_IMPLEMENTED), 0])
        else:
            status = bytes([1, error.code, 0, 0])
        self.send(struct.pack("<BBHI", 1, op, len(status), 0) + status)

    def unsupported(self, op: int) -> None:
        if self.stub:
            self.fail(op, CommandError(ROM_INVALID_MESSAGE, f"command 0x{op:02x} unknown", STUB_NOT_IMPLEMENTED))
            return
        # "Invalid message" under another opcode, several times over: what esptool's loader.command
        # expects of a ROM that lacks a command (it then raises UnsupportedCommandError, after a
        # 0.2 s drain); its detect_chip expects that from the classic ESP32 for GET_SECURITY_INFO.
        LOG.info("ROM: command 0x%02x not supported", op)
        status = bytes([1, ROM_INVALID_MESSAGE, 0, 0])
        self.conn.sendall(slip_encode(struct.pack("<BBHI", 1, 0, len(status), 0) + status) * 8)

    def run(self) -> None:
        while True:
            frame = self.reader.frame()
            if frame is None:
                return
            if self.halted or len(frame) < 8 or frame[0] != 0:
                continue
            _direction, op, length, checksum = struct.unpack("<BBHI", frame[:8])
            data = frame[8:]
            handler = self.handlers.get(op)
            if handler is None or (op in self.stub_only and not self.stub):
                self.unsupported(op)
                continue
            try:
                if length != len(data):
                    raise CommandError(ROM_INVALID_MESSAGE, f"length field {length}, {len(data)} bytes of data")
                handler(op, data, checksum)
            except CommandError as error:
                self.fail(op, error)

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def params(data: bytes, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if len(data) < size:
            raise CommandError(ROM_INVALID_MESSAGE, f"{len(data)} bytes of parameters, {size} expected")
        return struct.unpack(fmt, data[:size])

    def need_flash(self) -> None:
        if not self.attached:
            raise CommandError(ROM_FAILED_TO_ACT, "SPI flash not attached (SPI_ATTACH first)")

    def check_range(self, offset: int, length: int, code: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.board.flash_size:
            raise CommandError(code, f"0x{offset:x}+0x{length:x} is outside the {self.board.flash_size >> 20}MB flash")

    # --- registers -------------------------------------------------------------------------------

    def sync(self, op: int, data: bytes, _checksum: int) -> None:
        if data[:36] != SYNC_PAYLOAD:
            return
        self.respond(op, 0 if self.stub else ROM_SYNC_VALUE, copies=8)

    def register(self, address: int) -> int:
        if address == self.board.chip.uart_clkdiv_reg:
            return round(XTAL_HZ / max(self.baud, 1)) & 0xFFFFF
        return self.registers.get(address, 0)

    def read_reg(self, op: int, data: bytes, _checksum: int) -> None:
        (address,) = self.params(data, "<I")
        self.respond(op, self.register(address))

    def write_reg(self, op: int, data: bytes, _checksum: int) -> None:
        if not data or len(data) % 16:
            raise CommandError(ROM_INVALID_MESSAGE, "WRITE_REG takes 16-byte (address, value, mask, delay) entries")
        for index in range(0, len(data), 16):
            address, value, mask, _delay = struct.unpack("<IIII", data[index : index + 16])
            self.registers[address] = (self.register(address) & ~mask | value & mask) & 0xFFFFFFFF
            if address == self.board.chip.spi_base and value & mask & SPI_CMD_USR:
                self.run_spi_command()
        self.respond(op)

    def run_spi_command(self) -> None:
        """The SPI controller's user command, as esptool's run_spiflash_command drives it."""
        chip, base = self.board.chip, self.board.chip.spi_base
        command = self.registers.get(base + chip.spi_usr2, 0) & 0xFF
        usr = self.registers.get(base + chip.spi_usr, 0)
        read_bits = (self.registers.get(base + chip.spi_miso_dlen, 0) + 1) if usr & SPI_USR_MISO else 0
        read_bits = min(read_bits, 32)
        mask = (1 << read_bits) - 1
        if not self.attached:
            result = mask  # nothing drives MISO: all ones
        elif command == SPIFLASH_RDID:
            result = self.board.flash_id & mask
        elif command == SPIFLASH_RDSFDP:
            address = self.registers.get(base + 0x04, 0)
            address = address >> 8 if chip.spi_addr_msb else address
            chunk = SFDP[address : address + (read_bits + 7) // 8].ljust((read_bits + 7) // 8, b"\xff")
            result = int.from_bytes(chunk, "little") & mask
        else:
            result = 0  # status registers read as 0; resets and write-enables need no answer
        self.registers[base + chip.spi_w0] = result
        self.registers[base] = 0  # command done

    def security_info(self, op: int, _data: bytes, _checksum: int) -> None:
        chip_id = self.board.chip.security_chip_id
        if chip_id is None:
            self.unsupported(op)
            return
        # flags, flash_crypt_cnt, 7 key purposes, chip id, API version
        self.respond(op, data=struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0, chip_id, 0))

    def spi_attach(self, op: int, data: bytes, _checksum: int) -> None:
        self.params(data, "<I")
        self.attached = True
        self.respond(op)

    def spi_set_params(self, op: int, data: bytes, _checksum: int) -> None:
        self.params(data, "<IIIIII")
        self.respond(op)

    def change_baudrate(self, op: int, data: bytes, _checksum: int) -> None:
        new, _old = self.params(data, "<II")
        self.respond(op)
        self.baud = new or self.baud

    # --- flash writes ----------------------------------------------------------------------------

    def begin(self, op: int, data: bytes, compressed: bool) -> None:
        self.need_flash()
        size, blocks, block_size, offset = self.params(data, "<IIII")
        if len(data) >= 20 and struct.unpack("<I", data[16:20])[0]:
            raise CommandError(ROM_FAILED_TO_ACT, "encrypted writes are not emulated")
        if not 0 < block_size <= MAX_BLOCK:
            raise CommandError(ROM_INVALID_MESSAGE, f"block size {block_size}", 0xC2)
        self.check_range(offset, size, ROM_FLASH_WRITE_ERROR)
        self.flash.erase(offset, size)
        self.write = FlashWrite(
            offset, size, block_size, compressed, inflater=zlib.decompressobj() if compressed else None
        )
        LOG.info(
            "%s write of 0x%x bytes at 0x%x (%d blocks)", "compressed" if compressed else "plain", size, offset, blocks
        )
        self.respond(op)

    def flash_begin(self, op: int, data: bytes, _checksum: int) -> None:
        self.begin(op, data, compressed=False)

    def flash_defl_begin(self, op: int, data: bytes, _checksum: int) -> None:
        self.begin(op, data, compressed=True)

    def flash_data(self, op: int, data: bytes, checksum: int) -> None:
        write = self.write
        if write is None or write.compressed != (op == FLASH_DEFL_DATA):
            raise CommandError(ROM_FAILED_TO_ACT, "no write begun", STUB_NOT_IN_FLASH_MODE)
        length, seq = self.params(data, "<IIII")[:2]
        payload = data[16:]
        if length != len(payload):
            raise CommandError(ROM_INVALID_MESSAGE, f"block says {length} bytes, carries {len(payload)}")
        if xor_checksum(payload) != checksum & 0xFF:
            raise CommandError(ROM_BAD_CHECKSUM, f"block {seq}: bad checksum")
        if seq != write.next_seq:
            raise CommandError(ROM_INVALID_MESSAGE, f"block {seq} out of sequence, {write.next_seq} expected")
        if write.compressed:
            try:
                payload = write.inflater.decompress(payload)
            except zlib.error as exc:
                raise CommandError(ROM_DEFLATE_ERROR, f"inflate: {exc}") from None
        start = write.offset + write.written
        # An uncompressed last block is padded with 0xFF past the region, maybe past the flash's end.
        limit = write.size if write.compressed else self.board.flash_size - write.offset
        room = max(limit - write.written, 0)
        if len(payload) > room and payload[room:] != b"\xff" * (len(payload) - room):
            raise CommandError(ROM_FLASH_WRITE_ERROR, "data past the end of the region", STUB_TOO_MUCH_DATA)
        self.flash.program(start, payload[:room])
        stored = min(len(payload), max(write.size - write.written, 0))
        self.bytes_written += stored
        self.counters.bytes_written += stored
        write.written += len(payload)
        write.next_seq += 1
        self.respond(op)

    def flash_end(self, op: int, data: bytes, _checksum: int) -> None:
        (stay,) = self.params(data, "<I")
        write, self.write = self.write, None
        if self.stub and write is not None and write.compressed and write.written < write.size:
            raise CommandError(ROM_FAILED_TO_ACT, f"{write.size - write.written} bytes missing", STUB_NOT_ENOUGH_DATA)
        self.respond(op)
        if not self.stub:
            LOG.info("ROM: %s; the loader stops answering until the next connection", "run app" if stay else "reboot")
            self.halted = True
        elif not stay:
            LOG.info("stub: reboot into the ROM loader")
            self.stub = False
            self.attached = False
            self.registers = dict(self.board.chip.registers(self.board.mac))

    # --- flash reads -----------------------------------------------------------------------------

    def flash_md5(self, op: int, data: bytes, _checksum: int) -> None:
        self.need_flash()
        offset, length = self.params(data, "<IIII")[:2]
        self.check_range(offset, length, ROM_FLASH_READ_ERROR)
        digest = self.flash.md5(offset, length)
        self.respond(op, data=digest if self.stub else digest.hex().encode())

    def read_flash_slow(self, op: int, data: bytes, _checksum: int) -> None:
        if self.stub:
            self.unsupported(op)
            return
        self.need_flash()
        offset, length = self.params(data, "<II")
        if length > 64:
            raise CommandError(ROM_INVALID_MESSAGE, "READ_FLASH_SLOW reads at most 64 bytes")
        self.check_range(offset, length, ROM_FLASH_READ_ERROR)
        self.respond(op, data=self.flash.read(offset, length).ljust(64, b"\xff"))

    def read_flash(self, op: int, data: bytes, _checksum: int) -> None:
        """Stub READ_FLASH: blocks as bare SLIP frames, at most max_in_flight unacknowledged, then the MD5."""
        offset, length, block_size, in_flight = self.params(data, "<IIII")
        if not 0 < block_size <= MAX_BLOCK or in_flight == 0:
            raise CommandError(ROM_INVALID_MESSAGE, "bad block size or window", 0xC2)
        self.check_range(offset, length, ROM_FLASH_READ_ERROR)
        self.respond(op)
        digest = hashlib.md5()
        sent = acked = 0
        while acked < length:
            while sent < length and sent - acked < block_size * in_flight:
                block = self.flash.read(offset + sent, min(block_size, length - sent))
                digest.update(block)
                self.send(block)
                sent += len(block)
            ack = self.reader.frame()
            if ack is None:
                return
            if len(ack) == 4:
                acked = max(acked, struct.unpack("<I", ack)[0])
        self.send(digest.digest())

    # --- RAM, erase, run -------------------------------------------------------------------------

    def mem_begin(self, op: int, data: bytes, _checksum: int) -> None:
        self.params(data, "<IIII")
        self.respond(op)

    def mem_data(self, op: int, data: bytes, checksum: int) -> None:
        length = self.params(data, "<IIII")[0]
        payload = data[16:]
        if length != len(payload):
            raise CommandError(ROM_INVALID_MESSAGE, f"block says {length} bytes, carries {len(payload)}")
        if xor_checksum(payload) != checksum & 0xFF:
            raise CommandError(ROM_BAD_CHECKSUM, "RAM block: bad checksum")
        self.respond(op)

    def mem_end(self, op: int, data: bytes, _checksum: int) -> None:
        no_entry, entry = self.params(data, "<II")
        self.respond(op)
        if no_entry or self.stub:
            return
        LOG.info("code started at 0x%08x: now the flasher stub", entry)
        self.stub = True
        self.attached = True  # the stub attaches the flash itself
        self.send(b"OHAI")

    def erase_flash(self, op: int, _data: bytes, _checksum: int) -> None:
        self.flash.erase(0, self.board.flash_size)
        self.respond(op)

    def erase_region(self, op: int, data: bytes, _checksum: int) -> None:
        offset, length = self.params(data, "<II")
        if offset % SECTOR_SIZE or length % SECTOR_SIZE:
            raise CommandError(ROM_INVALID_MESSAGE, "erase region not sector aligned")
        self.check_range(offset, length, ROM_FLASH_WRITE_ERROR)
        self.flash.erase(offset, length)
        self.respond(op)

    def run_user_code(self, _op: int, _data: bytes, _checksum: int) -> None:
        self.halted = True


class BoardServer:
    """Serves one board on a TCP port, one connection at a time."""

    def __init__(self, board: Board, host: str = "127.0.0.1", port: int = 0):
        self.board = board
        self.host = host
        self.port = port
        self.listener: socket.socket | None = None
        self.stopping = threading.Event()
        self.busy = threading.Lock()
        self.active: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.sessions: list[threading.Thread] = []
        self.counters = Counters()

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def listen(self) -> int:
        self.board.flash_file.parent.mkdir(parents=True, exist_ok=True)
        FlashStore(self.board.flash_file, self.board.flash_size).close()  # create it, check we may write it
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(4)
        listener.settimeout(ACCEPT_POLL)
        self.listener = listener
        self.port = listener.getsockname()[1]
        LOG.info("listening on %s: %s", self.url, self.board.describe())
        return self.port

    def start(self) -> "BoardServer":
        """Listen and serve in a background thread (tests)."""
        self.listen()
        self.thread = threading.Thread(target=self.serve_forever, name=f"esp32-board-{self.port}", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, peer = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            thread = threading.Thread(target=self.session, args=(conn, peer), daemon=True)
            self.sessions = [t for t in self.sessions if t.is_alive()] + [thread]
            thread.start()
        self.listener.close()

    def session(self, conn: socket.socket, peer) -> None:
        # The previous client may have closed its end a moment ago without this side having read
        # the end of its stream yet: a serial port is free again as soon as its holder closes it.
        if not self.busy.acquire(timeout=BUSY_GRACE):
            LOG.info("connection from %s:%s refused: the port is busy", *peer)
            conn.close()
            return
        started = time.monotonic()
        flash = None
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(IDLE_TIMEOUT)
            self.active = conn
            flash = FlashStore(self.board.flash_file, self.board.flash_size)
            session = Session(self.board, conn, flash, self.counters)
            LOG.info("connection from %s:%s: download mode", *peer)
            self.counters.connections += 1
            try:
                session.run()
            except (OSError, TimeoutError) as exc:
                LOG.info("connection from %s:%s ended: %s", peer[0], peer[1], exc)
            LOG.info(
                "connection from %s:%s closed after %.1f s, %d bytes written",
                peer[0],
                peer[1],
                time.monotonic() - started,
                session.bytes_written,
            )
        except Exception:
            LOG.exception("session failed")
        finally:
            self.active = None
            if flash is not None:
                flash.close()
            conn.close()
            self.busy.release()

    def stop(self) -> None:
        self.stopping.set()
        active = self.active
        if active is not None:
            try:
                active.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.thread is not None:
            self.thread.join(timeout=5)
        for thread in self.sessions:
            thread.join(timeout=5)


def write_pid_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{os.getpid()}\n")
    temporary.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.esp32_board", description=__doc__.split("\n\n", maxsplit=1)[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chip", choices=sorted(CHIPS), required=True)
    parser.add_argument("--mac", required=True, help="base MAC address, e.g. 48:27:E2:E5:91:90")
    parser.add_argument("--flash-size", default="4MB", help=f"one of {', '.join(FLASH_SIZES)}")
    parser.add_argument("--flash-file", required=True, type=Path)
    parser.add_argument("--pid-file", type=Path, help="written once the port listens, removed on exit")
    args = parser.parse_args(argv)
    try:
        board = Board(CHIPS[args.chip], parse_mac(args.mac), parse_flash_size(args.flash_size), args.flash_file)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    server = BoardServer(board, args.host, args.port)
    try:
        server.listen()
    except OSError as exc:
        LOG.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    if args.pid_file:
        write_pid_file(args.pid_file)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stopping.set())
    try:
        server.serve_forever()
    finally:
        server.stop()
        if args.pid_file:
            try:
                if args.pid_file.read_text().strip() == str(os.getpid()):
                    args.pid_file.unlink()
            except OSError:
                pass
        LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
