"""iot_device_revocation against moto in process, with a stand-in for iot-data DeleteConnection."""

import datetime
import json
import re
import threading
from types import SimpleNamespace
from urllib.parse import unquote

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.iotfleet.aws.plugins.modules import iot_device_revocation

POLICY = "iotfleet_device_policy"
FLEET = "iotfleet_fleet"
QUARANTINE = "iotfleet_quarantine"
OTHER = "iotfleet_floor3"
TABLE = "iotfleet_devices"
DATA_ENDPOINT = "https://data-ats.iot.eu-north-1.amazonaws.com"
FAST = {api: 10000 for api in iot_device_revocation.CALLED_APIS}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
WRITES = {
    "DeleteCertificate",
    "DeleteConnection",
    "DeleteThing",
    "DetachPolicy",
    "DetachThingPrincipal",
    "UpdateCertificate",
    "UpdateItem",
    "UpdateThing",
    "UpdateThingGroupsForThing",
}
_SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())


def thing_name(number):
    return f"4827E2E5{number:04X}"


def certificate_pem(name):
    """A self-signed certificate (distinct serial, so a distinct id in moto), made in a millisecond."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(_SIGNING_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(_SIGNING_KEY, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(autouse=True)
def one_request_at_a_time(monkeypatch):
    """moto's IoT backend is not thread-safe (a listing racing a detach: "OrderedDict mutated during
    iteration"); the sandbox serialises IoT requests, and so does this, for the module's thread pool."""
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.Lock()
    process = BotocoreStubber.process_request

    def serialised(self, request):
        with lock:
            return process(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialised)


@pytest.fixture
def sessions(monkeypatch):
    """iot-data DeleteConnection, which moto 5.2.5 lacks: client ids in `live` have a session to drop."""
    from moto.iotdata.exceptions import ResourceNotFoundException
    from moto.iotdata.responses import IoTDataPlaneResponse

    state = SimpleNamespace(live=set(), requests=[])

    def delete_connection(self):
        client_id = unquote(self.path.split("/connections/", 1)[1].split("?", 1)[0])
        state.requests.append((client_id, {key: values[0] for key, values in self.querystring.items()}))
        if client_id not in state.live:
            raise ResourceNotFoundException()
        state.live.discard(client_id)
        return "{}"

    monkeypatch.setattr(IoTDataPlaneResponse, "delete_connection", delete_connection, raising=False)
    return state


@pytest.fixture
def fleet(iot, sessions):
    iot.create_policy(policyName=POLICY, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    for group in (FLEET, QUARANTINE, OTHER):
        iot.create_thing_group(thingGroupName=group)
    return iot


def provision(iot, name, certificates=1, status="ACTIVE", groups=(FLEET,), attributes=None):
    """A registered board: thing in `groups`, certificates with the device policy attached; returns their ids."""
    iot.create_thing(thingName=name, attributePayload={"attributes": attributes or {"owner": "alice"}})
    for group in groups:
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
    ids = []
    for _index in range(certificates):
        cert = iot.register_certificate_without_ca(certificatePem=certificate_pem(name), status=status)
        iot.attach_policy(policyName=POLICY, target=cert["certificateArn"])
        iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
        ids.append(cert["certificateId"])
    return ids


@pytest.fixture
def calls(monkeypatch):
    """HTTP requests every new client sends, per API, through a botocore event hook (thread-safe)."""
    counted = {}
    lock = threading.Lock()
    create_client = botocore.session.Session.create_client

    def counting_create_client(self, service_name, *args, **kwargs):
        client = create_client(self, service_name, *args, **kwargs)

        def count(event_name, **_kwargs):
            operation = event_name.rsplit(".", 1)[-1]
            with lock:
                counted[operation] = counted.get(operation, 0) + 1

        client.meta.events.register("before-send", count)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", counting_create_client)
    return counted


@pytest.fixture
def revoke(run_module, calls):
    def run(things, check_mode=False, diff=False, expect_failure=False, **options):
        calls.clear()
        args = {"things": things, "quarantine_group": QUARANTINE, "data_endpoint": DATA_ENDPOINT, "rate_limits": FAST}
        args.update(options)
        return run_module(iot_device_revocation, args, check_mode=check_mode, diff=diff, expect_failure=expect_failure)

    return run


def certificate(iot, certificate_id):
    return iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]


