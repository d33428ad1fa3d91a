"""Revoking N devices with `ansible-playbook playbooks/revoke.yml` in one run, on the sandbox.

Run from the repository root with the project's venv:

    .venv/bin/python bench/revoke.py                          # private sandbox; N = 100
    .venv/bin/python bench/revoke.py --count 10,100
    .venv/bin/python bench/revoke.py --port 4599              # the running `make demo` sandbox
    .venv/bin/python bench/revoke.py --throttle               # the sandbox refuses what AWS would throttle

Per N: registers N boards with boto3 (thing in the fleet group, a certificate the sandbox signs
from the board's CSR, the device policy attached, a row in the devices table), outside the clock;
then times the whole `ansible-playbook playbooks/revoke.yml -e devices=...` (Ansible's start-up,
the devices-table probe and the module), and a second run that must change nothing. The module's
own figures (seconds, AWS requests per API) come from the run's JSON output.

The rate limits are the module's defaults (AWS's default quotas): UpdateCertificate 10/s bounds a
revocation to about 10 devices a second. With --throttle, the private sandbox also refuses what
AWS's own per-API token buckets would (ThrottlingException, a burst of one second's worth), so a
client that went faster than AWS allows would be seen in the "throttled" counts.

Printed per N: the wall time of the first run and of the re-run (whole ansible-playbook), the
module's own seconds, and the AWS requests per API of each run. If the sandbox has no iot-data DeleteConnection, the
runs pass -e drop_sessions=false and the output says so.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.settings import free_ports  # noqa: E402

BIN = Path(sys.executable).parent
REGION = "eu-north-1"
CREDENTIALS = dict(aws_access_key_id="testing", aws_secret_access_key="testing")
PREFIX = "revokebench"
POLICY = f"{PREFIX}_device_policy"
FLEET = f"{PREFIX}_fleet"
QUARANTINE = f"{PREFIX}_quarantine"
TABLE = f"{PREFIX}_devices"
POLICY_DOCUMENT = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
)
BOUND = "UpdateCertificate"


# The sandbox's other services (sandbox/settings.py reads these; the playbook gets them with -e too).
SERVICE_PORTS = {
    "IOTFLEET_SANDBOX_APPSYNC_PORT": "iotfleet_sandbox_appsync_port",
    "IOTFLEET_SANDBOX_MQTT_PORT": "iotfleet_sandbox_mqtt_port",
    "IOTFLEET_SANDBOX_DISCORD_PORT": "iotfleet_sandbox_discord_port",
    "IOTFLEET_SANDBOX_HOSTING_PORT": "iotfleet_sandbox_hosting_port",
}


class Sandbox:
    """A private sandbox on free ports (`python -m sandbox up/down`), or a running one."""

    def __init__(self, port=None, throttle=False):
        self.throttle = throttle
        self.private = port is None
        self.env = dict(os.environ)
        self.extra_vars = []
        if self.private:
            port, *others = free_ports(1 + len(SERVICE_PORTS))
            ports = dict(zip(SERVICE_PORTS, others, strict=True))
            self.env.update({name: str(value) for name, value in ports.items()})
            self.extra_vars = [a for name, n in ports.items() for a in ("-e", f"{SERVICE_PORTS[name]}={n}")]
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.state_dir = tempfile.mkdtemp(prefix="iotfleet-revoke-bench-") if self.private else None

    def cli(self, command, *options):
        argv = [sys.executable, "-m", "sandbox", command, "--state-dir", self.state_dir, "--port", str(self.port)]
        argv += options
        return subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)

    def discord_messages(self):
        """How many messages the sandbox's Discord stand-in took (None for a running sandbox)."""
        if not self.private:
            return None
        path = Path(self.state_dir) / "discord" / "messages.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def __enter__(self):
        if self.private:
            result = self.cli("up", *(["--throttle"] if self.throttle else []))
            if result.returncode != 0:
                self.__exit__()  # what did start (the server, when only the AppSync simulator failed)
                raise SystemExit(f"sandbox did not start:\n{result.stdout}{result.stderr}")
        return self

    def __exit__(self, *exc):
        if self.private:
            self.cli("down")
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def client(self, service, **config):
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION, config=Config(**config), **CREDENTIALS
        )


