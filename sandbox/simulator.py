"""The AppSync simulator process: `node sandbox/appsync/server.js`, the sandbox's GraphQL endpoint.

`up` starts it after moto (detached, own session, pid file `appsync.pid`, log `appsync.log`,
health check on its GET /iotfleet-sandbox/health), running `npm ci` in sandbox/appsync first if
node_modules is missing. Without node or npm it is left out with a note: the rest of the sandbox
works without it. `down` stops it.
"""

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC
from datetime import datetime
from pathlib import Path

from sandbox.procs import is_alive
from sandbox.procs import stop
from sandbox.settings import HEALTH_PATH
from sandbox.settings import ROOT
from sandbox.settings import Settings

APPSYNC_DIR = ROOT / "sandbox" / "appsync"
SERVER_JS = APPSYNC_DIR / "server.js"
INSTALLED_MARKER = APPSYNC_DIR / "node_modules" / "@aws-amplify" / "amplify-appsync-simulator" / "package.json"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
NPM_TIMEOUT = 900


def pid_file(settings: Settings) -> Path:
    return settings.state_dir / "appsync.pid"


def log_file(settings: Settings) -> Path:
    return settings.state_dir / "appsync.log"


def graphql_url(settings: Settings) -> str:
    return f"{settings.appsync_endpoint}/graphql"


def _read_pid(settings: Settings) -> int | None:
    try:
        return int(pid_file(settings).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_simulator_process(pid: int, settings: Settings) -> bool:
    """True if `pid` is our server.js on this port (a stale pid file may name another process now)."""
    if not is_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return str(SERVER_JS).encode() in args and str(settings.appsync_port).encode() in args


def running_pid(settings: Settings) -> int | None:
    pid = _read_pid(settings)
    return pid if pid is not None and is_simulator_process(pid, settings) else None


def health(settings: Settings, timeout: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(settings.appsync_endpoint + HEALTH_PATH, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def is_healthy(settings: Settings, pid: int) -> bool:
    answer = health(settings)
    return bool(answer) and answer.get("pid") == pid


def _log_line(settings: Settings, text: str) -> None:
    with open(log_file(settings), "a", encoding="utf-8") as log:
        log.write(f"--- {datetime.now(UTC).isoformat()} {text}\n")


def ensure_installed(settings: Settings) -> str | None:
    """None when the simulator can run (after `npm ci` if node_modules is missing); else why not."""
    if INSTALLED_MARKER.is_file():
        return None if shutil.which("node") else "node is not on PATH"
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "node and npm are needed (sandbox/appsync/node_modules is not installed)"
    print("installing the AppSync simulator: npm ci in sandbox/appsync (once) ...", flush=True)
    _log_line(settings, "npm ci")
    with open(log_file(settings), "ab") as log:
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=APPSYNC_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"npm ci did not finish within {NPM_TIMEOUT} s; see {log_file(settings)}"
    if result.returncode != 0 or not INSTALLED_MARKER.is_file():
        return f"npm ci failed (exit {result.returncode}); see {log_file(settings)}"
    return None


def _stop(pid: int) -> None:
    stop(pid, STOP_TIMEOUT)


def _start(settings: Settings) -> int:
    command = [
        shutil.which("node") or "node",
        str(SERVER_JS),
        "--port",
        str(settings.appsync_port),
        "--host",
        settings.host,
        "--sandbox",
        settings.endpoint,
    ]
    _log_line(settings, f"starting on {graphql_url(settings)}")
    with open(log_file(settings), "ab") as log:
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            command,
            cwd=APPSYNC_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file(settings).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file(settings).unlink(missing_ok=True)
            raise RuntimeError(f"the AppSync simulator exited with code {process.returncode}")
        if is_healthy(settings, process.pid):
            return process.pid
        time.sleep(0.2)
    _stop(process.pid)
    pid_file(settings).unlink(missing_ok=True)
    raise RuntimeError(
        f"the AppSync simulator did not answer on {settings.appsync_endpoint} within {START_TIMEOUT:.0f} s"
    )


def _tail(settings: Settings, lines: int = 30) -> str:
    try:
        return "\n".join(log_file(settings).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def up(settings: Settings) -> int:
    """Start the simulator unless it runs; 0 also when node is missing (then it is left out), 1 if it fails."""
    pid = running_pid(settings)
    if pid is not None and is_healthy(settings, pid):
        print(f"appsync simulator already running (pid {pid}) at {graphql_url(settings)}")
        return 0
    if pid is not None:
        _stop(pid)
    pid_file(settings).unlink(missing_ok=True)
    reason = ensure_installed(settings)
    if reason:
        print(f"appsync simulator not started: {reason}")
        return 0
    try:
        pid = _start(settings)
    except RuntimeError as exc:
        tail = _tail(settings)
        print(
            f"appsync simulator failed to start: {exc}\n--- last lines of {log_file(settings)}:\n{tail}",
            file=sys.stderr,
        )
        return 1
    print(f"appsync simulator started (pid {pid}) at {graphql_url(settings)}")
    return 0


def down(settings: Settings) -> None:
    pid = _read_pid(settings)
    if pid is None:
        return
    if is_simulator_process(pid, settings):
        _stop(pid)
        print(f"appsync simulator stopped (pid {pid})")
    pid_file(settings).unlink(missing_ok=True)


def status_line(settings: Settings) -> str:
    pid = running_pid(settings)
    if pid is None:
        return "appsync simulator not running"
    answer = health(settings)
    if not answer or answer.get("pid") != pid:
        return f"appsync simulator process {pid} is alive but does not answer; see {log_file(settings)}"
    served = f"serving API {answer['apiId']}" if answer.get("apiId") else "no API loaded"
    problem = f" ({answer['error']})" if answer.get("error") else ""
    return f"appsync simulator running (pid {pid}) at {graphql_url(settings)}, {served}{problem}"