def assert_revoked(iot, name, certificate_ids, status="REVOKED"):
    for certificate_id in certificate_ids:
        cert = certificate(iot, certificate_id)
        assert cert["status"] == status
        assert iot.list_attached_policies(target=cert["certificateArn"])["policies"] == []
        assert iot.list_principal_things(principal=cert["certificateArn"])["things"] == []
    assert iot.list_thing_principals(thingName=name)["principals"] == []
    groups = iot.list_thing_groups_for_thing(thingName=name)["thingGroups"]
    assert [group["groupName"] for group in groups] == [QUARANTINE]
    assert ISO_UTC.match(iot.describe_thing(thingName=name)["attributes"]["revoked_at"])


def test_revokes_certificates_detaches_them_and_quarantines_the_thing(fleet, revoke, sessions):
    one, two = thing_name(1), thing_name(2)
    one_certs = provision(fleet, one, certificates=2, groups=(FLEET, OTHER))
    two_certs = provision(fleet, two)
    sessions.live.add(one)

    result = revoke([one, two])

    assert result["changed"] is True
    assert_revoked(fleet, one, one_certs)
    assert_revoked(fleet, two, two_certs)
    first, second = result["devices"]
    assert first["thing_name"] == one and first["missing"] is False and first["failed"] is False
    assert first["newly_revoked"] is True and first["changed"] is True
    assert first["revoked_at"] == fleet.describe_thing(thingName=one)["attributes"]["revoked_at"]
    assert fleet.describe_thing(thingName=one)["attributes"]["owner"] == "alice"
    assert first["thing_groups"] == [QUARANTINE] and first["devices_table_status"] is None
    assert sorted(first["certificates"], key=lambda c: c["certificate_id"]) == [
        {"certificate_id": c, "status_before": "ACTIVE", "status_after": "REVOKED"} for c in sorted(one_certs)
    ]
    a, b = sorted(one_certs)
    assert first["steps"] == [
        f"revoke_certificate {a}",
        f"revoke_certificate {b}",
        "drop_session",
        f"detach_policy {POLICY} {a}",
        f"detach_policy {POLICY} {b}",
        f"detach_thing_principal {a}",
        f"detach_thing_principal {b}",
        f"add_to_thing_group {QUARANTINE}",
        f"remove_from_thing_group {FLEET}",
        f"remove_from_thing_group {OTHER}",
        "set_revoked_at",
    ]
    assert "drop_session" not in second["steps"]  # no live session: nothing to drop, and no failure
    assert sessions.live == set()
    assert sorted(client_id for client_id, _query in sessions.requests) == [one, two]
    assert all(query == {"cleanSession": "true", "preventWillMessage": "true"} for _id, query in sessions.requests)
    summary = result["summary"]
    assert (summary["devices"], summary["newly_revoked"], summary["changed"], summary["failed"]) == (2, 2, 2, 0)


def test_second_run_changes_nothing(fleet, revoke, calls):
    names = [thing_name(1), thing_name(2)]
    for name in names:
        provision(fleet, name)
    first = revoke(names)

    again = revoke(names)

    assert again["changed"] is False
    for before, after in zip(first["devices"], again["devices"], strict=True):
        assert after["steps"] == [] and after["newly_revoked"] is False
        assert after["revoked_at"] == before["revoked_at"]
        assert after["certificates"] == []  # detached by the first run
    assert not WRITES & set(calls) - {"DeleteConnection"}
    assert again["summary"]["unchanged"] == 2


def test_inactive_mode_deactivates_and_revoked_stays_revoked(fleet, revoke, calls):
    name = thing_name(1)
    active, revoked = provision(fleet, name, certificates=2)
    fleet.update_certificate(certificateId=revoked, newStatus="REVOKED")

    result = revoke([name], certificate_status="INACTIVE")

    assert certificate(fleet, active)["status"] == "INACTIVE"
    assert certificate(fleet, revoked)["status"] == "REVOKED"
    statuses = {
        c["certificate_id"]: (c["status_before"], c["status_after"]) for c in result["devices"][0]["certificates"]
    }
    assert statuses == {active: ("ACTIVE", "INACTIVE"), revoked: ("REVOKED", "REVOKED")}
    assert f"deactivate_certificate {active}" in result["devices"][0]["steps"]
    assert calls["UpdateCertificate"] == 1
    assert_revoked(fleet, name, [revoked])


def test_a_revoked_certificate_is_never_changed(fleet, revoke, calls):
    name = thing_name(1)
    (cert,) = provision(fleet, name, status="REVOKED")

    for status in ("INACTIVE", "REVOKED"):
        fleet.attach_thing_principal(thingName=name, principal=certificate(fleet, cert)["certificateArn"])
        revoke([name], certificate_status=status)
        assert certificate(fleet, cert)["status"] == "REVOKED"
        assert "UpdateCertificate" not in calls


