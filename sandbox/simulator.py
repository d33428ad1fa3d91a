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
import urllib.request
from pathlib import Path

from sandbox import procs
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


def is_simulator_process(pid: int, settings: Settings) -> bool:
    """True if `pid` is our server.js on this port (a stale pid file may name another process now)."""
    return procs.is_ours(pid, str(SERVER_JS), str(settings.appsync_port))


def running_pid(settings: Settings) -> int | None:
    return procs.running_pid(pid_file(settings), str(SERVER_JS), str(settings.appsync_port))


def health(settings: Settings, timeout: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(settings.appsync_endpoint + HEALTH_PATH, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def is_healthy(settings: Settings, pid: int) -> bool:
    answer = health(settings)
    return bool(answer) and answer.get("pid") == pid


def ensure_installed(settings: Settings) -> str | None:
    """None when the simulator can run (after `npm ci` if node_modules is missing); else why not."""
    if INSTALLED_MARKER.is_file():
        return None if shutil.which("node") else "node is not on PATH"
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return "node and npm are needed (sandbox/appsync/node_modules is not installed)"
    print("installing the AppSync simulator: npm ci in sandbox/appsync (once) ...", flush=True)
    procs.log_line(log_file(settings), "npm ci")
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
    procs.stop(pid, STOP_TIMEOUT)


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
    note = f"starting on {graphql_url(settings)}"
    process = procs.spawn(command, log_file(settings), pid_file(settings), note, cwd=APPSYNC_DIR)
    if procs.wait_ready(process, lambda: is_healthy(settings, process.pid), START_TIMEOUT):
        return process.pid
    if process.returncode is not None:
        pid_file(settings).unlink(missing_ok=True)
        raise RuntimeError(f"the AppSync simulator exited with code {process.returncode}")
    procs.take_down(pid_file(settings), process.pid, _stop)
    raise RuntimeError(
        f"the AppSync simulator did not answer on {settings.appsync_endpoint} within {START_TIMEOUT:.0f} s"
    )


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
        tail = procs.log_tail(log_file(settings))
        print(
            f"appsync simulator failed to start: {exc}\n--- last lines of {log_file(settings)}:\n{tail}",
            file=sys.stderr,
        )
        return 1
    print(f"appsync simulator started (pid {pid}) at {graphql_url(settings)}")
    return 0


def down(settings: Settings) -> None:
    pid = procs.read_pid(pid_file(settings))
    if pid is None:
        return
    if procs.take_down(pid_file(settings), pid if is_simulator_process(pid, settings) else None, _stop):
        print(f"appsync simulator stopped (pid {pid})")


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
