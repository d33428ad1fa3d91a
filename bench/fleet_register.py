"""Registering N devices: the collection's code path against a plain boto3 loop, on the sandbox.

Run from the repository root with the project's venv:

    .venv/bin/python bench/fleet_register.py                 # private sandbox; N = 10, 100, 1000
    .venv/bin/python bench/fleet_register.py --ansible       # ... and the cost of one ansible-playbook task
    .venv/bin/python bench/fleet_register.py --throttle      # private sandbox answering ThrottlingException
                                                             # above AWS's quotas; 1000 devices
    .venv/bin/python bench/fleet_register.py --latency-ms 50 --sizes 100
                                                             # ... with 50 ms added to each IoT request,
                                                             # a stand-in for the round trip to AWS
    .venv/bin/python bench/fleet_register.py --endpoint http://127.0.0.1:4599 --sizes 10,100

"Collection" is the engine iot_fleet_registration runs (module_utils/fleet_registration.py), called
directly with the same client wrapper, retry decorator and rate limiter as the module, so the
figures exclude Ansible's per-task cost; --ansible measures that separately. "boto3 loop" is what a
script does by hand: CreateThing, CreateCertificateFromCsr, AttachPolicy, AttachThingPrincipal,
AddThingToThingGroup, one device after the other. Keys and CSRs are made before the clocks start.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import namedtuple
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / ".collections"))

import boto3  # noqa: E402
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper  # noqa: E402
from botocore.config import Config  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import build_csr  # noqa: E402
from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import FleetRegistration  # noqa: E402
from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import build_specs  # noqa: E402
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import iot_retry_decorator  # noqa: E402
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import AWS_IOT_DEFAULT_RATES  # noqa: E402
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import RateLimiter  # noqa: E402
from sandbox.settings import APPSYNC_PORT_ENV  # noqa: E402
from sandbox.settings import HEALTH_PATH  # noqa: E402
from sandbox.throttle import LATENCY_ENV  # noqa: E402
from sandbox.throttle import STATS_PATH  # noqa: E402

REGION = "eu-north-1"
CREDENTIALS = dict(aws_access_key_id="testing", aws_secret_access_key="testing")
POLICY_DOCUMENT = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
)
# The quota that bounds a registration: one CreateCertificateFromCsr per device.
BOUNDING_API = "CreateCertificateFromCsr"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sandbox:
    """A private sandbox on free ports, started and stopped through `python -m sandbox`."""

    def __init__(self, throttle, latency_ms):
        self.port = free_port()
        self.state_dir = tempfile.mkdtemp(prefix="iotfleet-bench-")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.throttle = throttle
        # `up` also starts the AppSync simulator; give it a free port of its own.
        self.env = dict(os.environ, **{LATENCY_ENV: str(latency_ms), APPSYNC_PORT_ENV: str(free_port())})

    def cli(self, *command):
        argv = [sys.executable, "-m", "sandbox", "--state-dir", self.state_dir, "--port", str(self.port), *command]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=self.env, check=False)

    def __enter__(self):
        result = self.cli("up", *(["--throttle"] if self.throttle else []))
        if result.returncode != 0:
            self.cli("down")
            raise SystemExit(f"sandbox did not start:\n{result.stdout}{result.stderr}")
        return self

    def __exit__(self, *exc):
        self.cli("down")


def iot_client(endpoint, workers=None):
    config = Config(max_pool_connections=workers + 4) if workers else None
    return boto3.client("iot", endpoint_url=endpoint, region_name=REGION, config=config, **CREDENTIALS)


def make_boards(prefix, count):
    """(thing name, CSR) per board; names are 12 upper-case hex digits, unique per run."""
    boards = []
    for number in range(count):
        name = f"{prefix:04X}{number:08X}"
        boards.append((name, build_csr(ec.generate_private_key(ec.SECP256R1()), name)))
    return boards


def setup(endpoint, tag):
    client = iot_client(endpoint)
    policy, group = f"bench_{tag}_device", f"bench_{tag}_fleet"
    client.create_policy(policyName=policy, policyDocument=POLICY_DOCUMENT)
    client.create_thing_group(thingGroupName=group)
    return policy, group


def boto3_loop(endpoint, boards, policy, group):
    client = iot_client(endpoint)
    started = time.monotonic()
    for name, csr in boards:
        client.create_thing(thingName=name, attributePayload={"attributes": {"owner": "bench"}})
        cert = client.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)
        client.attach_policy(policyName=policy, target=cert["certificateArn"])
        client.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
        client.add_thing_to_thing_group(thingGroupName=group, thingName=name)
    return time.monotonic() - started


Run = namedtuple("Run", "results seconds summary")


def collection(endpoint, devices, policy, group, workers, rates):
    """The module's engine, set up as the module sets it up; returns a Run."""
    limiter = RateLimiter(rates)
    client = RetryingBotoClientWrapper(iot_client(endpoint, workers), iot_retry_decorator())
    limiter.install(client)
    specs = build_specs(devices)
    results, seconds = FleetRegistration(client, policy, group, max_workers=workers).run(specs)
    failed = [f"{r.thing_name}: {r.error}" for r in results if r.error]
    if failed:
        raise SystemExit(f"{len(failed)} devices failed, e.g. {failed[:3]}")
    return Run(results, seconds, limiter.summary())