def test_unknown_thing_fails_naming_it_and_nothing_changes(fleet, revoke, calls):
    known = thing_name(1)
    (cert,) = provision(fleet, known)

    result = revoke([known, "4827E2E5FFFF", "NOPE"], expect_failure=True)

    assert result["msg"].startswith("things: no thing named 4827E2E5FFFF, NOPE in this account/region")
    assert "missing=ignore" in result["msg"]
    assert result["missing"] == ["4827E2E5FFFF", "NOPE"]
    assert certificate(fleet, cert)["status"] == "ACTIVE"
    assert not WRITES & set(calls)


def test_unknown_thing_is_reported_with_missing_ignore(fleet, revoke):
    known = thing_name(1)
    certs = provision(fleet, known)

    result = revoke(["4827E2E5FFFF", known], missing="ignore")

    unknown, revoked = result["devices"]
    assert unknown == {
        "thing_name": "4827E2E5FFFF",
        "missing": True,
        "certificates": [],
        "steps": [],
        "revoked_at": None,
        "newly_revoked": False,
        "thing_groups": [],
        "devices_table_status": None,
        "changed": False,
        "failed": False,
    }
    assert revoked["newly_revoked"] is True
    assert_revoked(fleet, known, certs)
    assert result["summary"]["missing"] == 1
    assert revoke(["4827E2E5FFFF"], missing="ignore")["changed"] is False


def test_delete_removes_the_thing_and_its_certificates(fleet, revoke, sessions):
    name, kept = thing_name(1), thing_name(2)
    certs = provision(fleet, name, certificates=2)
    provision(fleet, kept)
    sessions.live.add(name)

    result = revoke([name], delete=True)

    remaining = {c["certificateId"] for c in fleet.list_certificates()["certificates"]}
    assert len(remaining) == 1 and not remaining & set(certs)
    assert [t["thingName"] for t in fleet.list_things()["things"]] == [kept]
    steps = result["devices"][0]["steps"]
    assert steps[-3:] == [*(f"delete_certificate {c}" for c in sorted(certs)), "delete_thing"]
    assert steps.index("drop_session") < steps.index("delete_thing")
    assert not any(step.startswith(("add_to_thing_group", "set_revoked_at")) for step in steps)

    again = revoke([name], delete=True, expect_failure=True)
    assert "no thing named 4827E2E50001" in again["msg"] and "delete=true" in again["msg"]
    assert revoke([name], delete=True, missing="ignore")["changed"] is False


def test_check_mode_writes_nothing_and_diff_lists_the_plan(fleet, revoke, calls, sessions):
    name, done = thing_name(1), thing_name(2)
    (cert,) = provision(fleet, name, groups=(FLEET,))
    provision(fleet, done)
    revoke([done])
    sessions.live.add(name)

    result = revoke([name, done], check_mode=True, diff=True)

    assert result["changed"] is True
    assert not WRITES & set(calls)
    assert certificate(fleet, cert)["status"] == "ACTIVE"
    assert sessions.live == {name}
    device, unchanged = result["devices"]
    assert device["steps"] == [
        f"revoke_certificate {cert}",
        "drop_session",
        f"detach_policy {POLICY} {cert}",
        f"detach_thing_principal {cert}",
        f"add_to_thing_group {QUARANTINE}",
        f"remove_from_thing_group {FLEET}",
        "set_revoked_at",
    ]
    assert device["newly_revoked"] is True and ISO_UTC.match(device["revoked_at"])
    assert unchanged["steps"] == [] and unchanged["changed"] is False
    assert set(result["diff"]["before"]) == set(result["diff"]["after"]) == {name}
    assert result["diff"]["before"][name] == {
        "certificates": {cert: {"status": "ACTIVE", "policies": [POLICY], "attached_to_thing": True}},
        "thing_groups": [FLEET],
        "revoked_at": None,
    }
    assert result["diff"]["after"][name] == {
        "certificates": {cert: {"status": "REVOKED", "policies": [], "attached_to_thing": False}},
        "thing_groups": [QUARANTINE],
        "revoked_at": device["revoked_at"],
    }


def test_check_mode_of_delete(fleet, revoke, calls):
    name = thing_name(1)
    (cert,) = provision(fleet, name)

    result = revoke([name], delete=True, check_mode=True, diff=True)

    assert result["devices"][0]["steps"][-2:] == [f"delete_certificate {cert}", "delete_thing"]
    assert result["diff"]["after"] == {name: {}}
    assert not WRITES & set(calls)
    assert fleet.describe_thing(thingName=name)["thingName"] == name


