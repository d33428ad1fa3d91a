"""Telemetry ingestion on the sandbox: messages/s and latency per stage, broker -> bridge -> Lambda -> DynamoDB.

Run from the repository root with the project's venv:

    .venv/bin/python bench/ingest.py                        # private sandbox; 1, 10 and 50 devices
    .venv/bin/python bench/ingest.py --sizes 10 --messages 10 --interval 0.5

What runs: a private sandbox (free ports for every service, its own state dir, stopped at the end),
`playbooks/cloud.yml` with prefix `bench`, then max(sizes) devices registered as the fleet rollout does
(thing, EC P-256 key and CSR, CreateCertificateFromCsr, the stack's device policy, the thing attached,
the device recorded in the devices table through the signed upsertDevice mutation). For each size N,
N lightweight MQTT clients (paho, MQTT 3.1.1 over TLS with the device's certificate, client id = thing
name, as the firmware connects) connect; once the bridge has worked off their presence events, each
publishes --messages readings to `<thing>/telemetry` every --interval seconds (offered load
N / interval messages/s), then the clients disconnect.

Where each timestamp comes from (one clock: everything runs on this machine):
  publish   the client, just before `publish()` (the reading's sequence number is coded in its value,
            so each stored item is matched to its publish);
  broker    an observer subscribed to `+/telemetry` with the sandbox's service identity receives it:
            when the broker delivered it to a subscriber, as it does to the bridge;
  rule      the item's `timestamp`, which the telemetry rule's `timestamp()` set when the bridge
            evaluated the SQL;
  lambda    CoreTelemetry's log in CloudWatch Logs: the sandbox writes an invocation's log lines when it
            ends (their event time is the end), and REPORT gives the handler's duration, so the handler
            started at end - duration. "rule -> handler" thus includes the bridge's queue, the Invoke
            request and the cold start (a new process per invocation on the sandbox);
  stored    the item's first appearance in DynamoDB, polled every --poll seconds (consistent scan):
            resolution --poll. The handler writes it through AppSync before it returns, so
            "handler end -> visible" is mostly the poll's delay (and can be negative by the log's write).
Messages/s = messages stored / (last stored - first publish). A message not stored within --timeout is
counted as lost. Stages are reported as p50 / p99 / max in milliseconds.
"""

import argparse
import json
import math
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from sandbox import bridge  # noqa: E402
from sandbox import broker  # noqa: E402
from sandbox.settings import PORT_ENVS  # noqa: E402
from sandbox.settings import free_ports  # noqa: E402
from sandbox.settings import load_settings  # noqa: E402
from sandbox.settings import private_env  # noqa: E402
from tests.integration.conftest import register_device  # noqa: E402

PREFIX = "bench"
CREDENTIALS = dict(aws_access_key_id="testing", aws_secret_access_key="testing")
UPSERT_DEVICE = """mutation U($input: UpsertDeviceInput!) { upsertDevice(input: $input) { device_id } }"""
BASE_TEMPERATURE = 10.0  # reading k of a run is BASE_TEMPERATURE + k / 100 °C: unique per device and run
REPORT_RE = re.compile(r"^REPORT RequestId: (\S+)\tDuration: ([0-9.]+) ms")
STAGES = (
    ("publish -> broker", "publish", "broker"),
    ("publish -> rule", "publish", "rule"),
    ("rule -> handler start", "rule", "handler_start"),
    ("handler (AppSync write)", "handler_start", "handler_end"),
    ("handler end -> visible", "handler_end", "stored"),
    ("publish -> stored (total)", "publish", "stored"),
)


