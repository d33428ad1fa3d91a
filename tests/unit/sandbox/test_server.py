"""A private sandbox server started through the CLI, on a free port with its own state dir."""

import hashlib
import os
import socket
import stat
import subprocess

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox import procs
from tests.unit.sandbox.helpers import THING
from tests.unit.sandbox.helpers import make_csr
from tests.unit.sandbox.helpers import policy_document
from tests.unit.sandbox.helpers import public_bytes


def test_up_again_is_a_no_op(server):
    pid = server.settings.pid_file.read_text()
    result = server.run("up")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert server.settings.pid_file.read_text() == pid


def test_status_prints_the_endpoint_on_its_own_line(server):
    result = server.run("status")
    assert result.returncode == 0
    assert server.settings.endpoint in result.stdout.splitlines()


def test_state_dir_layout(server):
    state = server.settings.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "ca").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "ca" / "ca.key").stat().st_mode) == 0o600
    assert (state / "ca" / "ca.pem").is_file() and (state / "moto.log").is_file()
    assert int((state / "moto.pid").read_text()) in server.pids


def test_env_prints_exports(server):
    lines = server.run("env").stdout.splitlines()
    assert f"export AWS_ENDPOINT_URL={server.settings.endpoint}" in lines
    assert "export AWS_ACCESS_KEY_ID=testing" in lines
    assert f"export AWS_DEFAULT_REGION={server.settings.region}" in lines


def test_boto3_round_trip(client):
    iot = client("iot")
    iot.create_thing(thingName="round-trip")
    assert iot.describe_thing(thingName="round-trip")["thingName"] == "round-trip"
    assert client("sts").get_caller_identity()["Account"] == "123456789012"


def test_certificate_from_csr_has_the_csr_key_and_verifies_against_the_ca(server, client):
    key, csr = make_csr()
    created = client("iot").create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)

    cert = x509.load_pem_x509_certificate(created["certificatePem"].encode())
    assert public_bytes(cert.public_key()) == public_bytes(key.public_key())
    ca = x509.load_pem_x509_certificate((server.settings.ca_dir / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert created["certificateId"] == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    described = client("iot").describe_certificate(certificateId=created["certificateId"])["certificateDescription"]
    assert described["status"] == "ACTIVE"


def test_malformed_csr_is_an_invalid_request(client):
    with pytest.raises(ClientError) as excinfo:
        client("iot").create_certificate_from_csr(certificateSigningRequest="not a csr", setAsActive=True)
    assert excinfo.value.response["Error"]["Code"] == "InvalidRequestException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_describe_table_has_table_id(client):
    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName="devices",
        KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    first = dynamodb.describe_table(TableName="devices")["Table"]["TableId"]
    assert first and dynamodb.describe_table(TableName="devices")["Table"]["TableId"] == first


def test_summary_lists_what_exists(server, client):
    iot = client("iot")
    iot.create_thing(thingName=THING)
    iot.create_thing_group(thingGroupName="quarantine")
    iot.create_policy(policyName="device", policyDocument=policy_document())
    iot.create_policy_version(policyName="device", policyDocument=policy_document(), setAsDefault=True)
    iot.create_topic_rule(
        ruleName="presence", topicRulePayload={"sql": "SELECT * FROM 'a/b'", "actions": [], "ruleDisabled": True}
    )
    result = server.run("summary")
    assert result.returncode == 0, result.stderr
    for expected in (THING, "quarantine", "device (2 versions)", "presence (disabled)", "Lambda functions (0)"):
        assert expected in result.stdout


def test_lifecycle_down_twice_and_stale_pid_files(instance):
    settings = instance.settings
    assert instance.run("status").returncode == 3
    assert settings.endpoint in instance.run("status").stdout.splitlines()
    assert instance.run("down").returncode == 0

    assert instance.run("up").returncode == 0
    pid = int(settings.pid_file.read_text())
    first, second = instance.run("down"), instance.run("down")
    assert (first.returncode, second.returncode) == (0, 0)
    assert "stopped" in first.stdout and "not running" in second.stdout
    assert not settings.pid_file.exists()
    assert not procs.is_alive(pid)  # gone, or a zombie waiting for init to reap it

    # A pid file left by a crash, naming a process that no longer exists.
    dead = subprocess.Popen(["true"])
    dead.wait()
    settings.pid_file.write_text(f"{dead.pid}\n")
    assert instance.run("status").returncode == 3
    result = instance.run("up")
    assert result.returncode == 0, result.stderr
    assert int(settings.pid_file.read_text()) != dead.pid
    assert instance.run("status").returncode == 0
    assert instance.run("down").returncode == 0

    # A stale pid file naming a live process that is not ours: leave the process alone.
    settings.pid_file.write_text(f"{os.getpid()}\n")
    result = instance.run("down")
    assert result.returncode == 0 and "stale" in result.stdout
    assert not settings.pid_file.exists()


def test_up_fails_with_the_log_tail_when_the_port_is_taken(instance):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", instance.settings.port))
        taken.listen()
        result = instance.run("up")
    assert result.returncode == 1
    assert "Address already in use" in result.stderr
    assert not instance.settings.pid_file.exists()