def test_drop_sessions_false_asks_nothing(fleet, revoke, sessions, calls):
    name = thing_name(1)
    provision(fleet, name)
    sessions.live.add(name)

    result = revoke([name], drop_sessions=False)

    assert "drop_session" not in result["devices"][0]["steps"]
    assert sessions.requests == [] and "DeleteConnection" not in calls


def test_a_failing_device_does_not_stop_the_others(fleet, revoke):
    full, fine = thing_name(1), thing_name(2)
    full_certs = provision(fleet, full, attributes={"owner": "alice", "location": "lab", "floor": "3"})
    fine_certs = provision(fleet, fine)

    result = revoke([full, fine], expect_failure=True)

    assert result["msg"].startswith("1 of 2 devices could not be revoked completely")
    assert f"{full}: the thing has no thing type and already 3 attributes" in result["msg"]
    failed, revoked = result["devices"]
    assert failed["failed"] is True and "revoked_at could not be recorded" in failed["error"]
    assert failed["steps"][-1] == f"remove_from_thing_group {FLEET}"  # everything else was done
    assert certificate(fleet, full_certs[0])["status"] == "REVOKED"
    assert revoked["failed"] is False
    assert_revoked(fleet, fine, fine_certs)
    assert result["summary"]["failed"] == 1


def test_a_new_active_certificate_is_a_new_revocation(fleet, revoke, monkeypatch):
    name = thing_name(1)
    provision(fleet, name)
    monkeypatch.setattr(iot_device_revocation, "now_text", lambda: "2025-01-31T12:00:00Z")
    first = revoke([name])
    fresh = fleet.register_certificate_without_ca(certificatePem=certificate_pem(name), status="ACTIVE")
    fleet.attach_thing_principal(thingName=name, principal=fresh["certificateArn"])
    monkeypatch.setattr(iot_device_revocation, "now_text", lambda: "2025-02-01T08:30:00Z")

    again = revoke([name])

    assert first["devices"][0]["revoked_at"] == "2025-01-31T12:00:00Z"
    device = again["devices"][0]
    assert device["newly_revoked"] is True and device["revoked_at"] == "2025-02-01T08:30:00Z"
    assert device["steps"][0] == f"revoke_certificate {fresh['certificateId']}" and "set_revoked_at" in device["steps"]
    assert_revoked(fleet, name, [fresh["certificateId"]])


@pytest.fixture
def devices_table(aws):
    import boto3

    dynamodb = boto3.client("dynamodb", region_name=aws)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def test_devices_table_status_is_set_like_the_revoke_device_mutation(
    fleet, revoke, devices_table, sessions, monkeypatch
):
    listed, unlisted = thing_name(1), thing_name(2)
    (listed_cert,) = provision(fleet, listed)
    provision(fleet, unlisted)
    sessions.live.add(listed)
    row = {"device_id": {"S": listed}, "status": {"S": "connected"}, "owner": {"S": "alice"}}
    devices_table.put_item(TableName=TABLE, Item=row)
    monkeypatch.setattr(iot_device_revocation, "now_text", lambda: "2025-01-31T12:00:00Z")

    result = revoke([listed, unlisted], devices_table=TABLE, diff=True)

    first, second = result["devices"]
    assert first["devices_table_status"] == "revoked" and second["devices_table_status"] is None
    assert first["steps"].index("mark_revoked_in_devices_table") < first["steps"].index("drop_session")
    assert "mark_revoked_in_devices_table" not in second["steps"]
    item = devices_table.get_item(TableName=TABLE, Key={"device_id": {"S": listed}})["Item"]
    assert item == {
        **row,
        "status": {"S": "revoked"},
        "revoked_at": {"N": "1738324800000"},
        "revoked_certificate_id": {"S": listed_cert},  # the certificate readmitDevice compares a new one with
    }
    assert "Item" not in devices_table.get_item(TableName=TABLE, Key={"device_id": {"S": unlisted}})
    assert result["diff"]["before"][listed]["devices_table_status"] == "connected"
    assert result["diff"]["after"][listed]["devices_table_status"] == "revoked"
    assert result["devices_table"] == TABLE
    again = revoke([listed, unlisted], devices_table=TABLE)
    assert again["changed"] is False
    assert again["summary"]["api_calls"]["BatchGetItem"] == 1 and "UpdateItem" not in again["summary"]["api_calls"]


def test_a_devices_table_that_may_not_exist_yet(fleet, revoke, aws):
    name = thing_name(1)
    provision(fleet, name)

    result = revoke([name], devices_table=TABLE, devices_table_missing="ignore", diff=True)

    assert result["devices_table"] is None
    assert result["devices"][0]["devices_table_status"] is None
    assert "mark_revoked_in_devices_table" not in result["devices"][0]["steps"]
    assert "devices_table_status" not in result["diff"]["after"][name]


