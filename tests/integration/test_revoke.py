"""revoke.yml against the private sandbox: revokes, re-runs with zero changes, refuses unknown devices.

The boards are registered with boto3 as the fleet rollout leaves them (thing in the fleet group, a
certificate the sandbox signs from the board's CSR, the device policy attached, a row in the devices
table), under a prefix of their own so the other tests' stack is not touched.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PREFIX = "revoketest"
POLICY = f"{PREFIX}_device_policy"
FLEET = f"{PREFIX}_fleet"
QUARANTINE = f"{PREFIX}_quarantine"
OTHER = f"{PREFIX}_lab"
TABLE = f"{PREFIX}_devices"
POLICY_DOCUMENT = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
)


@pytest.fixture(scope="module")
def stack(aws_client):
    """What revoke.yml needs of the cloud stack: the groups, the device policy and the devices table."""
    iot, dynamodb = aws_client("iot"), aws_client("dynamodb")
    for group in (FLEET, QUARANTINE, OTHER):
        iot.create_thing_group(thingGroupName=group)
    iot.create_policy(policyName=POLICY, policyDocument=POLICY_DOCUMENT)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return iot


@pytest.fixture(scope="module")
def session_args(sandbox):
    """Nothing when the sandbox answers iot-data DeleteConnection; else -e drop_sessions=false (moto 5.2.5 has none)."""
    import boto3

    client = boto3.client(
        "iot-data",
        endpoint_url=sandbox["endpoint"],
        region_name="eu-north-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        client.delete_connection(clientId="revoke-test-probe")
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            return ["-e", "drop_sessions=false"]
    return []


@pytest.fixture
def revoke(playbook, stack, session_args):
    # No Discord messages unless a test names a webhook (a later -e wins): the sandbox inventory points
    # iotfleet_discord_webhook_url at the sandbox's stand-in, which would make every revoking run change two tasks.
    no_discord = ("-e", "iotfleet_discord_webhook_url=")

    def run(*args):
        return playbook("playbooks/revoke.yml", "-e", f"iotfleet_prefix={PREFIX}", *no_discord, *session_args, *args)

    return run


def register(aws_client, name, groups=(FLEET,), row=True):
    """A board as the fleet rollout leaves it; returns its certificate id."""
    iot = aws_client("iot")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    iot.create_thing(thingName=name, attributePayload={"attributes": {"owner": "alice"}})
    for group in groups:
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
    cert = iot.create_certificate_from_csr(
        certificateSigningRequest=csr.public_bytes(serialization.Encoding.PEM).decode(), setAsActive=True
    )
    iot.attach_policy(policyName=POLICY, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
    if row:
        item = {"device_id": {"S": name}, "status": {"S": "connected"}, "certificate_id": {"S": cert["certificateId"]}}
        aws_client("dynamodb").put_item(TableName=TABLE, Item=item)
    return cert["certificateId"]


def certificate(iot, certificate_id):
    return iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]


def assert_revoked(aws_client, name, certificate_id, row=True):
    iot = aws_client("iot")
    cert = certificate(iot, certificate_id)
    assert cert["status"] == "REVOKED"
    assert iot.list_attached_policies(target=cert["certificateArn"])["policies"] == []
    assert iot.list_principal_things(principal=cert["certificateArn"])["things"] == []
    assert iot.list_thing_principals(thingName=name)["principals"] == []
    groups = iot.list_thing_groups_for_thing(thingName=name)["thingGroups"]
    assert [group["groupName"] for group in groups] == [QUARANTINE]
    assert "revoked_at" in iot.describe_thing(thingName=name)["attributes"]
    item = aws_client("dynamodb").get_item(TableName=TABLE, Key={"device_id": {"S": name}}).get("Item")
    if row:
        assert item["status"] == {"S": "revoked"} and "revoked_at" in item
    else:
        assert item is None


def test_revoke_twice_and_the_second_run_changes_nothing(revoke, aws_client):
    one, two = "AB0000000001", "AB0000000002"
    one_cert = register(aws_client, one, groups=(FLEET, OTHER))
    two_cert = register(aws_client, two, row=False)

    first = revoke("-e", f"devices={one},{two}")

    assert first.returncode == 0, first.output
    assert first.changed == 1, first.output
    assert_revoked(aws_client, one, one_cert)
    assert_revoked(aws_client, two, two_cert, row=False)
    assert f"revoke_certificate {one_cert}" in first.output and "mark_revoked_in_devices_table" in first.output

    again = revoke("-e", f"devices={one},{two}")

    assert again.returncode == 0, again.output
    assert again.changed == 0, again.output


def test_check_mode_shows_the_plan_and_writes_nothing(revoke, aws_client):
    name = "AB0000000003"
    cert = register(aws_client, name)

    check = revoke("-e", f"devices={name}", "--check", "--diff")

    assert check.returncode == 0, check.output
    for step in (f"revoke_certificate {cert}", f"detach_thing_principal {cert}", f"add_to_thing_group {QUARANTINE}"):
        assert step in check.output
    assert "status: REVOKED" in check.output  # the diff
    iot = aws_client("iot")
    assert certificate(iot, cert)["status"] == "ACTIVE"
    assert iot.list_thing_principals(thingName=name)["principals"] != []
    item = aws_client("dynamodb").get_item(TableName=TABLE, Key={"device_id": {"S": name}})["Item"]
    assert item["status"] == {"S": "connected"}


def test_unknown_device_fails_and_is_tolerated_with_missing_ignore(revoke, aws_client):
    known = "AB0000000004"
    cert = register(aws_client, known)

    refused = revoke("-e", f"devices={known},AB00000000FF")

    assert refused.returncode != 0
    assert "no thing named AB00000000FF" in refused.output
    assert certificate(aws_client("iot"), cert)["status"] == "ACTIVE"

    tolerated = revoke("-e", f"devices={known},AB00000000FF", "-e", "missing=ignore")

    assert tolerated.returncode == 0, tolerated.output
    assert tolerated.changed == 1
    assert_revoked(aws_client, known, cert)
    assert revoke("-e", "devices=AB00000000FF", "-e", "missing=ignore").changed == 0


def test_revoke_with_delete(revoke, aws_client):
    name = "AB0000000005"
    cert = register(aws_client, name)

    deleted = revoke("-e", f"devices={name}", "-e", "delete=true")

    assert deleted.returncode == 0, deleted.output
    iot = aws_client("iot")
    assert name not in {thing["thingName"] for thing in iot.list_things(maxResults=250)["things"]}
    assert cert not in {c["certificateId"] for c in iot.list_certificates(pageSize=250)["certificates"]}
    item = aws_client("dynamodb").get_item(TableName=TABLE, Key={"device_id": {"S": name}})["Item"]
    assert item["status"] == {"S": "revoked"}

    again = revoke("-e", f"devices={name}", "-e", "delete=true", "-e", "missing=ignore")
    assert again.returncode == 0 and again.changed == 0, again.output


def test_a_board_rotated_back_is_revoked_again(revoke, aws_client):
    """What fleet.yml -e rotate_certificate=true leaves (a new ACTIVE certificate, the fleet group) is revoked anew."""
    name = "AB0000000009"
    old_cert = register(aws_client, name)
    assert revoke("-e", f"devices={name}").returncode == 0
    iot = aws_client("iot")
    first_revoked_at = iot.describe_thing(thingName=name)["attributes"]["revoked_at"]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    new_cert = iot.create_certificate_from_csr(
        certificateSigningRequest=csr.public_bytes(serialization.Encoding.PEM).decode(), setAsActive=True
    )
    iot.attach_policy(policyName=POLICY, target=new_cert["certificateArn"])
    iot.attach_thing_principal(thingName=name, principal=new_cert["certificateArn"])
    iot.update_thing_groups_for_thing(thingName=name, thingGroupsToAdd=[FLEET], thingGroupsToRemove=[QUARANTINE])

    again = revoke("-e", f"devices={name}")

    assert again.returncode == 0, again.output
    assert again.changed == 1 and "set_revoked_at" in again.output
    assert_revoked(aws_client, name, new_cert["certificateId"])
    assert certificate(iot, old_cert)["status"] == "REVOKED"
    assert iot.describe_thing(thingName=name)["attributes"]["revoked_at"] > first_revoked_at


def test_the_inventory_group_revoked(revoke, aws_client, tmp_path):
    by_var, by_name = "AB0000000006", "AB0000000007"
    certs = {by_var: register(aws_client, by_var), by_name: register(aws_client, by_name)}
    inventory = tmp_path / "revoked.yml"
    inventory.write_text(
        f"revoked:\n  hosts:\n    board6:\n      thing_name: {by_var}\n    {by_name}:\n"
        f"  vars:\n    ansible_connection: local\n"
    )

    run = revoke("-i", "inventories/local", "-i", str(inventory))

    assert run.returncode == 0, run.output
    for name, cert in certs.items():
        assert_revoked(aws_client, name, cert)
    assert revoke("-i", "inventories/local", "-i", str(inventory)).changed == 0


def test_nothing_to_revoke_is_a_clear_error(revoke):
    run = revoke()

    assert run.returncode != 0
    assert "Nothing to revoke" in run.output


def test_revoke_with_drop_sessions_on(revoke, aws_client, session_args):
    if session_args:
        pytest.skip("the sandbox has no iot-data DeleteConnection (moto 5.2.5 has none; the stand-in is pending)")
    name = "AB0000000008"
    cert = register(aws_client, name)

    run = revoke("-e", f"devices={name}")

    assert run.returncode == 0, run.output
    assert_revoked(aws_client, name, cert)


class DiscordStandIn(BaseHTTPRequestHandler):
    """Records each webhook message; answers 204 like Discord."""

    def do_POST(self):
        self.server.messages.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def discord():
    server = ThreadingHTTPServer(("127.0.0.1", 0), DiscordStandIn)
    server.messages = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_one_discord_message_per_newly_revoked_device_and_none_on_a_rerun(revoke, aws_client, discord):
    one, two = "AB00000000D1", "AB00000000D2"
    register(aws_client, one)
    register(aws_client, two)
    webhook = f"iotfleet_discord_webhook_url=http://127.0.0.1:{discord.server_port}/api/webhooks/1/token"

    first = revoke("-e", f"devices={one},{two}", "-e", webhook)
    assert first.returncode == 0, first.output
    assert sorted(message["content"] for message in discord.messages) == [
        f"Device update\nDevice: {one}\nStatus: revoked",
        f"Device update\nDevice: {two}\nStatus: revoked",
    ]
    assert {message["username"] for message in discord.messages} == {"AWS-Webhook"}
    assert "/api/webhooks/1/token" not in first.output

    again = revoke("-e", f"devices={one},{two}", "-e", webhook)
    assert again.returncode == 0, again.output
    assert len(discord.messages) == 2
