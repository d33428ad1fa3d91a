"""The sandbox's virtual ESP32 boards: one `python -m sandbox.esp32_board` process per board.

Which boards: the hosts of the inventory group `esp32_boards` that have a `virtual_board`
({chip: esp32|esp32s3, mac, flash_size: 2MB|4MB|8MB|16MB}) and an `esp32_port` of the form
`socket://127.0.0.1:PORT`, read from the inventory that IOTFLEET_SANDBOX_BOARDS names ("none":
no boards). Without that variable, the sandbox of the default state dir (`make demo`) starts the
boards of inventories/local/hosts.yml, and a sandbox with a state dir of its own (tests) starts
none: the inventory's ports belong to the default sandbox.

Per board, in <state dir>/boards/: NAME.pid (written by the board once it listens, removed when it
stops), NAME.log and NAME.flash (its flash; kept by `down`, so a board keeps what was written to
it; delete the file for a blank board).
"""

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from sandbox import procs
from sandbox.esp32_board import CHIPS
from sandbox.esp32_board import parse_flash_size
from sandbox.esp32_board import parse_mac
from sandbox.settings import ROOT
from sandbox.settings import Settings

BOARDS_ENV = "IOTFLEET_SANDBOX_BOARDS"
INVENTORY = ROOT / "inventories" / "local" / "hosts.yml"
DEFAULT_STATE_DIR = ROOT / ".sandbox"
GROUP = "esp32_boards"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
LOG_TAIL_LINES = 20
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
PORT_RE = re.compile(r"^socket://(127\.0\.0\.1|localhost):(\d{1,5})$")


@dataclass(frozen=True)
class VirtualBoard:
    name: str
    port: int
    chip: str  # esp32 | esp32s3
    mac: str
    flash_size: str
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    def describe(self) -> str:
        return f"{CHIPS[self.chip].name} {self.mac}, {self.flash_size} flash"


def boards_dir(settings: Settings) -> Path:
    return settings.state_dir / "boards"


def pid_file(settings: Settings, name: str) -> Path:
    return boards_dir(settings) / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return boards_dir(settings) / f"{name}.log"


def flash_file(settings: Settings, name: str) -> Path:
    return boards_dir(settings) / f"{name}.flash"


def _group_hosts(tree) -> dict:
    """host -> vars (the group's `vars:` under each host's own) of the group, wherever it is nested."""
    if not isinstance(tree, dict):
        return {}
    found = {}
    for name, group in tree.items():
        if not isinstance(group, dict):
            continue
        if name == GROUP:
            group_vars = group.get("vars") or {}
            for host, host_vars in (group.get("hosts") or {}).items():
                found[str(host)] = {**group_vars, **(host_vars or {})}
        found.update(_group_hosts(group.get("children")))
    return found


def board_from_host(name: str, host_vars: dict) -> VirtualBoard | None:
    """The virtual board a host describes; None if it is not virtual; ValueError if it is described wrongly."""
    spec = host_vars.get("virtual_board")
    if spec is None:
        return None
    where = f"{GROUP} host {name!r}"
    if not NAME_RE.match(name):
        raise ValueError(f"{where}: a virtual board's name may only hold letters, digits, '.', '_' and '-'")
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: virtual_board must be a mapping {{chip, mac, flash_size}}")
    match = PORT_RE.match(str(host_vars.get("esp32_port", "")))
    if not match:
        raise ValueError(f"{where}: a virtual board needs esp32_port: socket://127.0.0.1:PORT")
    chip = str(spec.get("chip", "")).lower()
    if chip not in CHIPS:
        raise ValueError(f"{where}: virtual_board.chip must be one of {', '.join(sorted(CHIPS))}")
    try:
        mac = parse_mac(str(spec.get("mac", ""))).hex(":").upper()
        flash_size = str(spec.get("flash_size", "4MB")).upper()
        parse_flash_size(flash_size)
    except ValueError as exc:
        raise ValueError(f"{where}: virtual_board: {exc}") from None
    return VirtualBoard(name=name, port=int(match.group(2)), chip=chip, mac=mac, flash_size=flash_size)


def read_inventory(path: Path) -> list[VirtualBoard]:
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the boards' inventory {path}: {exc}") from None
    boards = [board_from_host(name, host_vars) for name, host_vars in _group_hosts(tree).items()]
    boards = [board for board in boards if board is not None]
    ports = [board.port for board in boards]
    for board in boards:
        if ports.count(board.port) > 1:
            raise ValueError(f"{path}: two virtual boards on port {board.port}")
    return boards


def configured_boards(settings: Settings) -> list[VirtualBoard]:
    source = os.environ.get(BOARDS_ENV)
    if source is None:
        source = str(INVENTORY) if settings.state_dir == DEFAULT_STATE_DIR.resolve() else "none"
    if source.strip().lower() in ("", "none"):
        return []
    return read_inventory(Path(source))