def test_devices_table_catches_up_with_an_earlier_revocation(fleet, revoke, devices_table, monkeypatch):
    name = thing_name(1)
    provision(fleet, name)
    monkeypatch.setattr(iot_device_revocation, "now_text", lambda: "2025-01-31T12:00:00Z")
    revoke([name])
    devices_table.put_item(TableName=TABLE, Item={"device_id": {"S": name}, "status": {"S": "disconnected"}})
    monkeypatch.setattr(iot_device_revocation, "now_text", lambda: "2025-03-01T00:00:00Z")

    device = revoke([name], devices_table=TABLE)["devices"][0]

    assert device["steps"] == ["mark_revoked_in_devices_table"] and device["newly_revoked"] is False
    item = devices_table.get_item(TableName=TABLE, Key={"device_id": {"S": name}})["Item"]
    assert item["revoked_at"] == {"N": "1738324800000"}  # when it was revoked, not now


def test_waits_for_the_asynchronous_detachment(fleet, revoke, monkeypatch):
    name = thing_name(1)
    provision(fleet, name)
    real = iot_device_revocation.list_principal_things
    looks = []

    def lagging(client, principal):
        looks.append(principal)
        return [name] if len(looks) < 3 else real(client, principal)

    monkeypatch.setattr(iot_device_revocation, "list_principal_things", lagging)
    monkeypatch.setattr(iot_device_revocation, "DETACH_POLL_INTERVAL", 0)

    assert revoke([name])["changed"] is True
    assert len(looks) == 3

    other = thing_name(2)
    provision(fleet, other)
    monkeypatch.setattr(iot_device_revocation, "list_principal_things", lambda client, principal: [other])
    result = revoke([other], wait_timeout=0, expect_failure=True)
    assert "were still attached to the thing after 0 s" in result["devices"][0]["error"]


def test_data_endpoint_defaults_to_the_accounts_data_ats_endpoint(fleet, revoke, calls, monkeypatch):
    """Without data_endpoint or endpoint_url, DeleteConnection goes to https://<iot:Data-ATS endpoint>."""
    name = thing_name(1)
    provision(fleet, name)
    urls = []
    create_client = botocore.session.Session.create_client

    def recording_create_client(self, service_name, *args, **kwargs):
        client = create_client(self, service_name, *args, **kwargs)
        if service_name == "iot-data":

            def answer(request, **_kwargs):
                urls.append(request.url)
                body = json.dumps({"message": "no connection"}).encode()
                headers = {"x-amzn-ErrorType": "ResourceNotFoundException"}
                return AWSResponse(request.url, 404, headers, SimpleNamespace(stream=lambda: [body], content=body))

            client.meta.events.register_first("before-send.iot-data-plane", answer)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", recording_create_client)

    revoke([name], data_endpoint=None)

    # moto makes up a new address on every DescribeEndpoint (the sandbox keeps one); its shape is AWS's.
    assert len(urls) == 1
    assert re.match(rf"^https://[a-z0-9]+-ats\.iot\.eu-north-1\.amazonaws\.com/connections/{name}\?", urls[0])
    assert calls["DescribeEndpoint"] == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"things": ["bad name"]}, "things: 'bad name' is not a valid thing name"),
        ({"quarantine_group": "missing"}, "quarantine_group: no thing group 'missing'"),
        ({"devices_table": "missing"}, "devices_table: no DynamoDB table 'missing'"),
        ({"rate_limits": {"UpdateCertificates": 5}}, "rate_limits: 'UpdateCertificates' is not an API this module"),
        ({"rate_limits": {"UpdateCertificate": 0}}, "rate_limits.UpdateCertificate: 0 is not a positive number"),
        ({"max_workers": 0}, "max_workers: must be between 1 and 64"),
        ({"wait_timeout": -1}, "wait_timeout: must be 0 or more seconds"),
    ],
)
def test_setup_errors_change_nothing(fleet, revoke, calls, args, expected):
    name = thing_name(1)
    (cert,) = provision(fleet, name)

    options = dict(args)
    result = revoke(options.pop("things", [name]), expect_failure=True, **options)

    assert expected in result["msg"]
    assert certificate(fleet, cert)["status"] == "ACTIVE"
    assert not WRITES & set(calls)


@pytest.fixture
def dynamic(monkeypatch):
    """Groups named here answer DescribeThingGroup with a query string (moto 5.2.5 has no dynamic groups)."""
    names = set()
    real = iot_device_revocation.describe_thing_group

    def describe(client, name):
        described = real(client, name)
        return {**described, "queryString": "attributes.owner:alice"} if name in names else described

    monkeypatch.setattr(iot_device_revocation, "describe_thing_group", describe)
    return names


