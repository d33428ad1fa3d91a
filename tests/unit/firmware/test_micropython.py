"""The application on a real MicroPython: MicroPython's official WebAssembly port, run with Node.

The port (npm @micropython/micropython-webassembly-pyscript, pinned below) has no sockets or TLS, so
micropython_check.py drives the MQTT client and the application loop through an in-memory broker
with simulated time. What this proves: the app imports as a package and its MQTT framing, shadow,
telemetry, skip and backoff logic behave the same on MicroPython as on CPython. What it cannot: the
board's ssl/socket/network/machine/dht modules (those are behind net.py and hw.BoardPlatform).

The npm package is installed on first use into the gitignored tests/output/; without Node or the
registry the MicroPython half is skipped (the CPython half always runs).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
APP_DIR = ROOT / "firmware" / "app"
CHECK = HERE / "micropython_check.py"
RUNNER = HERE / "micropython_runner.mjs"
PACKAGE = "@micropython/micropython-webassembly-pyscript@1.27.0"
PREFIX = ROOT / "tests" / "output" / "micropython-wasm"
MARKER = "MICROPYTHON-CHECK OK"


def test_check_script_passes_on_cpython():
    env = dict(os.environ, PYTHONPATH=str(APP_DIR.parent))
    result = subprocess.run(
        [sys.executable, str(CHECK)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert MARKER in result.stdout and "on cpython" in result.stdout


def micropython_modules():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("Node.js is not installed")
    modules = PREFIX / "node_modules"
    entry = modules / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
    if not entry.is_file():
        PREFIX.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", "--no-save", PACKAGE],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0 or not entry.is_file():
            pytest.skip(f"cannot install {PACKAGE}: {result.stderr.strip()[-300:]}")
    return node, modules


def test_app_runs_on_micropython():
    node, modules = micropython_modules()
    result = subprocess.run(
        [node, str(RUNNER), str(modules), str(APP_DIR), str(CHECK)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert MARKER in result.stdout and "on micropython" in result.stdout
    assert "Warning" not in result.stdout + result.stderr  # e.g. MicroPython's "exception chaining" warning
