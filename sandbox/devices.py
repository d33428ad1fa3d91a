"""Virtual devices: the real firmware (firmware/app) on CPython, one per flashed virtual board.

A virtual board (sandbox/esp32_board.py) only emulates the ROM loader: it keeps what esptool wrote
in `<state dir>/boards/<name>.flash` and runs nothing. This module is the other half. For every
board whose flash holds a filesystem image, it finds the filesystem the way MicroPython does (the
partition table at 0x8000 of the flashed base image; the `vfs` partition, or from the end of the
last partition to the end of flash), mounts the LittleFS image, extracts its files into a private
0700 folder, and runs `firmware.app.device.Device` on them with `hw.HostPlatform`: only Wi-Fi, the
sensor, the watchdog and the filesystem are shimmed, so the device connects with exactly the
endpoint, port, certificate, key and root CA that the fleet rollout flashed.

Two ways to run them:
- `up(settings)` / `down(settings)` / `status_line(settings)`: every flashed board of the
  configured inventory (esp32_boards.configured_boards) in one background process
  (`python -m sandbox.devices run ...`; pid `devices.pid`, log `devices.log`, a status snapshot
  `devices.json`, the extracted files in `devices/` of the state dir, removed when it stops).
  From the command line: `python -m sandbox devices up|down|status`.
- `running_device(settings, board, sensor=...)`: one board's firmware in a thread of the caller
  (tests), with an overridable sensor; `thing_names(settings, boards)` tells each board's thing.

The sensor shim (`DriftingSensor`) gives plausible readings that drift: a random walk around a
room's 21 °C / 45 %RH, pulled back towards them, different per board.
"""

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path

from sandbox import control
from sandbox import esp32_boards
from sandbox import procs
from sandbox.esp32_board import parse_flash_size
from sandbox.esp32_boards import VirtualBoard
from sandbox.settings import Settings
from sandbox.settings import load_settings

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
SNAPSHOT_SECONDS = 1.0
LOG_TAIL_LINES = 20


class NotFlashed(Exception):
    """The board's flash holds no firmware with a filesystem image (yet); the message says what is missing."""


# -- where things live ------------------------------------------------------------------------------


def pid_file(settings: Settings) -> Path:
    return settings.state_dir / "devices.pid"


def log_file(settings: Settings) -> Path:
    return settings.state_dir / "devices.log"


def snapshot_file(settings: Settings) -> Path:
    return settings.state_dir / "devices.json"


def files_dir(settings: Settings) -> Path:
    """Parent of each running device's private folder (its extracted filesystem, key included)."""
    return settings.state_dir / "devices"


# -- reading a board's flash ------------------------------------------------------------------------


@dataclass(frozen=True)
class FlashedFilesystem:
    image: bytes  # the filesystem partition's bytes
    offset: int
    size: int
    files: dict  # {"/config.json": bytes, ...}

    @property
    def config(self) -> dict:
        return json.loads(self.files["/config.json"])

    @property
    def thing(self) -> str:
        return self.config["thing_name"]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()


def read_filesystem(flash: bytes, chip: str, flash_size: str) -> FlashedFilesystem:
    """The flashed filesystem of a board's flash contents (from offset 0); NotFlashed if there is none.

    The layout comes from the flashed base image's own partition table, as on the board
    (firmware/layout.py); bytes past the end of `flash` read as 0xFF, as the virtual board's do.
    """
    from firmware import fsimage
    from firmware import layout

    offset = layout.image_offset(chip)
    image = flash[offset:]
    if not image or image[0] != layout.IMAGE_MAGIC:
        raise NotFlashed("no firmware image at the bootloader offset (blank board?)")
    try:
        partitions = layout.read_partition_table(image, chip)
        data = [p for p in partitions if p.type == layout.TYPE_DATA]
        labelled = [p for label in layout.FS_LABELS for p in data if p.label == label]
        fs_start = labelled[0].offset if labelled else max(p.end for p in partitions)
        # Only the image up to the filesystem: whatever follows it is the filesystem, not the image.
        fs = layout.flash_layout(image[: fs_start - offset], chip, parse_flash_size(flash_size))["filesystem"]
    except (layout.LayoutError, ValueError) as exc:
        raise NotFlashed(f"no usable partition table: {exc}") from None
    region = flash[fs["offset"] : fs["offset"] + fs["size"]]
    region += b"\xff" * (fs["size"] - len(region))
    if region.count(0xFF) == len(region):
        raise NotFlashed("the filesystem partition is blank (no credentials image flashed)")
    try:
        files = fsimage.read_image(region)
    except fsimage.FsImageError as exc:
        raise NotFlashed(f"the filesystem partition does not mount: {exc}") from None
    if "/config.json" not in files:
        raise NotFlashed("the filesystem has no /config.json")
    return FlashedFilesystem(image=region, offset=fs["offset"], size=fs["size"], files=files)