def test_dynamic_quarantine_group_is_refused(fleet, revoke, dynamic):
    dynamic.add(QUARANTINE)

    result = revoke([thing_name(1)], expect_failure=True)

    assert f"{QUARANTINE!r} is a dynamic thing group" in result["msg"]


def test_dynamic_groups_are_left_to_their_query(fleet, revoke, dynamic):
    name = thing_name(1)
    provision(fleet, name, groups=(FLEET, OTHER))
    dynamic.add(OTHER)

    device = revoke([name])["devices"][0]

    assert f"remove_from_thing_group {FLEET}" in device["steps"]
    assert f"remove_from_thing_group {OTHER}" not in device["steps"]
    assert device["thing_groups"] == [OTHER, QUARANTINE]


def test_a_hundred_devices_in_one_call(fleet, revoke, calls, sessions):
    names = [thing_name(n) for n in range(100)]
    for name in names:
        provision(fleet, name)
    sessions.live.update(names[::2])

    result = revoke(names, max_workers=16)

    assert result["summary"]["newly_revoked"] == 100 and result["summary"]["failed"] == 0
    one_per_device = (
        "ListThingPrincipals "
        "UpdateCertificate DeleteConnection DetachPolicy DetachThingPrincipal ListPrincipalThings "
        "UpdateThingGroupsForThing UpdateThing"
    ).split()
    expected = {api: 100 for api in one_per_device}
    # Per run: the quarantine group checked, the fleet group looked up once (static), the endpoint not needed.
    expected["DescribeThingGroup"] = 2
    # Listings instead of a request per device: the things (DescribeThing each), their groups (3 groups:
    # ListThingGroupsForThing each), every certificate's status (DescribeCertificate each).
    # the policies of the certificates (one policy: ListAttachedPolicies each).
    expected.update(ListThings=1, ListThingGroups=1, ListThingsInThingGroup=3, ListCertificates=1)
    expected.update(ListPolicies=1, ListTargetsForPolicy=1)
    assert result["summary"]["api_calls"] == dict(sorted(expected.items()))
    assert {api: calls[api] for api in expected} == expected
    assert sum(1 for d in result["devices"] if "drop_session" in d["steps"]) == 50
    in_quarantine = fleet.list_things_in_thing_group(thingGroupName=QUARANTINE, maxResults=250)["things"]
    assert sorted(in_quarantine) == sorted(names)
    assert fleet.list_things_in_thing_group(thingGroupName=FLEET)["things"] == []

    again = revoke(names, max_workers=16)

    assert again["changed"] is False
    # No request per device: the listings, and no ACTIVE certificate to follow to its things.
    assert again["summary"]["api_calls"] == {
        "DescribeThingGroup": 1,
        "ListCertificates": 1,
        "ListThingGroups": 1,
        "ListThings": 1,
        "ListThingsInThingGroup": 3,
    }


def test_a_session_that_cannot_be_dropped_leaves_the_revocation_open(fleet, revoke, sessions, monkeypatch):
    from moto.iotdata.exceptions import InvalidRequestException
    from moto.iotdata.responses import IoTDataPlaneResponse

    name = thing_name(1)
    certs = provision(fleet, name)
    sessions.live.add(name)
    working = IoTDataPlaneResponse.delete_connection

    def refusing(self):
        raise InvalidRequestException("injected failure")

    monkeypatch.setattr(IoTDataPlaneResponse, "delete_connection", refusing)

    device = revoke([name], expect_failure=True)["devices"][0]

    assert "Failed to drop the MQTT connection" in device["error"] and "run again" in device["error"]
    assert device["steps"][-1] == f"remove_from_thing_group {FLEET}"
    assert "revoked_at" not in fleet.describe_thing(thingName=name)["attributes"]
    assert certificate(fleet, certs[0])["status"] == "REVOKED"

    monkeypatch.setattr(IoTDataPlaneResponse, "delete_connection", working)
    device = revoke([name])["devices"][0]

    assert device["steps"] == ["drop_session", "set_revoked_at"] and device["newly_revoked"] is True
    assert_revoked(fleet, name, certs)