def devices_of(boards, results=None):
    devices = [dict(thing_name=name, csr=csr, attributes=dict(owner="bench")) for name, csr in boards]
    for device, result in zip(devices, results or [], strict=False):
        device["certificate_pem"] = result.certificate.certificate_pem
    return devices


def total_calls(summary):
    return sum(summary["calls"].values())


def health(endpoint):
    try:
        with urllib.request.urlopen(endpoint + HEALTH_PATH, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def server_stats(endpoint):
    try:
        with urllib.request.urlopen(endpoint + STATS_PATH, timeout=5) as response:
            return json.loads(response.read())
    except OSError:
        return None


def time_ansible_task(endpoint, devices, policy, group, workdir):
    """Wall time of a playbook with one iot_fleet_registration task, and of the same playbook without it."""
    vars_file = Path(workdir) / "devices.json"
    vars_file.write_text(json.dumps({"bench_devices": devices}))
    task = {
        "iotfleet.aws.iot_fleet_registration": {
            "devices": "{{ bench_devices }}",
            "policy_name": policy,
            "thing_group": group,
            "endpoint_url": endpoint,
            "region": REGION,
            "access_key": "testing",
            "secret_key": "testing",
        }
    }
    timings = {}
    for label, tasks in (("empty", [{"ansible.builtin.meta": "noop"}]), ("task", [task])):
        playbook = Path(workdir) / f"{label}.yml"
        playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
        command = [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"@{vars_file}",
            str(playbook),
        ]
        env = dict(os.environ, ANSIBLE_HOME=str(Path(workdir) / "ansible-home"))
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
        timings[label] = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"ansible-playbook failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    return timings


def rate(count, seconds):
    return count / seconds if seconds else float("inf")


def compare(endpoint, sizes, workers, no_cache_max, with_ansible):
    unlimited = {api: 1e6 for api in AWS_IOT_DEFAULT_RATES}
    rows, ansible_line = [], None
    for index, count in enumerate(sizes):
        tag = f"{index}{count}"
        print(f"N={count}: boto3 loop ...", file=sys.stderr, flush=True)
        policy, group = setup(endpoint, f"loop{tag}")
        loop_seconds = boto3_loop(endpoint, make_boards(0x1000 + index, count), policy, group)

        print(f"N={count}: collection, AWS default limits ...", file=sys.stderr, flush=True)
        boards = make_boards(0x2000 + index, count)
        policy, group = setup(endpoint, f"coll{tag}")
        limited = collection(endpoint, devices_of(boards), policy, group, workers, AWS_IOT_DEFAULT_RATES)

        print(f"N={count}: collection, no limits ...", file=sys.stderr, flush=True)
        fast_policy, fast_group = setup(endpoint, f"fast{tag}")
        fast_devices = devices_of(make_boards(0x3000 + index, count))
        fast = collection(endpoint, fast_devices, fast_policy, fast_group, workers, unlimited)

        print(f"N={count}: no-change re-runs ...", file=sys.stderr, flush=True)
        cached = devices_of(boards, limited.results)
        rerun = collection(endpoint, cached, policy, group, workers, AWS_IOT_DEFAULT_RATES)
        if count <= no_cache_max:
            nocache = collection(endpoint, devices_of(boards), policy, group, workers, AWS_IOT_DEFAULT_RATES)
            nocache_cell = f"{nocache.seconds:6.2f} s {total_calls(nocache.summary):5d}"
        else:
            nocache_cell = f">={2 * count / 10:5.0f} s {2 * count + 4:5d}"
        rows.append(
            (
                count,
                rate(count, loop_seconds),
                rate(count, limited.seconds),
                rate(count, fast.seconds),
                f"{rerun.seconds:6.2f} s {total_calls(rerun.summary):5d}",
                nocache_cell,
            )
        )
        if with_ansible and index == len(sizes) - 1:
            print(f"N={count}: ansible-playbook ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory() as workdir:
                timings = time_ansible_task(endpoint, cached, policy, group, workdir)
            ansible_line = (count, timings, rerun.seconds)

    print()
    latency = (health(endpoint) or {}).get("iot_latency_ms") or 0
    print(
        f"Sandbox {endpoint} (+{latency:.0f} ms per IoT request); {workers} workers; devices/s, higher is better; "
        f"re-runs: wall time and API calls."
    )
    header = (
        f"{'N':>5} | {'boto3 loop':>10} | {'collection':>10} | {'ratio':>5} | {'coll. no limit':>14} | "
        f"{'ratio':>5} | {'no-change re-run':>16} | {'re-run w/o cached certs':>23}"
    )
    print(header)
    print("-" * len(header))
    for count, loop, limited, fast, rerun, nocache in rows:
        print(
            f"{count:5d} | {loop:10.1f} | {limited:10.1f} | {limited / loop:4.1f}x | {fast:14.1f} | "
            f"{fast / loop:4.1f}x | {rerun:>16} | {nocache:>23}"
        )
    print(
        f"collection = the module's engine at AWS's default quotas ({BOUNDING_API} "
        f"{AWS_IOT_DEFAULT_RATES[BOUNDING_API]:.0f}/s bounds it); 'no limit' = rate limiter off (the sandbox's own "
        f"speed)."
    )
    print("'>=' figures are not measured: the floor at ListThingPrincipals and DescribeCertificate 10/s each.")
    if ansible_line:
        count, timings, function_seconds = ansible_line
        task = timings["task"] - timings["empty"]
        print(
            f"ansible-playbook, one iot_fleet_registration task over {count} unchanged devices: playbook "
            f"{timings['task']:.2f} s, same playbook without the task {timings['empty']:.2f} s -> the task costs "
            f"{task:.2f} s, of which the engine {function_seconds:.2f} s: per-task overhead "
            f"{task - function_seconds:.2f} s (once per run, not per device)."
        )


def throttled_run(endpoint, count, workers, index=0):
    boards = make_boards(0x4000 + index, count)
    policy, group = setup(endpoint, f"throttled{index}")
    before = server_stats(endpoint) or {}
    print(f"N={count}: collection against the throttling sandbox ...", file=sys.stderr, flush=True)
    first = collection(endpoint, devices_of(boards), policy, group, workers, AWS_IOT_DEFAULT_RATES)
    rerun = collection(endpoint, devices_of(boards, first.results), policy, group, workers, AWS_IOT_DEFAULT_RATES)
    seconds, summary = first.seconds, first.summary
    after = server_stats(endpoint) or {}
    allowed = AWS_IOT_DEFAULT_RATES[BOUNDING_API]
    achieved = rate(count, seconds)
    refused = {
        op: n - before.get("throttled", {}).get(op, 0)
        for op, n in after.get("throttled", {}).items()
        if n - before.get("throttled", {}).get(op, 0)
    }
    print()
    print(f"Throttling sandbox ({after.get('mode')}) {endpoint}; {workers} workers; AWS default quotas on both sides.")
    print(f"{'devices':>8} | {'failed':>6} | {'seconds':>7} | {'devices/s':>9} | {'of ' + BOUNDING_API + ' 15/s':>31}")
    print(f"{count:8d} | {0:6d} | {seconds:7.1f} | {achieved:9.2f} | {100 * achieved / allowed:30.1f}%")
    print(f"floor at {allowed:.0f}/s: {count / allowed:.1f} s; calls: {summary['calls']}")
    print(f"ThrottlingException answered by the server: {refused or 'none'}; ", end="")
    print(f"seen by the client: {summary['throttled'] or 'none'}")
    print(f"no-change re-run: {rerun.seconds:.2f} s, {total_calls(rerun.summary)} calls {rerun.summary['calls']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", help="use this running sandbox instead of starting a private one")
    parser.add_argument("--sizes", default=None, help="comma-separated N (default 10,100,1000; 1000 with --throttle)")
    parser.add_argument("--workers", type=int, default=16, help="the module's max_workers (default 16)")
    parser.add_argument("--throttle", action="store_true", help="throttled run at AWS's quotas (private sandbox)")
    parser.add_argument(
        "--latency-ms", type=float, default=0, help="private sandbox: delay each IoT request by this much (default 0)"
    )
    parser.add_argument("--ansible", action="store_true", help="also time one ansible-playbook task (largest N)")
    parser.add_argument(
        "--no-cache-max", type=int, default=100, help="largest N to re-run without cached certificates (default 100)"
    )
    args = parser.parse_args()
    sizes = [int(n) for n in (args.sizes or ("1000" if args.throttle else "10,100,1000")).split(",")]

    def run(endpoint):
        if args.throttle:
            for index, count in enumerate(sizes):
                throttled_run(endpoint, count, args.workers, index)
        else:
            compare(endpoint, sizes, args.workers, args.no_cache_max, args.ansible)

    if args.endpoint:
        run(args.endpoint)
    else:
        with Sandbox(args.throttle, args.latency_ms) as sandbox:
            run(sandbox.endpoint)


if __name__ == "__main__":
    main()
