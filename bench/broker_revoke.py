"""How fast the sandbox's MQTT broker drops a revoked device, and a DeleteConnection, on a private sandbox.

Run from the repository root with the project's venv:

    .venv/bin/python bench/broker_revoke.py               # 10 rounds
    .venv/bin/python bench/broker_revoke.py --rounds 50

Per round: two fresh devices (CreateCertificateFromCsr, the collection's device policy, thing
attached), both connected over TLS with paho-mqtt (MQTT v5) and a third that stays connected the
whole run. Then UpdateCertificate(REVOKED) for the first, timed until its client sees the
disconnect, and its reconnect must be refused; DeleteConnection for the second, timed until the
call returns and until its client sees the disconnect. At the end the bystander must still be
connected. Printed: median, p90 and max of each, in ms (the issue asks for under 5 s).
"""

import argparse
import dataclasses
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3
import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox import broker  # noqa: E402
from sandbox.settings import PORT_ENVS  # noqa: E402
from sandbox.settings import free_ports  # noqa: E402
from sandbox.settings import load_settings  # noqa: E402
from sandbox.settings import private_env  # noqa: E402
from tests.integration.conftest import register_device  # noqa: E402
from tests.integration.conftest import sandbox_cli  # noqa: E402

REGION = "eu-north-1"
POLICY = "brokerbench_device"


class Device:
    counter = 0x300000000000

    def __init__(self, iot, settings, folder: Path):
        Device.counter += 1
        self.thing = f"{Device.counter:012X}"
        self.cert, self.key = folder / f"{self.thing}.crt", folder / f"{self.thing}.key"
        self.certificate_id = register_device(iot, self.thing, POLICY, self.cert, self.key)["certificateId"]
        self.settings = settings
        rule = f"rule\t{self.thing}\tallow\tconnect\t"
        acl = broker.acl_file(broker.broker_dir(settings))
        while rule not in acl.read_text():
            time.sleep(0.01)

    def connect(self):
        """(paho client, connack code, queue of disconnect times)."""
        connacks, drops = queue.Queue(), queue.Queue()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.thing, protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=str(self.settings.ca_dir / "ca.pem"), certfile=str(self.cert), keyfile=str(self.key))
        client.reconnect_delay_set(60, 60)
        client.on_connect = lambda _c, _u, _f, code, _p: connacks.put(code.value)
        client.on_disconnect = lambda _c, _u, _f, _code, _p: drops.put(time.monotonic())
        client.connect(self.settings.host, self.settings.mqtt_port)
        client.loop_start()
        return client, connacks.get(timeout=10), drops


def summary(name, values):
    values = sorted(v * 1000 for v in values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    print(f"{name:45s} median {statistics.median(values):6.0f} ms  p90 {p90:6.0f} ms  max {values[-1]:6.0f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="brokerbench-"))
    port, appsync_port, mqtt_port, *_others = ports = free_ports(len(PORT_ENVS))
    env = private_env(work / "state", ports, IOTFLEET_SANDBOX_BOARDS="none")
    settings = dataclasses.replace(
        load_settings(state_dir=work / "state", port=port), appsync_port=appsync_port, mqtt_port=mqtt_port
    )
    started = sandbox_cli("up", state_dir=settings.state_dir, port=settings.port, env=env, timeout=120)
    if started.returncode != 0:
        raise SystemExit(started.stdout + started.stderr)
    try:
        client_args = dict(endpoint_url=settings.endpoint, region_name=REGION)
        client_args.update(aws_access_key_id="testing", aws_secret_access_key="testing")
        iot, data = boto3.client("iot", **client_args), boto3.client("iot-data", **client_args)
        template = (ROOT / "roles" / "iot_core" / "templates" / "device_policy.json.j2").read_text()
        iot.create_policy(
            policyName=POLICY, policyDocument=template.replace("{{ _iot_arn }}", f"arn:aws:iot:{REGION}:123456789012")
        )
        bystander, code, bystander_drops = Device(iot, settings, work).connect()
        assert code == 0, code
        revoked, deleted, deleted_call = [], [], []
        for _round in range(args.rounds):
            one, two = Device(iot, settings, work), Device(iot, settings, work)
            (c1, code1, drops1), (c2, code2, drops2) = one.connect(), two.connect()
            assert code1 == code2 == 0, (code1, code2)
            started = time.monotonic()
            iot.update_certificate(certificateId=one.certificate_id, newStatus="REVOKED")
            revoked.append(drops1.get(timeout=10) - started)
            c1.loop_stop()
            again, code, _drops = one.connect()
            again.loop_stop()
            assert code == 135, f"a revoked certificate reconnected: {code}"
            started = time.monotonic()
            data.delete_connection(clientId=two.thing)
            deleted_call.append(time.monotonic() - started)
            deleted.append(drops2.get(timeout=10) - started)
            c2.loop_stop()
        assert bystander_drops.empty() and bystander.is_connected(), "the bystander was disconnected"
        print(f"{args.rounds} rounds, Mosquitto on 127.0.0.1:{settings.mqtt_port}; the bystander stayed connected")
        summary("UpdateCertificate(REVOKED) -> session dropped", revoked)
        summary("DeleteConnection -> session dropped", deleted)
        summary("DeleteConnection call (returns once dropped)", deleted_call)
        bystander.disconnect()
        bystander.loop_stop()
    finally:
        sandbox_cli("down", state_dir=settings.state_dir, port=settings.port, env=env, timeout=120)


if __name__ == "__main__":
    main()