@pytest.mark.parametrize("healthy", [0, 3], ids=["per-active-certificate", "per-thing"])
def test_a_rerun_fixes_a_certificate_reattached_and_reactivated_by_hand(fleet, revoke, calls, healthy):
    """The re-run's cheap check still finds a usable certificate on a revoked thing, whichever way it looks."""
    name, other = thing_name(1), thing_name(2)
    (cert,) = provision(fleet, name)
    provision(fleet, other)
    for number in range(healthy):  # devices in service: ACTIVE certificates the re-run does not follow then
        provision(fleet, thing_name(10 + number))
    revoke([name, other], certificate_status="INACTIVE")
    arn = certificate(fleet, cert)["certificateArn"]
    fleet.update_certificate(certificateId=cert, newStatus="ACTIVE")
    fleet.attach_thing_principal(thingName=name, principal=arn)
    fleet.attach_policy(policyName=POLICY, target=arn)

    again = revoke([name, other], certificate_status="INACTIVE")

    fixed, untouched = again["devices"]
    assert fixed["newly_revoked"] is True and f"deactivate_certificate {cert}" in fixed["steps"]
    assert f"detach_policy {POLICY} {cert}" in fixed["steps"] and f"detach_thing_principal {cert}" in fixed["steps"]
    assert untouched["changed"] is False
    assert_revoked(fleet, name, [cert], status="INACTIVE")
    # Then the one device that needs it is looked at closely: its principals, and the wait for the detachment.
    if healthy:
        # More ACTIVE certificates (4) than revoked devices to check (2): ListThingPrincipals per device.
        assert (calls["ListThingPrincipals"], calls["ListPrincipalThings"]) == (2 + 1, 1)
    else:
        # Fewer: the one ACTIVE certificate is followed to its thing instead.
        assert (calls["ListThingPrincipals"], calls["ListPrincipalThings"]) == (1, 1 + 1)


def test_a_revoked_thing_moved_back_to_a_group_is_quarantined_again(fleet, revoke):
    name = thing_name(1)
    provision(fleet, name)
    revoke([name])
    fleet.add_thing_to_thing_group(thingGroupName=FLEET, thingName=name)

    device = revoke([name])["devices"][0]

    assert device["steps"] == [f"remove_from_thing_group {FLEET}"] and device["newly_revoked"] is False
    assert device["thing_groups"] == [QUARANTINE]


@pytest.fixture
def graphql(monkeypatch, aws):
    """An AppSync API named like the stack's (moto), and the revokeDevice requests the module signs and sends."""
    import boto3

    appsync = boto3.client("appsync", region_name=aws)
    appsync.create_graphql_api(name="iotfleet_api", authenticationType="AWS_IAM")
    sent = []

    def post(self, document, variables):
        sent.append((self.url, document, variables, self.credentials.access_key))
        return {"data": {"revokeDevice": {"device_id": variables["device_id"], "status": "revoked"}}}

    monkeypatch.setattr(iot_device_revocation.BackendWriter, "post", post)
    return sent


def test_devices_table_is_written_through_the_revoke_device_mutation(fleet, revoke, devices_table, graphql, calls):
    import boto3

    name = thing_name(1)
    (cert,) = provision(fleet, name)
    row = {"device_id": {"S": name}, "status": {"S": "connected"}, "certificate_id": {"S": cert}}
    devices_table.put_item(TableName=TABLE, Item=row)

    device = revoke([name], devices_table=TABLE, devices_api="iotfleet_api")["devices"][0]

    assert "mark_revoked_in_devices_table" in device["steps"] and device["devices_table_status"] == "revoked"
    ((url, document, variables, _key),) = graphql
    assert "revokeDevice(device_id: $device_id" in document
    (api,) = boto3.client("appsync", region_name="eu-north-1").list_graphql_apis()["graphqlApis"]
    assert url == api["uris"]["GRAPHQL"]
    assert variables["device_id"] == name and variables["certificate_id"] == cert
    assert variables["timestamp"] == iot_device_revocation.epoch_ms(device["revoked_at"])
    assert "UpdateItem" not in calls  # not written behind AppSync's back


def test_a_refused_mutation_fails_the_device(fleet, revoke, devices_table, graphql, monkeypatch):
    name = thing_name(1)
    provision(fleet, name)
    devices_table.put_item(TableName=TABLE, Item={"device_id": {"S": name}, "status": {"S": "connected"}})
    monkeypatch.setattr(
        iot_device_revocation.BackendWriter, "post", lambda self, document, variables: {"errors": [{"message": "no"}]}
    )

    device = revoke([name], devices_table=TABLE, devices_api="iotfleet_api", expect_failure=True)["devices"][0]

    assert device["failed"] is True and "revokeDevice failed: no" in device["error"]
    assert "revoked_at" not in fleet.describe_thing(thingName=name)["attributes"]  # a re-run finishes it