class Sandbox:
    """A private sandbox: every service on a free port, its own state dir; stopped at the end."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="iotfleet-bench-ingest-"))
        ports = free_ports(len(PORT_ENVS))
        self.env = private_env(self.folder / "state", ports, IOTFLEET_SANDBOX_BOARDS="none")
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("IOTFLEET_SANDBOX_")})
        self.settings = load_settings()

    def cli(self, *command):
        argv = [sys.executable, "-m", "sandbox", *command]
        return subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)

    def __enter__(self):
        result = self.cli("up")
        if result.returncode != 0:
            self.cli("down")
            raise SystemExit(f"sandbox did not start:\n{result.stdout}{result.stderr}")
        return self

    def __exit__(self, *exc):
        self.cli("down")
        shutil.rmtree(self.folder, ignore_errors=True)  # the devices' keys, the sandbox's state

    def client(self, service):
        settings = self.settings
        return boto3.client(service, endpoint_url=settings.endpoint, region_name=settings.region, **CREDENTIALS)

    def deploy(self):
        """cloud.yml with the bench prefix: tables, API, Lambdas, topic rules, device policy."""
        s = self.settings
        variables = {
            "iotfleet_prefix": PREFIX,
            "iotfleet_sandbox_port": s.port,
            "iotfleet_sandbox_appsync_port": s.appsync_port,
            "iotfleet_sandbox_mqtt_port": s.mqtt_port,
            "iotfleet_sandbox_discord_port": s.discord_port,
            "iotfleet_sandbox_hosting_port": s.hosting_port,
        }
        bin_dir = Path(sys.executable).parent
        env = dict(self.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{bin_dir}:{os.environ['PATH']}")
        playbook = str(bin_dir / "ansible-playbook")
        run = subprocess.run(
            [playbook, "playbooks/cloud.yml", "-e", json.dumps(variables)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise SystemExit(f"cloud.yml failed:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
        (api,) = [a for a in self.client("appsync").list_graphql_apis()["graphqlApis"] if a["name"] == f"{PREFIX}_api"]
        return api["uris"]["GRAPHQL"]


def signed_graphql(url, region, query, variables):
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("testing", "testing"), "appsync", region).add_auth(request)
    http = urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method="POST")
    with urllib.request.urlopen(http, timeout=30) as answer:
        result = json.loads(answer.read())
    if result.get("errors"):
        raise SystemExit(f"GraphQL error: {result['errors']}")
    return result["data"]


def register(sandbox, api_url, count, folder):
    """`count` devices as the fleet rollout makes them; returns [(thing, cert path, key path)]."""
    iot = sandbox.client("iot")
    policy = f"{PREFIX}_device_policy"
    run_tag = secrets.token_hex(2).upper()
    made = []
    for number in range(count):
        thing = f"BE{run_tag}{number:06X}"
        cert_path, key_path = folder / f"{thing}.crt", folder / f"{thing}.key"
        register_device(iot, thing, policy, cert_path, key_path)
        device = {"input": {"device_id": thing, "owner": "bench"}}
        signed_graphql(api_url, sandbox.settings.region, UPSERT_DEVICE, device)
        made.append((thing, cert_path, key_path))
    return made


class Client:
    """A device's MQTT connection (paho, 3.1.1, TLS with its certificate; client id = thing name)."""

    def __init__(self, thing, cert, key, ca, protocol=paho.MQTTv311, client_id=None):
        self.thing = thing
        self.connected = threading.Event()
        self.failed = None
        self.received = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or thing, protocol=protocol)
        self.client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key), cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties):
        if reason_code.is_failure:
            self.failed = str(reason_code)
        else:
            self.connected.set()

    def _on_message(self, _client, _userdata, message):
        self.received.append((time.time(), message.topic, message.payload))

    def connect(self, host, port):
        self.client.connect(host, port, keepalive=60)
        self.client.loop_start()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def connect_all(clients, host, port, timeout=60.0):
    """Connect every client; a device just registered may need a moment until the broker's rules have it."""
    deadline = time.monotonic() + timeout
    for client in clients:
        client.connect(host, port)
    pending = list(clients)
    while pending:
        for client in list(pending):
            if client.connected.is_set():
                pending.remove(client)
            elif client.failed:
                client.close()
                if time.monotonic() > deadline:
                    raise SystemExit(f"{client.thing} could not connect: {client.failed}")
                client.failed = None
                time.sleep(0.5)
                client.connect(host, port)
        time.sleep(0.05)
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pending)} clients did not connect within {timeout} s")


def wait_bridge_idle(settings, timeout=300.0):
    """Until the bridge has no job queued (its status file is written every 2 s)."""
    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        status = bridge.read_status(settings) or {}
        pending = (status.get("counts") or {}).get("pending")
        fresh = time.time() - status.get("updated", 0) < 5
        if pending == 0 and fresh:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= 2.5:  # two status writes in a row
                return
        else:
            idle_since = None
        time.sleep(0.5)
    raise SystemExit(f"the bridge still had work queued after {timeout} s")


