"""Integration tests: the playbooks against a private sandbox that the session starts and stops."""

import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.settings import free_ports

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REGION = "eu-north-1"
APPSYNC_PORT_ENV = "IOTFLEET_SANDBOX_APPSYNC_PORT"  # sandbox/settings.py reads it
# The other services' ports (sandbox/settings.py reads them; the playbooks get them with -e as well).
SERVICE_PORT_VARS = {
    "IOTFLEET_SANDBOX_MQTT_PORT": "iotfleet_sandbox_mqtt_port",
    "IOTFLEET_SANDBOX_DISCORD_PORT": "iotfleet_sandbox_discord_port",
    "IOTFLEET_SANDBOX_HOSTING_PORT": "iotfleet_sandbox_hosting_port",
}


def register_device(iot, thing, policy, cert_path, key_path, active=True) -> dict:
    """Register `thing` as the fleet rollout does: an EC P-256 key and a CSR (CN = thing) on this side,
    CreateCertificateFromCsr, the thing, the policy and the thing attached. Writes the certificate
    and the key (0600); returns CreateCertificateFromCsr's answer."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    created = iot.create_certificate_from_csr(
        certificateSigningRequest=csr.public_bytes(serialization.Encoding.PEM).decode(), setAsActive=active
    )
    iot.create_thing(thingName=thing)
    iot.attach_policy(policyName=policy, target=created["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=created["certificateArn"])
    Path(cert_path).write_text(created["certificatePem"])
    pkcs8 = serialization.PrivateFormat.PKCS8
    Path(key_path).write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))
    Path(key_path).chmod(0o600)
    return created


def sandbox_cli(*args, state_dir, port, env=None, timeout=None):
    """`python -m sandbox <args>` on the sandbox of `state_dir` and `port` (the environment: `env`, else ours)."""
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args, "--state-dir", str(state_dir), "--port", str(port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A private sandbox (its own ports and state), so tests never touch a running `make demo`.

    The GraphQL simulator gets a free port of its own: its default, the sandbox's port + 1, may be an
    ephemeral port some other connection of this machine already uses.
    """
    state_dir = tmp_path_factory.mktemp("sandbox")
    port, appsync_port, *service_ports = free_ports(2 + len(SERVICE_PORT_VARS))
    ports = {APPSYNC_PORT_ENV: appsync_port, **dict(zip(SERVICE_PORT_VARS, service_ports, strict=True))}
    previous = {name: os.environ.get(name) for name in ports}
    os.environ.update({name: str(value) for name, value in ports.items()})
    try:
        up = sandbox_cli("up", state_dir=state_dir, port=port)
        assert up.returncode == 0, up.stdout + up.stderr
        yield {
            "port": port,
            "endpoint": f"http://127.0.0.1:{port}",
            "state_dir": state_dir,
            "ports": {SERVICE_PORT_VARS.get(name, name): value for name, value in ports.items()},
        }
    finally:
        sandbox_cli("down", state_dir=state_dir, port=port)
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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


def run_playbook(args, env) -> PlaybookRun:
    """`ansible-playbook <args>` from the repository root with its ansible.cfg and no colours, in `env`."""
    env = dict(env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    return PlaybookRun(proc)


@pytest.fixture(scope="session")
def playbook(sandbox):
    """playbook(path, *extra_args) runs ansible-playbook against the private sandbox."""

    port_vars = [arg for var in SERVICE_PORT_VARS.values() for arg in ("-e", f"{var}={sandbox['ports'][var]}")]

    def run(path, *extra):
        args = [path, "-e", f"iotfleet_sandbox_port={sandbox['port']}", *port_vars, *extra]
        return run_playbook(args, dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))

    return run