def command(settings: Settings, board: VirtualBoard) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sandbox.esp32_board",
        "--host",
        board.host,
        "--port",
        str(board.port),
        "--chip",
        board.chip,
        "--mac",
        board.mac,
        "--flash-size",
        board.flash_size,
        "--flash-file",
        str(flash_file(settings, board.name)),
        "--pid-file",
        str(pid_file(settings, board.name)),
    ]


def running_pid(settings: Settings, name: str) -> int | None:
    """The board's pid if its pid file names a live board process of this state dir, else None."""
    path = pid_file(settings, name)
    return procs.running_pid(path, "sandbox.esp32_board", str(path), unreadable=False)


def _stop(pid: int) -> None:
    procs.stop(pid, STOP_TIMEOUT, kill_wait=2.0, poll=0.05)


def _log_tail(settings: Settings, name: str) -> str:
    return procs.log_tail(log_file(settings, name), LOG_TAIL_LINES)


def _start(settings: Settings, board: VirtualBoard) -> int:
    """Start the board detached; return its pid once it listens, or raise RuntimeError saying why."""
    pid_path = pid_file(settings, board.name)
    pid_path.unlink(missing_ok=True)
    process = procs.spawn(command(settings, board), log_file(settings, board.name), note=f"starting on {board.url}")
    if procs.wait_ready(process, lambda: procs.read_pid(pid_path) == process.pid, START_TIMEOUT, poll=0.05):
        return process.pid
    if process.returncode is not None:
        raise RuntimeError(f"it exited with code {process.returncode}")
    _stop(process.pid)
    raise RuntimeError(f"it did not listen on {board.url} within {START_TIMEOUT:.0f} s")


def _up_one(settings: Settings, board: VirtualBoard) -> int:
    pid = running_pid(settings, board.name)
    if pid is not None:
        if (procs.cmdline(pid) or [])[1:] == command(settings, board)[1:]:
            print(f"board {board.name} already running (pid {pid}) at {board.url}")
            return 0
        print(f"board {board.name}: its settings changed; restarting it (its flash is kept)")
        _stop(pid)
    try:
        pid = _start(settings, board)
    except RuntimeError as exc:
        print(
            f"board {board.name} failed to start: {exc}\n"
            f"--- last lines of {log_file(settings, board.name)}:\n{_log_tail(settings, board.name)}",
            file=sys.stderr,
        )
        return 1
    print(f"board {board.name} started (pid {pid}) at {board.url}: {board.describe()}")
    return 0


def _pid_file_names(settings: Settings) -> list[str]:
    folder = boards_dir(settings)
    return sorted(path.stem for path in folder.glob("*.pid")) if folder.is_dir() else []


def _stop_board(settings: Settings, name: str, why: str = "") -> None:
    pid = running_pid(settings, name)
    if procs.take_down(pid_file(settings, name), pid, _stop):
        print(f"board {name} stopped (pid {pid}){why}")


def up(settings: Settings, boards: list[VirtualBoard] | None = None) -> int:
    """Start the boards that are not running; stop those of this state dir that are no longer listed."""
    try:
        boards = configured_boards(settings) if boards is None else boards
    except ValueError as exc:
        print(f"boards not started: {exc}", file=sys.stderr)
        return 1
    boards_dir(settings).mkdir(mode=0o700, parents=True, exist_ok=True)
    listed = {board.name for board in boards}
    for name in _pid_file_names(settings):
        if name not in listed:
            _stop_board(settings, name, why=": no longer in the boards' inventory")
    return max([_up_one(settings, board) for board in boards], default=0)


def down(settings: Settings) -> None:
    """Stop every board this state dir started (their flash files stay)."""
    for name in _pid_file_names(settings):
        _stop_board(settings, name)


def status_lines(settings: Settings, boards: list[VirtualBoard] | None = None) -> tuple[list[str], int]:
    """One line per board (listed or running); code 3 when a listed board is not running."""
    try:
        boards = configured_boards(settings) if boards is None else boards
    except ValueError as exc:
        return [f"boards: {exc}"], 3
    lines, code = [], 0
    for board in boards:
        pid = running_pid(settings, board.name)
        if pid is None:
            lines.append(f"board {board.name} not running ({board.url}: {board.describe()})")
            code = 3
        else:
            lines.append(f"board {board.name} running (pid {pid}) at {board.url}: {board.describe()}")
    listed = {board.name for board in boards}
    for name in _pid_file_names(settings):
        pid = running_pid(settings, name)
        if name not in listed and pid is not None:
            lines.append(f"board {name} running (pid {pid}), not in the boards' inventory")
    return lines, code
