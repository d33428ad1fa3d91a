"""Where the sandbox lives: port, region and state dir, each read from one place."""

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The inventory is the one place that names the port and region; the playbooks read it too.
VARS_FILE = ROOT / "inventories" / "local" / "group_vars" / "all" / "sandbox.yml"
DEFAULT_PORT = 4599
DEFAULT_REGION = "eu-north-1"
HOST = "127.0.0.1"
PORT_ENV = "IOTFLEET_SANDBOX_PORT"
STATE_DIR_ENV = "IOTFLEET_SANDBOX_STATE_DIR"
# Passed to the server process: where the CA that signs CreateCertificateFromCsr lives.
CA_DIR_ENV = "IOTFLEET_SANDBOX_CA_DIR"
# Answered by our server only, so a health check also proves the extension is loaded.
HEALTH_PATH = "/iotfleet-sandbox/health"
# The AppSync simulator (GraphQL endpoint): its port, by default the sandbox's port + 1.
APPSYNC_PORT_ENV = "IOTFLEET_SANDBOX_APPSYNC_PORT"
# The data plane (issue 6) and the dashboard host (issue 7): each port from its environment variable,
# else the inventory (iotfleet_sandbox_<name>_port), else the default here.
MQTT_PORT_ENV = "IOTFLEET_SANDBOX_MQTT_PORT"  # Mosquitto, TLS with client certificates
DISCORD_PORT_ENV = "IOTFLEET_SANDBOX_DISCORD_PORT"  # the Discord webhook stand-in
HOSTING_PORT_ENV = "IOTFLEET_SANDBOX_HOSTING_PORT"  # Amplify hosting stand-in (the dashboard)
# The sandbox's port and its services' ports, in the order private_env takes them.
PORT_ENVS = (PORT_ENV, APPSYNC_PORT_ENV, MQTT_PORT_ENV, DISCORD_PORT_ENV, HOSTING_PORT_ENV)
ENV_PREFIX = "IOTFLEET_SANDBOX_"
DEFAULT_MQTT_PORT = 8883
DEFAULT_DISCORD_PORT = 4597
DEFAULT_HOSTING_PORT = 4598


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    port: int
    region: str
    host: str = HOST
    appsync_port: int = 0  # 0: the sandbox's port + 1
    mqtt_port: int = DEFAULT_MQTT_PORT
    discord_port: int = DEFAULT_DISCORD_PORT
    hosting_port: int = DEFAULT_HOSTING_PORT

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "moto.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "moto.log"

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / "ca"

    @property
    def appsync_endpoint(self) -> str:
        """The AppSync simulator's base URL; GraphQL at /graphql, subscriptions at /graphql/realtime."""
        return f"http://{self.host}:{self.appsync_port or self.port + 1}"

    @property
    def discord_url(self) -> str:
        """The Discord webhook stand-in's URL (what CUSTOM_DISCORD_ENDPOINT holds in the sandbox)."""
        return f"http://{self.host}:{self.discord_port}/api/webhooks/sandbox/discord"

    @property
    def hosting_url(self) -> str:
        return f"http://{self.host}:{self.hosting_port}/"


def _read_vars(vars_file: Path) -> dict:
    if not vars_file.is_file():
        return {}
    return yaml.safe_load(vars_file.read_text()) or {}


def load_settings(state_dir=None, port=None, vars_file: Path = VARS_FILE) -> Settings:
    """Command-line option, then environment, then the inventory file, then the defaults."""
    inventory = _read_vars(vars_file)
    port = port or os.environ.get(PORT_ENV) or inventory.get("iotfleet_sandbox_port") or DEFAULT_PORT
    state_dir = state_dir or os.environ.get(STATE_DIR_ENV) or ROOT / ".sandbox"
    region = inventory.get("iotfleet_aws_region") or DEFAULT_REGION
    appsync_port = os.environ.get(APPSYNC_PORT_ENV) or inventory.get("iotfleet_sandbox_appsync_port") or 0
    extra = {}
    for name, env, default in (
        ("mqtt", MQTT_PORT_ENV, DEFAULT_MQTT_PORT),
        ("discord", DISCORD_PORT_ENV, DEFAULT_DISCORD_PORT),
        ("hosting", HOSTING_PORT_ENV, DEFAULT_HOSTING_PORT),
    ):
        extra[f"{name}_port"] = os.environ.get(env) or inventory.get(f"iotfleet_sandbox_{name}_port") or default
    try:
        port = int(port)
        appsync_port = int(appsync_port) or port + 1
        extra = {key: int(value) for key, value in extra.items()}
    except ValueError:
        raise SystemExit(f"sandbox ports must be numbers, got {port!r}, {appsync_port!r} and {extra}") from None
    return Settings(
        state_dir=Path(state_dir).resolve(), port=port, region=str(region), appsync_port=appsync_port, **extra
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports, held together while chosen so they cannot collide with each other."""
    sockets = [socket.socket() for _index in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def private_env(state_dir, ports: list[int], **extra: str) -> dict[str, str]:
    """The environment of a private sandbox: os.environ without any IOTFLEET_SANDBOX_* variable, plus its
    state dir, its ports (in PORT_ENVS order: the sandbox, AppSync, MQTT, Discord, hosting) and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({name: str(port) for name, port in zip(PORT_ENVS, ports, strict=True)})
    env[STATE_DIR_ENV] = str(state_dir)
    env.update(extra)
    return env