def test_without_the_api_the_table_is_written_directly(fleet, revoke, devices_table, calls):
    name = thing_name(1)
    provision(fleet, name)
    devices_table.put_item(TableName=TABLE, Item={"device_id": {"S": name}, "status": {"S": "connected"}})

    result = revoke([name], devices_table=TABLE, devices_api="iotfleet_api")

    assert any("no AppSync API named 'iotfleet_api'" in w for w in result.get("warnings", []))
    assert calls["UpdateItem"] == 1
    item = devices_table.get_item(TableName=TABLE, Key={"device_id": {"S": name}})["Item"]
    assert item["status"] == {"S": "revoked"}


def test_more_groups_than_devices_are_read_per_device(fleet, revoke, calls):
    name = thing_name(1)
    provision(fleet, name, groups=(FLEET, OTHER))

    device = revoke([name])["devices"][0]

    assert calls["ListThingGroupsForThing"] == 1 and "ListThingsInThingGroup" not in calls
    assert f"remove_from_thing_group {OTHER}" in device["steps"] and device["thing_groups"] == [QUARANTINE]
    assert revoke([name])["changed"] is False


def test_a_thing_the_listing_does_not_hold_yet_is_described(fleet, revoke, calls, monkeypatch):
    """ListThings is eventually consistent: a thing made a moment ago is looked up on its own."""
    name = thing_name(1)
    certs = provision(fleet, name)
    monkeypatch.setattr(iot_device_revocation, "list_things_with_attributes", lambda client: [])

    result = revoke([name, "4827E2E5FFFF"], missing="ignore")

    assert calls["DescribeThing"] == 2
    assert [d["missing"] for d in result["devices"]] == [False, True]
    assert_revoked(fleet, name, certs)


def test_backend_writer_signs_each_mutation_and_keeps_its_connection():
    """BackendWriter against a local GraphQL endpoint: SigV4 for AppSync, one kept-alive connection, errors."""
    from http.server import BaseHTTPRequestHandler
    from http.server import ThreadingHTTPServer

    from botocore.credentials import Credentials

    seen = []

    class GraphQL(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers["Authorization"], self.client_address[1], body["variables"]))
            known = body["variables"]["device_id"] != "000000000000"
            answer = (
                {"data": {"revokeDevice": {"device_id": body["variables"]["device_id"], "status": "revoked"}}}
                if known
                else {"data": {"revokeDevice": None}, "errors": [{"message": "ConditionalCheckFailed"}]}
            )
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), GraphQL)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/graphql"
        writer = iot_device_revocation.BackendWriter(url, "eu-north-1", Credentials("AKIDEXAMPLE", "secret"))
        writer.revoke("4827E2E50001", 1738324800000, "abc")
        writer.revoke("4827E2E50002", 1738324800001)
        with pytest.raises(iot_device_revocation.BackendError, match="revokeDevice failed: ConditionalCheckFailed"):
            writer.revoke("000000000000", 1)
    finally:
        server.shutdown()
        server.server_close()

    assert [variables["device_id"] for _path, _auth, _port, variables in seen] == [
        "4827E2E50001",
        "4827E2E50002",
        "000000000000",
    ]
    assert seen[0][3] == {"device_id": "4827E2E50001", "timestamp": 1738324800000, "certificate_id": "abc"}
    assert all(path == "/graphql" for path, _auth, _port, _vars in seen)
    assert all(
        auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-north-1/appsync/aws4_request" in auth
        for _path, auth, _port, _vars in seen
    )
    assert len({port for _path, _auth, port, _vars in seen}) == 1  # one connection for the three requests


def test_more_policies_than_devices_are_read_per_certificate(fleet, revoke, calls):
    name = thing_name(1)
    (cert,) = provision(fleet, name)
    extra = "iotfleet_other_policy"
    fleet.create_policy(policyName=extra, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    fleet.attach_policy(policyName=extra, target=certificate(fleet, cert)["certificateArn"])

    device = revoke([name])["devices"][0]

    assert calls["ListAttachedPolicies"] == 1 and "ListTargetsForPolicy" not in calls
    assert {f"detach_policy {POLICY} {cert}", f"detach_policy {extra} {cert}"} <= set(device["steps"])
    assert_revoked(fleet, name, [cert])


def test_policies_are_read_from_their_targets_for_many_devices(fleet, revoke, calls):
    names = [thing_name(1), thing_name(2)]
    certs = [provision(fleet, name)[0] for name in names]

    result = revoke(names)

    assert calls["ListTargetsForPolicy"] == 1 and "ListAttachedPolicies" not in calls
    for device, cert in zip(result["devices"], certs, strict=True):
        assert f"detach_policy {POLICY} {cert}" in device["steps"]
    for name, cert in zip(names, certs, strict=True):
        assert_revoked(fleet, name, [cert])
