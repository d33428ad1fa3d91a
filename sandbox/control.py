"""Start, stop and inspect the sandbox server process."""

import contextlib
import fcntl
import json
import os
import sys
import urllib.request

from sandbox import bridge
from sandbox import broker
from sandbox import discord
from sandbox import esp32_boards
from sandbox import procs
from sandbox import simulator
from sandbox.ca import ensure_ca
from sandbox.settings import CA_DIR_ENV
from sandbox.settings import HEALTH_PATH
from sandbox.settings import Settings

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 30


def prepare_state_dir(settings: Settings) -> None:
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.state_dir.chmod(0o700)


@contextlib.contextmanager
def locked(settings: Settings):
    """Serialise up/down on one state dir (e.g. two `make` targets starting the sandbox at once)."""
    prepare_state_dir(settings)
    with open(settings.state_dir / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_pid(settings: Settings) -> int | None:
    return procs.read_pid(settings.pid_file)


def is_sandbox_process(pid: int, settings: Settings) -> bool:
    """True if `pid` is our server on this port: a stale pid file may name someone else's process now."""
    return procs.is_ours(pid, "sandbox.server", str(settings.port))  # no /proc (not Linux): trust the pid file


def health(settings: Settings, timeout: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(settings.endpoint + HEALTH_PATH, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def running_pid(settings: Settings) -> int | None:
    """The server's pid if the pid file names a live sandbox server, else None."""
    pid = read_pid(settings)
    return pid if pid is not None and is_sandbox_process(pid, settings) else None


def is_healthy(settings: Settings, pid: int) -> bool:
    answer = health(settings)
    return bool(answer) and answer.get("pid") == pid


def log_tail(settings: Settings, lines: int = LOG_TAIL_LINES) -> str:
    return procs.log_tail(settings.log_file, lines)


def _stop(pid: int) -> None:
    procs.stop(pid, STOP_TIMEOUT)


def _start(settings: Settings) -> int:
    """Start the server detached; return its pid once healthy, or raise RuntimeError saying why."""
    env = dict(os.environ, **{CA_DIR_ENV: str(settings.ca_dir)})
    # Where the moto process writes the MQTT broker's access rules from its IoT registry (sandbox/broker.py).
    env.update({broker.BROKER_DIR_ENV: str(broker.broker_dir(settings)), broker.BROKER_REGION_ENV: settings.region})
    command = [sys.executable, "-m", "sandbox.server", "--host", settings.host, "--port", str(settings.port)]
    command += ["--appsync-port", str(settings.appsync_port)]
    command += ["--hosting-port", str(settings.hosting_port)]
    process = procs.spawn(command, settings.log_file, settings.pid_file, f"starting on {settings.endpoint}", env=env)
    if procs.wait_ready(process, lambda: is_healthy(settings, process.pid), START_TIMEOUT):
        return process.pid
    if process.returncode is not None:
        settings.pid_file.unlink(missing_ok=True)
        raise RuntimeError(f"the server exited with code {process.returncode}")
    procs.take_down(settings.pid_file, process.pid, _stop)
    raise RuntimeError(f"the server did not answer on {settings.endpoint} within {START_TIMEOUT:.0f} s")


def _services_up(settings: Settings) -> int:
    """What runs beside moto, once it answers; the rules bridge after the broker it connects to."""
    codes = [broker.up(settings), simulator.up(settings), discord.up(settings), bridge.up(settings)]
    return max(*codes, esp32_boards.up(settings))


def up(settings: Settings) -> int:
    with locked(settings):
        ensure_ca(settings.ca_dir)
        pid = running_pid(settings)
        if pid is not None and is_healthy(settings, pid):
            print(f"sandbox already running (pid {pid}) at {settings.endpoint}")
            return _services_up(settings)
        if pid is not None:
            print(f"sandbox process {pid} does not answer; restarting it (its AWS state is lost)")
            _stop(pid)
        settings.pid_file.unlink(missing_ok=True)
        try:
            pid = _start(settings)
        except RuntimeError as exc:
            print(
                f"sandbox failed to start: {exc}\n--- last lines of {settings.log_file}:\n{log_tail(settings)}",
                file=sys.stderr,
            )
            return 1
        print(f"sandbox started (pid {pid}) at {settings.endpoint}")
        # The MQTT broker and the GraphQL endpoint, once moto answers.
        return _services_up(settings)


def down(settings: Settings) -> int:
    from sandbox import devices  # imports this module; loaded only when needed

    with locked(settings):
        devices.down(settings)  # the virtual devices first: they are clients of the services below
        bridge.down(settings)  # the rules bridge (a broker client) before the broker
        discord.down(settings)
        broker.down(settings)
        simulator.down(settings)
        esp32_boards.down(settings)
        pid = read_pid(settings)
        if pid is None:
            print("sandbox not running")
            return 0
        if not is_sandbox_process(pid, settings):
            settings.pid_file.unlink(missing_ok=True)
            print(f"sandbox not running (removed stale pid file naming {pid})")
            return 0
        _stop(pid)
        settings.pid_file.unlink(missing_ok=True)
    print(f"sandbox stopped (pid {pid})")
    return 0


def status(settings: Settings) -> int:
    pid = running_pid(settings)
    if pid is None:
        print("sandbox not running")
        code = 3
    elif is_healthy(settings, pid):
        print(f"sandbox running (pid {pid}, state dir {settings.state_dir})")
        code = 0
    else:
        print(f"sandbox process {pid} is alive but does not answer; see {settings.log_file}")
        code = 3
    print(broker.status_line(settings))
    print(simulator.status_line(settings))
    print(bridge.status_line(settings))
    print(discord.status_line(settings))
    board_lines, board_code = esp32_boards.status_lines(settings)
    for line in board_lines:
        print(line)
    from sandbox import devices

    print(devices.status_line(settings))
    code = max(code, board_code)
    print(settings.endpoint)
    return code
