"""End-to-end fixtures: one private sandbox for the session, with every service on a free port of its
own and its own state dir, two virtual boards flashed by site.yml (run once), and the firmware of
each board run on demand in the test's process (sandbox/devices.running_device).

Nothing here touches a running `make demo`: the default ports (4599, 4600, 8883, ...) and the default
state dir are never used.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import boto3
import pytest
import yaml

from sandbox import devices
from sandbox import esp32_boards
from sandbox.settings import ENV_PREFIX
from sandbox.settings import PORT_ENVS
from sandbox.settings import Settings
from sandbox.settings import free_ports
from sandbox.settings import load_settings
from sandbox.settings import private_env
from tests.integration.conftest import PlaybookRun
from tests.integration.conftest import run_playbook

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFIX = "e2e"
# Locally administered MACs (thing names 02E2E0000001, 02E2E0000002): they cannot be a real board's.
BOARDS = {
    "A": {"name": "e2eboard_a", "chip": "esp32s3", "mac": "02:E2:E0:00:00:01", "flash_size": "8MB"},
    "B": {"name": "e2eboard_b", "chip": "esp32", "mac": "02:E2:E0:00:00:02", "flash_size": "4MB"},
}
SEND_INTERVAL = 1  # seconds between readings of the virtual devices (flashed into /config.json)


@dataclass
class Stack:
    settings: Settings
    env: dict
    inventory: Path
    folder: Path
    boards: dict  # "A" / "B" -> VirtualBoard
    things: dict = field(default_factory=dict)  # "A" / "B" -> thing name
    api_url: str = ""
    api_key: str = ""

    def client(self, service):
        return boto3.client(
            service,
            endpoint_url=self.settings.endpoint,
            region_name=self.settings.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def playbook(self, path, *extra) -> PlaybookRun:
        """ansible-playbook against this sandbox, its inventory and its ports."""
        settings = self.settings
        variables = {
            "iotfleet_prefix": PREFIX,
            "iotfleet_sandbox_port": settings.port,
            "iotfleet_sandbox_appsync_port": settings.appsync_port,
            "iotfleet_sandbox_mqtt_port": settings.mqtt_port,
            "iotfleet_sandbox_discord_port": settings.discord_port,
            "iotfleet_sandbox_hosting_port": settings.hosting_port,
            "iotfleet_sandbox_state_dir": str(settings.state_dir),
            "fleet_device_key_store": str(self.folder / "keys"),
            "fleet_device_firmware_cache": str(self.folder / "firmware"),
            "fleet_device_send_interval_seconds": SEND_INTERVAL,
            "iotfleet_discord_webhook_url": settings.discord_url,  # the stand-in on this sandbox's port
        }
        return run_playbook([path, "-i", str(self.inventory), "-e", json.dumps(variables), *extra], self.env)

    def sandbox(self, *args):
        return subprocess.run(
            [sys.executable, "-m", "sandbox", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )

    def graphql(self, query, variables=None):
        """One operation with the dashboard's read-only API key; the `data`, or AssertionError on errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            self.api_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "x-api-key": self.api_key},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            result = json.loads(answer.read())
        assert not result.get("errors"), result
        return result["data"]


def _write_inventory(folder: Path, ports: list) -> Path:
    inventory = folder / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(ROOT / "inventories" / "local" / "group_vars")
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    hosts = {}
    for (_key, board), port in zip(BOARDS.items(), ports, strict=True):
        spec = {k: board[k] for k in ("chip", "mac", "flash_size")}
        hosts[board["name"]] = {"esp32_port": f"socket://127.0.0.1:{port}", "virtual_board": spec}
    tree = {
        "all": {
            "hosts": {"localhost": dict(local)},
            "children": {"esp32_boards": {"vars": dict(local), "hosts": hosts}},
        }
    }
    path = inventory / "hosts.yml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _wait_until_served(stack: Stack, api_id: str, timeout: float = 30.0) -> None:
    """The GraphQL simulator reloads the newest API within a second or so of a change."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{stack.settings.endpoint}/iotfleet-sandbox/appsync/apis", timeout=10) as answer:
            offered = json.loads(answer.read())["current"] or {}
        with urllib.request.urlopen(f"{stack.settings.appsync_endpoint}/iotfleet-sandbox/health", timeout=10) as answer:
            health = json.loads(answer.read())
        if offered.get("apiId") == api_id and (health.get("apiId"), health.get("etag")) == (api_id, offered["etag"]):
            return
        assert time.monotonic() < deadline, f"the simulator did not load {api_id} within {timeout} s: {health}"
        time.sleep(0.5)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The private sandbox with site.yml applied: cloud stack deployed, boards A and B registered and flashed."""
    with private_stack(tmp_path_factory.mktemp("e2e")) as made:
        yield made


@contextlib.contextmanager
def private_stack(folder: Path):
    """The `stack` fixture's work, usable outside pytest too (a sandbox kept up while debugging a test)."""
    state_dir = folder / "state"
    ports = free_ports(len(PORT_ENVS) + len(BOARDS))
    port, board_ports = ports[0], ports[len(PORT_ENVS) :]
    inventory = _write_inventory(folder, board_ports)
    env = private_env(
        state_dir,
        ports[: len(PORT_ENVS)],
        **{esp32_boards.BOARDS_ENV: str(inventory), "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    env = {k: v for k, v in env.items() if not k.startswith("ANSIBLE_")}
    saved = {k: os.environ.get(k) for k in env if k.startswith(ENV_PREFIX)}
    os.environ.update({k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})  # for load_settings here
    settings = load_settings(state_dir=state_dir, port=port)
    boards = {key: b for key in BOARDS for b in esp32_boards.read_inventory(inventory) if b.name == BOARDS[key]["name"]}
    stack = Stack(settings=settings, env=env, inventory=inventory, folder=folder, boards=boards)
    try:
        up = stack.sandbox("up")
        assert up.returncode == 0, up.stdout + up.stderr
        run = stack.playbook("site.yml")
        assert run.returncode == 0 and run.failed == 0, run.output
        stack.things = {key: devices.thing_name(settings, board) for key, board in boards.items()}
        assert stack.things == {key: board["mac"].replace(":", "") for key, board in BOARDS.items()}
        (api,) = [a for a in stack.client("appsync").list_graphql_apis()["graphqlApis"] if a["name"] == f"{PREFIX}_api"]
        stack.api_url = api["uris"]["GRAPHQL"]
        (key,) = stack.client("appsync").list_api_keys(apiId=api["apiId"])["apiKeys"]
        stack.api_key = key["id"]
        _wait_until_served(stack, api["apiId"])
        yield stack
    finally:
        down = stack.sandbox("down")
        print(down.stdout, down.stderr)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