def board_filesystem(settings: Settings, board: VirtualBoard) -> FlashedFilesystem:
    path = esp32_boards.flash_file(settings, board.name)
    try:
        flash = path.read_bytes()
    except FileNotFoundError:
        raise NotFlashed(f"no flash file {path}") from None
    return read_filesystem(flash, board.chip, board.flash_size)


def thing_name(settings: Settings, board: VirtualBoard) -> str:
    """The thing name the board was flashed with (its /config.json); NotFlashed if it was not."""
    return board_filesystem(settings, board).thing


def thing_names(settings: Settings, boards: list[VirtualBoard] | None = None) -> dict:
    """{board name: thing name} of the flashed boards (the configured boards by default)."""
    boards = esp32_boards.configured_boards(settings) if boards is None else boards
    names = {}
    for board in boards:
        with contextlib.suppress(NotFlashed):
            names[board.name] = thing_name(settings, board)
    return names


# -- the sensor shim --------------------------------------------------------------------------------


class DriftingSensor:
    """Plausible readings that drift: a random walk pulled back towards 21 °C and 45 %RH.

    Seeded per board (its name), so two boards differ and a restart continues alike. Returns
    (temperature °C, humidity %RH), rounded to tenths as a DHT22 reports them.
    """

    def __init__(self, seed: str = "", temperature: float = 21.0, humidity: float = 45.0):
        self._rand = random.Random(seed)
        self.center = (temperature, humidity)
        self.temperature = temperature + self._rand.uniform(-2.0, 2.0)
        self.humidity = humidity + self._rand.uniform(-8.0, 8.0)
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.temperature += 0.1 * (self.center[0] - self.temperature) + self._rand.gauss(0, 0.15)
            self.humidity += 0.1 * (self.center[1] - self.humidity) + self._rand.gauss(0, 0.6)
            self.humidity = min(95.0, max(5.0, self.humidity))
            return round(self.temperature, 1), round(self.humidity, 1)


# -- one device -------------------------------------------------------------------------------------


