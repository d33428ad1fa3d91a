"""Fixtures for the sandbox: the extension in process, and private server instances."""

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import broker
from sandbox import moto_ext
from sandbox import simulator
from sandbox.settings import APPSYNC_PORT_ENV
from sandbox.settings import MQTT_PORT_ENV
from sandbox.settings import PORT_ENV
from sandbox.settings import ROOT
from sandbox.settings import STATE_DIR_ENV
from sandbox.settings import Settings
from sandbox.settings import free_ports
from sandbox.settings import load_settings


@pytest.fixture
def ext(aws, tmp_path, monkeypatch):
    """moto in process (the shared `aws` fixture) with our patches and ids computed as the server does."""
    from moto.core.config import default_user_config

    monkeypatch.setitem(default_user_config, "iot", {"use_valid_cert": True})
    ca = moto_ext.apply(tmp_path / "ca")
    try:
        yield ca
    finally:
        moto_ext.revert()


def free_port() -> int:
    return free_ports(1)[0]


class Instance:
    """A private sandbox on a free port and its own state dir, driven through the CLI."""

    def __init__(self, state_dir: Path):
        port, appsync_port, mqtt_port = free_ports(3)
        settings = load_settings(state_dir=state_dir, port=port)
        # The AppSync simulator and the MQTT broker on free ports too (not port + 1 or 8883, which may be taken).
        self.settings: Settings = dataclasses.replace(settings, appsync_port=appsync_port, mqtt_port=mqtt_port)
        self.pids: set[int] = set()

    def run(self, *command: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in (PORT_ENV, STATE_DIR_ENV)}
        env[APPSYNC_PORT_ENV] = str(self.settings.appsync_port)
        env[MQTT_PORT_ENV] = str(self.settings.mqtt_port)
        argv = [sys.executable, "-m", "sandbox", "--state-dir", str(self.settings.state_dir)]
        argv += ["--port", str(self.settings.port), *command]
        result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False)
        for pid_file in (self.settings.pid_file, simulator.pid_file(self.settings), broker.pid_file(self.settings)):
            with contextlib.suppress(FileNotFoundError, ValueError):
                self.pids.add(int(pid_file.read_text()))
        return result

    def cleanup(self) -> None:
        """`down`, then kill whatever this instance started that is still there."""
        with contextlib.suppress(Exception):
            self.run("down")
        for pid in self.pids:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"sandbox.server" in cmdline or str(simulator.SERVER_JS).encode() in cmdline or (
                    str(broker.conf_file(self.settings)).encode() in cmdline
                ):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def instance(tmp_path):
    sandbox = Instance(tmp_path / "state")
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One running private sandbox shared by a module's tests."""
    sandbox = Instance(tmp_path_factory.mktemp("sandbox") / "state")
    try:
        result = sandbox.run("up")
        assert result.returncode == 0, result.stdout + result.stderr
        yield sandbox
    finally:
        sandbox.cleanup()


@pytest.fixture
def client(server):
    """client(service) -> a boto3 client for the shared private sandbox."""
    import boto3

    def make(service: str):
        return boto3.client(
            service,
            endpoint_url=server.settings.endpoint,
            region_name=server.settings.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make