def lambda_times(sandbox):
    """{(device_id, rule timestamp): (handler start, handler end)} in epoch seconds, from CoreTelemetry's log.

    A warm environment writes several invocations into one stream: lines are tied by request id (the
    JSON lines' function_request_id, REPORT's RequestId).
    """
    logs = sandbox.client("logs")
    group = f"/aws/lambda/{PREFIX}_CoreTelemetry"
    reports, keys = {}, {}
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
        for event in page["events"]:
            message = event["message"]
            report = REPORT_RE.match(message)
            if report:
                reports[report.group(1)] = (event["timestamp"] / 1000, float(report.group(2)) / 1000)
            elif message.startswith("{"):
                try:
                    record = json.loads(message)
                except ValueError:
                    continue
                if record.get("message") == "telemetry_stored":
                    keys[record["function_request_id"]] = (record["device_id"], int(record["event_timestamp"]))
    found = {}
    for request_id, key in keys.items():
        if request_id in reports:
            end, duration = reports[request_id]
            found[key] = (end - duration, end)
    return found


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def run_size(sandbox, devices, ca, messages, interval, poll, timeout):
    settings = sandbox.settings
    host, port = "127.0.0.1", settings.mqtt_port
    dynamodb = sandbox.client("dynamodb")
    table = f"{PREFIX}_telemetry"
    service = broker.service_identity(settings)
    observer_id = f"iotfleet-bench-{os.getpid()}"  # the service identity may use any iotfleet- client id
    observer = Client("observer", service.cert, service.key, service.ca, protocol=paho.MQTTv5, client_id=observer_id)
    observer.connect(host, port)
    if not observer.connected.wait(20):
        raise SystemExit(f"the observer could not connect: {observer.failed}")
    observer.client.subscribe("+/telemetry", qos=1)
    clients = [Client(thing, cert, key, ca) for thing, cert, key in devices]
    connect_all(clients, host, port)
    wait_bridge_idle(settings)  # the connects' presence events go through CoreStatus and DiscordWebhook first

    published = {}  # (thing, temperature) -> publish time
    start_seq = run_size.sequence
    run_size.sequence += messages

    def publish_all(client):
        for k in range(messages):
            due = started + k * interval
            time.sleep(max(0.0, due - time.monotonic()))
            temperature = round(BASE_TEMPERATURE + (start_seq + k) / 100, 2)
            payload = json.dumps({"temperature": temperature, "humidity": 45.0})
            published[(client.thing, temperature)] = time.time()
            client.client.publish(f"{client.thing}/telemetry", payload, qos=1)

    stored = {}  # (thing, temperature) -> (first seen, rule timestamp)
    things = {client.thing for client in clients}
    expected = len(clients) * messages
    publishing = threading.Event()

    def poll_table():
        """Scan (consistent) every `poll` s from the first publish until every reading is in, or timeout."""
        deadline = time.monotonic() + (messages * interval) + timeout
        while time.monotonic() < deadline and (publishing.is_set() or len(stored) < expected):
            now = time.time()
            for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
                for item in page["Items"]:
                    key = (item["device_id"]["S"], float(item["temperature"]["N"]))
                    if key[0] in things and key not in stored and key in published:
                        stored[key] = (now, int(item["timestamp"]["N"]))
            time.sleep(poll)

    started = time.monotonic()
    publishing.set()
    poller = threading.Thread(target=poll_table)
    poller.start()
    threads = [threading.Thread(target=publish_all, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    publishing.clear()
    poller.join()
    for client in clients:
        client.close()
    time.sleep(0.2)
    observer.close()

    delivered = {}
    for when, topic, payload in observer.received:
        thing = topic.split("/")[0]
        if thing in things:
            delivered.setdefault((thing, json.loads(payload)["temperature"]), when)
    handler = lambda_times(sandbox)
    samples = {name: [] for name, _a, _b in STAGES}
    for key, (seen, rule_ms) in stored.items():
        times = {"publish": published[key], "broker": delivered.get(key), "rule": rule_ms / 1000, "stored": seen}
        start_end = handler.get((key[0], rule_ms))
        if start_end:
            times["handler_start"], times["handler_end"] = start_end
        for name, first, second in STAGES:
            if times.get(first) is not None and times.get(second) is not None:
                samples[name].append((times[second] - times[first]) * 1000)
    span = (max(s for s, _r in stored.values()) - min(published.values())) if stored else float("nan")
    return {
        "devices": len(devices),
        "sent": len(published),
        "stored": len(stored),
        "offered": len(devices) / interval,
        "rate": len(stored) / span if stored else 0.0,
        "span": span,
        "samples": samples,
    }


run_size.sequence = 0


def print_result(result):
    print(
        f"\n{result['devices']} device(s): {result['sent']} sent, {result['stored']} stored "
        f"({result['sent'] - result['stored']} lost) in {result['span']:.1f} s -> {result['rate']:.1f} messages/s "
        f"(offered {result['offered']:.1f}/s)"
    )
    print(f"  {'stage':28} {'n':>4} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for name, values in result["samples"].items():
        if values:
            p50, p99, top = percentile(values, 0.5), percentile(values, 0.99), max(values)
            print(f"  {name:28} {len(values):>4} {p50:>9.0f} {p99:>9.0f} {top:>9.0f}")
        else:
            print(f"  {name:28} {0:>4} {'-':>9} {'-':>9} {'-':>9}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,50", help="comma-separated device counts (default 1,10,50)")
    parser.add_argument("--messages", type=int, default=5, help="readings per device per size (default 5)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a device's readings (default 1)")
    parser.add_argument("--poll", type=float, default=0.1, help="DynamoDB poll interval in seconds (default 0.1)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the last item (default 180)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    if max(sizes) * args.messages * len(sizes) > 9000:
        raise SystemExit("too many readings for the value coding: lower --messages or --sizes")
    with Sandbox() as sandbox:
        print(f"private sandbox {sandbox.settings.endpoint}, broker 127.0.0.1:{sandbox.settings.mqtt_port}")
        begun = time.monotonic()
        api_url = sandbox.deploy()
        print(f"cloud.yml deployed in {time.monotonic() - begun:.0f} s")
        keys = sandbox.folder / "keys"
        keys.mkdir(mode=0o700)
        begun = time.monotonic()
        devices = register(sandbox, api_url, max(sizes), keys)
        print(f"{len(devices)} devices registered in {time.monotonic() - begun:.1f} s")
        ca = sandbox.settings.ca_dir / "ca.pem"
        for size in sizes:
            print_result(run_size(sandbox, devices[:size], ca, args.messages, args.interval, args.poll, args.timeout))


if __name__ == "__main__":
    main()
