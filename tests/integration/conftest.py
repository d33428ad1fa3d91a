"""Integration tests: the playbooks against a private sandbox that the session starts and stops."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REGION = "eu-north-1"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sandbox(*args, state_dir, port):
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args, "--state-dir", str(state_dir), "--port", str(port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A private sandbox (its own port and state), so tests never touch a running `make demo`."""
    state_dir = tmp_path_factory.mktemp("sandbox")
    port = _free_port()
    up = _sandbox("up", state_dir=state_dir, port=port)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield {"port": port, "endpoint": f"http://127.0.0.1:{port}", "state_dir": state_dir}
    finally:
        _sandbox("down", state_dir=state_dir, port=port)


@pytest.fixture(scope="session")
def aws_client(sandbox):
    def make(service):
        return boto3.client(
            service,
            endpoint_url=sandbox["endpoint"],
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make


RECAP_RE = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.M,
)


class PlaybookRun:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.recap = {
            m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
            for m in RECAP_RE.finditer(proc.stdout)
        }

    @property
    def changed(self):
        return sum(r["changed"] for r in self.recap.values())

    @property
    def failed(self):
        return sum(r["failed"] + r["unreachable"] for r in self.recap.values())


@pytest.fixture(scope="session")
def playbook(sandbox):
    """playbook(path, *extra_args) runs ansible-playbook against the private sandbox."""

    def run(path, *extra):
        env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_NOCOLOR="1",
            PATH=f"{BIN}:{os.environ['PATH']}",
        )
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), path, "-e", f"iotfleet_sandbox_port={sandbox['port']}", *extra],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return PlaybookRun(proc)

    return run