class VirtualDevice:
    """One board's firmware: its extracted files, the Device, the thread that runs it, what it logged."""

    def __init__(self, board, filesystem, root, sensor=None, log=None, connect_to=None):
        from firmware.app import device as app
        from firmware.app import hw
        from firmware.app import settings as app_settings

        self.board = board
        self.filesystem = filesystem
        self.root = Path(root)
        self.thing = filesystem.thing
        self.sensor = sensor if sensor is not None else DriftingSensor(board.name)
        self.logs = []
        self.connected = False
        self._changed = threading.Condition()
        self._extra_log = log
        self.platform = hw.HostPlatform(self.root, sensor=self._read_sensor, log=self._log, connect_to=connect_to)
        self.device = app.Device(app_settings.load(self.platform), self.platform)
        self.thread = threading.Thread(target=self._run, name=f"device-{board.name}", daemon=True)

    @property
    def config(self) -> dict:
        return self.device.config

    def _read_sensor(self):
        return self.sensor()

    def _log(self, message):
        with self._changed:
            if message.startswith("connected to "):
                self.connected = True
            elif message.startswith("session ended"):
                self.connected = False
            self.logs.append(message)
            self._changed.notify_all()
        if self._extra_log is not None:
            self._extra_log(self, message)

    def _run(self):
        try:
            self.device.run()
        finally:
            with self._changed:
                self.connected = False
                self._changed.notify_all()

    def start(self):
        self.thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the loop (it ends within a second, or once a connect attempt times out); True if it ended."""
        self.device.stop()
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until predicate(self) holds (checked on every log line and at least every 0.2 s)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.2))
        return True

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda dev: dev.connected, timeout)

    def snapshot(self) -> dict:
        error = self.device.last_error
        return {
            "thing": self.thing,
            "connected": self.connected,
            "connects": self.device.connects,
            "published": self.device.published,
            "skipped": self.device.skipped,
            "interval": self.device.interval,
            "last_error": f"{type(error).__name__}: {error}" if error is not None else None,
            "last_log": self.logs[-1] if self.logs else None,
        }


def _private_dir(parent: Path | None, name: str) -> Path:
    if parent is not None:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))  # mkdtemp: mode 0700


@contextlib.contextmanager
def running_device(settings: Settings, board: VirtualBoard, sensor=None, log=None, connect_to=None, start=True):
    """Run one board's flashed firmware in a thread of this process for the `with` block.

    Yields a VirtualDevice (`.thing`, `.device` (the firmware's Device), `.logs`, `.connected`,
    `.wait_connected()`, `.wait_for()`, `.stop()`). `sensor` is a callable returning (°C, %RH) or
    raising; default DriftingSensor. `log(vdev, message)` also receives the firmware's log lines.
    `start=False` leaves starting it (`.start()`) to the caller. NotFlashed if the board has no
    filesystem image. The extracted files (the private key among them) are removed on exit.
    """
    filesystem = board_filesystem(settings, board)
    from firmware import fsimage

    root = _private_dir(None, f"iotfleet-device-{board.name}")
    try:
        fsimage.extract_image(filesystem.image, root)
        vdev = VirtualDevice(board, filesystem, root, sensor=sensor, log=log, connect_to=connect_to)
        if start:
            vdev.start()
        try:
            yield vdev
        finally:
            vdev.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- all boards in one background process ----------------------------------------------------------


def _board_arg(board: VirtualBoard) -> str:
    return json.dumps(asdict(board), sort_keys=True, separators=(",", ":"))


def command(settings: Settings, boards: list[VirtualBoard], fingerprint: str) -> list[str]:
    args = [sys.executable, "-m", "sandbox.devices", "run", "--state-dir", str(settings.state_dir)]
    args += ["--pid-file", str(pid_file(settings)), "--fingerprint", fingerprint]
    for board in boards:
        args += ["--board", _board_arg(board)]
    return args


def running_pid(settings: Settings) -> int | None:
    """The runner's pid if the pid file names a live device runner of this state dir, else None."""
    return procs.running_pid(pid_file(settings), "sandbox.devices", str(pid_file(settings)), unreadable=False)


def _stop(pid: int) -> None:
    procs.stop(pid, STOP_TIMEOUT, kill_wait=2.0, poll=0.05)


def _log_tail(settings: Settings) -> str:
    return procs.log_tail(log_file(settings), LOG_TAIL_LINES)


def flashed_boards(settings: Settings, boards: list[VirtualBoard], report=print) -> list[tuple]:
    """[(board, FlashedFilesystem)] of the boards that hold a filesystem image; the others are reported."""
    found = []
    for board in boards:
        try:
            found.append((board, board_filesystem(settings, board)))
        except NotFlashed as exc:
            report(f"device {board.name}: not started, {exc}")
    return found


def _start(settings: Settings, boards: list[VirtualBoard], fingerprint: str) -> int:
    pid_path = pid_file(settings)
    pid_path.unlink(missing_ok=True)
    note = f"starting {len(boards)} device(s)"
    process = procs.spawn(command(settings, boards, fingerprint), log_file(settings), note=note)
    if procs.wait_ready(process, lambda: procs.read_pid(pid_path) == process.pid, START_TIMEOUT, poll=0.05):
        return process.pid
    if process.returncode is not None:
        raise RuntimeError(f"it exited with code {process.returncode}")
    _stop(process.pid)
    raise RuntimeError(f"it did not start within {START_TIMEOUT:.0f} s")


def up(settings: Settings, boards: list[VirtualBoard] | None = None) -> int:
    """Run the firmware of every flashed board in one background process.

    No-op while it already runs the same boards with the same filesystems; restarted when a board
    was re-flashed (a rotated certificate) or the list changed. 0 also when no board is flashed (said so).
    """
    with control.locked(settings):
        try:
            boards = esp32_boards.configured_boards(settings) if boards is None else boards
        except ValueError as exc:
            print(f"devices not started: {exc}", file=sys.stderr)
            return 1
        flashed = flashed_boards(settings, boards)
        digest = hashlib.sha256()
        for board, filesystem in flashed:
            digest.update(f"{_board_arg(board)} {filesystem.sha256}\n".encode())
        fingerprint = digest.hexdigest()[:16]
        wanted = [board for board, _filesystem in flashed]
        pid = running_pid(settings)
        if pid is not None:
            if (procs.cmdline(pid) or [])[1:] == command(settings, wanted, fingerprint)[1:]:
                print(f"devices already running (pid {pid}): {_names(flashed)}")
                return 0
            print("devices: the flashed boards changed; restarting them")
            _stop(pid)
            pid_file(settings).unlink(missing_ok=True)
        if not flashed:
            print("devices: no flashed board to run (flash them with site.yml or fleet.yml first)")
            return 0
        try:
            pid = _start(settings, wanted, fingerprint)
        except RuntimeError as exc:
            print(
                f"devices failed to start: {exc}\n--- last lines of {log_file(settings)}:\n{_log_tail(settings)}",
                file=sys.stderr,
            )
            return 1
        print(f"devices started (pid {pid}): {_names(flashed)}; log {log_file(settings)}")
        return 0


def _names(flashed) -> str:
    return ", ".join(f"{board.name} as {filesystem.thing}" for board, filesystem in flashed)


def down(settings: Settings) -> None:
    """Stop the device runner of this state dir (no-op if none runs) and remove its extracted files."""
    pid = running_pid(settings)
    if procs.take_down(pid_file(settings), pid, _stop):
        print(f"devices stopped (pid {pid})")
    shutil.rmtree(files_dir(settings), ignore_errors=True)  # left behind only by a killed runner


def read_snapshot(settings: Settings) -> dict:
    try:
        return json.loads(snapshot_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def status_line(settings: Settings) -> str:
    pid = running_pid(settings)
    if pid is None:
        return "devices not running"
    snapshot = read_snapshot(settings)
    if snapshot.get("pid") != pid:
        return f"devices starting (pid {pid})"
    parts = []
    for name, dev in sorted(snapshot.get("devices", {}).items()):
        state = "connected" if dev["connected"] else "not connected"
        text = f"{name} as {dev['thing']} {state}, {dev['published']} published"
        if not dev["connected"] and dev.get("last_error"):
            text += f" ({dev['last_error']})"
        parts.append(text)
    return f"devices running (pid {pid}): " + "; ".join(parts)


def _write_snapshot(settings: Settings, devices: list[VirtualDevice]) -> None:
    snapshot = {
        "pid": os.getpid(),
        "time": datetime.now(UTC).isoformat(),
        "devices": {vdev.board.name: vdev.snapshot() for vdev in devices},
    }
    path = snapshot_file(settings)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(snapshot, indent=1))
    temporary.replace(path)


def serve(settings: Settings, boards: list[VirtualBoard], pid_path: Path) -> int:
    """The runner process: every board's firmware in a thread, until SIGTERM or SIGINT."""
    from firmware import fsimage

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stop.set())
    output_lock = threading.Lock()

    def log(vdev, message):
        with output_lock:
            stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
            print(f"{stamp} {vdev.board.name} {vdev.thing}: {message}", flush=True)

    devices = []
    try:
        for board, filesystem in flashed_boards(settings, boards):
            root = _private_dir(files_dir(settings), board.name)
            fsimage.extract_image(filesystem.image, root)
            devices.append(VirtualDevice(board, filesystem, root, log=log))
        for vdev in devices:
            print(f"{vdev.board.name}: thing {vdev.thing}, endpoint {vdev.config['endpoint']}:{vdev.config['port']}")
            vdev.start()
        pid_path.write_text(f"{os.getpid()}\n")
        print(f"running {len(devices)} device(s), pid {os.getpid()}", flush=True)
        while not stop.is_set():
            _write_snapshot(settings, devices)
            stop.wait(SNAPSHOT_SECONDS)
    finally:
        for vdev in devices:
            vdev.device.stop()
        deadline = time.monotonic() + 3.0
        for vdev in devices:
            vdev.thread.join(max(0.0, deadline - time.monotonic()))
        for vdev in devices:
            shutil.rmtree(vdev.root, ignore_errors=True)
        snapshot_file(settings).unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(pid_path.read_text().strip()) == os.getpid():
                pid_path.unlink()
        print("stopped", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.devices", description=__doc__.split("\n\n", maxsplit=1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the runner process (started by `python -m sandbox devices up`)")
    run.add_argument("--state-dir", required=True)
    run.add_argument("--pid-file", required=True)
    run.add_argument("--fingerprint", default="", help="identifies the flashed filesystems it was started for")
    run.add_argument("--board", action="append", default=[], help="a VirtualBoard as JSON")
    args = parser.parse_args(argv)
    settings = load_settings(state_dir=args.state_dir)
    boards = [VirtualBoard(**json.loads(text)) for text in args.board]
    return serve(settings, boards, Path(args.pid_file))


if __name__ == "__main__":
    sys.exit(main())