def prepare_stack(sandbox):
    """What revoke.yml needs of the cloud stack (playbooks/cloud.yml would make it; boto3 is faster)."""
    iot, dynamodb = sandbox.client("iot"), sandbox.client("dynamodb")
    existing = {group["groupName"] for group in iot.list_thing_groups()["thingGroups"]}
    for group in (FLEET, QUARANTINE):
        if group not in existing:
            iot.create_thing_group(thingGroupName=group)
    if POLICY not in {policy["policyName"] for policy in iot.list_policies()["policies"]}:
        iot.create_policy(policyName=POLICY, policyDocument=POLICY_DOCUMENT)
    if TABLE not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def register_boards(sandbox, names):
    iot, dynamodb = sandbox.client("iot", max_pool_connections=20), sandbox.client("dynamodb")
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        iot.create_thing(thingName=name, attributePayload={"attributes": {"owner": "bench"}})
        iot.add_thing_to_thing_group(thingGroupName=FLEET, thingName=name)
        cert = iot.create_certificate_from_csr(
            certificateSigningRequest=csr.public_bytes(serialization.Encoding.PEM).decode(), setAsActive=True
        )
        iot.attach_policy(policyName=POLICY, target=cert["certificateArn"])
        iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
        item = {"device_id": {"S": name}, "status": {"S": "connected"}, "certificate_id": {"S": cert["certificateId"]}}
        dynamodb.put_item(TableName=TABLE, Item=item)


def has_delete_connection(sandbox):
    """Whether the sandbox answers iot-data DeleteConnection (moto 5.2.5 has none: HTTP 500)."""
    client = sandbox.client("iot-data", retries={"max_attempts": 1})
    try:
        client.delete_connection(clientId="revoke-bench-probe")
    except ClientError as e:
        return e.response["Error"]["Code"] == "ResourceNotFoundException"
    return True


def run_playbook(sandbox, names, extra):
    env = dict(
        sandbox.env,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        PATH=f"{BIN}:{os.environ['PATH']}",
    )
    command = [
        str(BIN / "ansible-playbook"),
        "playbooks/revoke.yml",
        "-e",
        f"iotfleet_sandbox_port={sandbox.port}",
        *sandbox.extra_vars,
        "-e",
        f"iotfleet_prefix={PREFIX}",
        "-e",
        f"devices={','.join(names)}",
        *extra,
    ]
    before = sandbox.discord_messages()
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    messages = None if before is None else sandbox.discord_messages() - before
    if proc.returncode != 0:
        raise SystemExit(f"revoke.yml failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    module = None
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith("Revoke the devices"):
                module = task["hosts"]["localhost"]
    changed = sum(stats["changed"] for stats in report["stats"].values())
    return seconds, changed, module, messages


def bench(sandbox, count, index, extra):
    names = [f"BE{index:02X}{number:08X}" for number in range(count)]
    print(f"N={count}: registering the boards (not timed) ...", file=sys.stderr, flush=True)
    register_boards(sandbox, names)
    print(f"N={count}: revoke.yml ...", file=sys.stderr, flush=True)
    first = run_playbook(sandbox, names, extra)
    print(f"N={count}: revoke.yml again ...", file=sys.stderr, flush=True)
    again = run_playbook(sandbox, names, extra)
    return first, again


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="use the sandbox running on this port instead of a private one")
    parser.add_argument("--count", default="100", help="comma-separated N (default 100)")
    parser.add_argument("--throttle", action="store_true", help="private sandbox in AWS-rate throttling mode")
    args = parser.parse_args()
    counts = [int(n) for n in args.count.split(",")]

    with Sandbox(args.port, args.throttle) as sandbox:
        prepare_stack(sandbox)
        extra = [] if has_delete_connection(sandbox) else ["-e", "drop_sessions=false"]
        rows = [(count, *bench(sandbox, count, index, extra)) for index, count in enumerate(counts)]

    print()
    mode = "--throttle (AWS-rate ThrottlingException)" if args.throttle else "no server-side throttling"
    print(f"revoke.yml on the sandbox {sandbox.endpoint} ({mode}), module defaults ({BOUND} 10/s), load {load()}.")
    if extra:
        print("The sandbox has no iot-data DeleteConnection: runs with -e drop_sessions=false (no session dropped).")
    for count, first, again in rows:
        print(f"N={count}")
        for label, (seconds, changed, module, messages) in (("first run", first), ("re-run", again)):
            summary = module["summary"]
            calls = summary["api_calls"]
            print(
                f"  {label:9}: revoke.yml {seconds:6.2f} s wall, module {summary['seconds']:6.2f} s, changed tasks "
                f"{changed}, newly revoked {summary['newly_revoked']}, failed {summary['failed']}, "
                f"{sum(calls.values())} requests, throttled {summary['throttled'] or 0}, Discord messages {messages}"
            )
            print("             " + ", ".join(f"{api} {n}" for api, n in calls.items()))
    print(f"floor at {BOUND} 10/s with a one-second burst: (N - 10) / 10 s for the module alone.")


def load():
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
