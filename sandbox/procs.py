"""Process helpers shared by the sandbox's services (moto, the GraphQL simulator, boards, broker...)."""

import contextlib
import os
import signal
import subprocess
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

from sandbox.settings import ROOT


def is_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as gone (and our own child is reaped on the way)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie still answers kill(0) but is gone for our purposes.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stop(pid: int, timeout: float = 10.0, kill_wait: float = 5.0, poll: float = 0.1) -> None:
    """SIGTERM, wait up to `timeout` s, then SIGKILL and wait `kill_wait` s; RuntimeError if it lives on."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for wait in (timeout, kill_wait):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_alive(pid):
                return
            time.sleep(poll)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    raise RuntimeError(f"process {pid} did not stop")


def read_pid(path: Path) -> int | None:
    """The pid a pid file names; None when it is missing or holds no number."""
    try:
        return int(Path(path).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def cmdline(pid: int) -> list[str] | None:
    """The process's arguments from /proc/<pid>/cmdline; None when they cannot be read (no /proc)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return None


def is_ours(pid: int, *markers: str, unreadable: bool = True) -> bool:
    """True if `pid` runs with every marker among its arguments (a stale pid file may name another process).

    When its command line cannot be read the answer is `unreadable` (True: trust the pid file).
    """
    if not is_alive(pid):
        return False
    args = cmdline(pid)
    if args is None:
        return unreadable
    return all(marker in args for marker in markers)


def running_pid(pid_file: Path, *markers: str, unreadable: bool = True) -> int | None:
    """The pid `pid_file` names if that process lives and is ours (see is_ours), else None."""
    pid = read_pid(pid_file)
    return pid if pid is not None and is_ours(pid, *markers, unreadable=unreadable) else None


def log_line(log_file: Path, text: str) -> None:
    """Append `--- <UTC time> <text>` to a service's log."""
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"--- {datetime.now(UTC).isoformat()} {text}\n")


def log_tail(log_file: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(log_file).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def spawn(
    command: list[str],
    log_file: Path,
    pid_file: Path | None = None,
    note: str = "starting",
    env: dict | None = None,
    cwd: Path = ROOT,
) -> subprocess.Popen:
    """Start `command` detached (own session, no stdin, output to `log_file` after a `--- <time> <note>` line).

    Its pid goes to `pid_file` when given (else the process writes its own).
    """
    log_line(log_file, note)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survive the shell that ran `up`, and its Ctrl-C
        )
    if pid_file is not None:
        Path(pid_file).write_text(f"{process.pid}\n")
    return process


def wait_ready(process: subprocess.Popen, ready, timeout: float, poll: float = 0.2) -> bool:
    """Poll `ready()` until it holds (True), `timeout` s pass or the process exits (False).

    After False, `process.returncode` is None on a timeout and the exit code when it exited.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(poll)
    return False


def take_down(pid_file: Path, pid: int | None, halt=stop) -> bool:
    """Stop `pid` with `halt` (unless None) and remove the pid file; True if there was a process to stop."""
    if pid is not None:
        halt(pid)
    Path(pid_file).unlink(missing_ok=True)
    return pid is not None
