"""Revoking N devices with `ansible-playbook playbooks/revoke.yml` in one run, on the sandbox.

Run from the repository root with the project's venv:

    .venv/bin/python bench/revoke.py                          # private sandbox; N = 100
    .venv/bin/python bench/revoke.py --count 10,100
    .venv/bin/python bench/revoke.py --port 4599              # the running `make demo` sandbox

Per N: registers N boards with boto3 (thing in the fleet group, a certificate the sandbox signs
from the board's CSR, the device policy attached, a row in the devices table), outside the clock;
then times the whole `ansible-playbook playbooks/revoke.yml -e devices=...` (Ansible's start-up,
the devices-table probe and the module), and a second run that must change nothing. The module's
own figures (seconds, AWS requests per API) come from the run's JSON output.

The rate limits are the module's defaults (AWS's default quotas): UpdateCertificate 10/s bounds a
revocation to about 10 devices a second. If the sandbox has no iot-data DeleteConnection, the
runs pass -e drop_sessions=false and the output says so.
"""

import argparse
import json
import os
import shutil
import socket
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


class Sandbox:
    """A private sandbox on a free port (`python -m sandbox up/down`), or a running one."""

    def __init__(self, port=None):
        self.private = port is None
        if self.private:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.state_dir = tempfile.mkdtemp(prefix="iotfleet-revoke-bench-") if self.private else None

    def cli(self, command):
        argv = [sys.executable, "-m", "sandbox", command, "--state-dir", self.state_dir, "--port", str(self.port)]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)

    def __enter__(self):
        if self.private:
            result = self.cli("up")
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
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        PATH=f"{BIN}:{os.environ['PATH']}",
    )
    command = [
        str(BIN / "ansible-playbook"),
        "playbooks/revoke.yml",
        "-e",
        f"iotfleet_sandbox_port={sandbox.port}",
        "-e",
        f"iotfleet_prefix={PREFIX}",
        "-e",
        f"devices={','.join(names)}",
        *extra,
    ]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"revoke.yml failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    module = None
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith("Revoke the devices"):
                module = task["hosts"]["localhost"]
    changed = sum(stats["changed"] for stats in report["stats"].values())
    return seconds, changed, module


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
    args = parser.parse_args()
    counts = [int(n) for n in args.count.split(",")]

    with Sandbox(args.port) as sandbox:
        prepare_stack(sandbox)
        extra = [] if has_delete_connection(sandbox) else ["-e", "drop_sessions=false"]
        rows = [(count, *bench(sandbox, count, index, extra)) for index, count in enumerate(counts)]

    print()
    print(f"revoke.yml on the sandbox {sandbox.endpoint}, module defaults ({BOUND} 10/s), wall time of the whole run.")
    if extra:
        print("The sandbox has no iot-data DeleteConnection: runs with -e drop_sessions=false (no session dropped).")
    header = (
        f"{'N':>5} | {'revoke.yml':>10} | {'module':>7} | {'changed':>7} | {'re-run':>7} | {'changed':>7} | requests"
    )
    print(header)
    print("-" * len(header))
    for count, (seconds, changed, module), (again_seconds, again_changed, again_module) in rows:
        summary = module["summary"]
        calls = sum(summary["api_calls"].values())
        again_calls = sum(again_module["summary"]["api_calls"].values())
        print(
            f"{count:5d} | {seconds:8.2f} s | {summary['seconds']:5.2f} s | {changed:7d} | {again_seconds:5.2f} s | "
            f"{again_changed:7d} | {calls} first, {again_calls} re-run"
        )
        print(f"      newly revoked {summary['newly_revoked']}, failed {summary['failed']}; {summary['api_calls']}")
    print(f"floor at {BOUND} 10/s: N/10 s for the module alone (one certificate per device).")


if __name__ == "__main__":
    main()
