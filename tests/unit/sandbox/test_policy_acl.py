"""The broker's access rules: IoT policies rendered per certificate, and the state file the moto process writes."""

import json
import time
from pathlib import Path

import boto3
import pytest

from sandbox import broker
from sandbox import broker_hook
from sandbox import moto_ext
from sandbox import policy_acl
from sandbox.policy_acl import CertificateAccess
from sandbox.policy_acl import Thing
from tests.unit.sandbox.helpers import make_csr

ROOT = Path(__file__).resolve().parents[3]
ARN = "arn:aws:iot:eu-north-1:123456789012"
A, B = "4827E2E59190", "AABBCCDDEEFF"


def seed_policy() -> str:
    """The collection's device policy (roles/iot_core), rendered as the role does."""
    template = (ROOT / "roles" / "iot_core" / "templates" / "device_policy.json.j2").read_text()
    return template.replace("{{ _iot_arn }}", ARN)


def access(documents, things=(A,), status="ACTIVE") -> CertificateAccess:
    things = [Thing(name) for name in things]
    return CertificateAccess("c" * 64, status, things, policy_acl.render_rules(documents, things))


def allowed(cert, client_id, action, name) -> bool:
    return policy_acl.is_allowed(cert, ARN, client_id, action, name)


def statement(effect, action, resource, **extra) -> str:
    return json.dumps({"Statement": [{"Effect": effect, "Action": action, "Resource": resource, **extra}]})


# ---------------------------------------------------------------- the seed's device policy


def test_seed_policy_lets_a_device_connect_only_as_its_own_thing():
    cert = access([seed_policy()])
    assert allowed(cert, A, "connect", A)
    assert not allowed(cert, B, "connect", B)  # another thing's name: not attached, so no ThingName
    assert not allowed(cert, "iotfleet-rules-engine", "connect", "iotfleet-rules-engine")


@pytest.mark.parametrize(
    ("action", "name", "expected"),
    [
        ("publish", f"{A}/telemetry", True),
        ("publish", f"$aws/things/{A}/shadow/update", True),
        ("publish", f"$aws/things/{A}/shadow/name/x/update", True),  # `*` spans levels, as in AWS
        ("publish", f"{B}/telemetry", False),
        ("publish", f"{A}/other", False),
        ("publish", f"$aws/things/{B}/shadow/update", False),
        ("subscribe", f"{A}/downlink", True),
        ("subscribe", f"$aws/things/{A}/shadow/update/delta", True),
        ("subscribe", f"{A}/telemetry", False),
        ("subscribe", f"{B}/downlink", False),
        ("subscribe", "#", False),
        ("subscribe", "+/downlink", False),
        ("receive", f"{A}/downlink", True),
        ("receive", f"{B}/downlink", False),
    ],
)
def test_seed_policy_topics(action, name, expected):
    assert allowed(access([seed_policy()]), A, action, name) is expected


def test_seed_policy_rules_apply_only_to_the_connection_named_after_the_thing():
    rules = access([seed_policy()], things=(A, B)).rules
    assert {rule.context for rule in rules} == {A, B}
    assert all(A in rule.pattern for rule in rules if rule.context == A)
    connect = [rule.pattern for rule in rules if rule.action == "connect"]
    assert sorted(connect) == [f"{ARN}:client/{A}", f"{ARN}:client/{B}"]


def test_nothing_is_allowed_to_a_certificate_that_is_not_active():
    for status in ("INACTIVE", "REVOKED", "PENDING_TRANSFER"):
        assert not allowed(access([seed_policy()], status=status), A, "connect", A)


def test_a_certificate_without_policy_or_thing_gets_nothing():
    assert not allowed(access([]), A, "connect", A)
    assert not allowed(access([seed_policy()], things=()), A, "connect", A)


# ---------------------------------------------------------------- evaluation rules


def test_explicit_deny_wins_over_allow():
    documents = [statement("Allow", "iot:*", "*"), statement("Deny", "iot:Publish", f"{ARN}:topic/secret/*")]
    cert = access(documents)
    assert allowed(cert, "anything", "publish", "public/x")
    assert not allowed(cert, "anything", "publish", "secret/x")
    assert allowed(cert, "anything", "subscribe", "secret/#")


def test_action_wildcards_and_lists():
    cert = access([statement("Allow", ["iot:Pub*", "iot:Connect"], "*")])
    assert allowed(cert, "x", "publish", "t")
    assert allowed(cert, "x", "connect", "x")
    assert not allowed(cert, "x", "subscribe", "t")
    assert not allowed(cert, "x", "receive", "t")
    assert allowed(access([statement("Allow", "*", "*")]), "x", "receive", "t")


def test_question_mark_matches_one_character():
    cert = access([statement("Allow", "iot:Connect", f"{ARN}:client/dev-?")])
    assert allowed(cert, "dev-1", "connect", "dev-1")
    assert not allowed(cert, "dev-12", "connect", "dev-12")


def test_client_id_variable_is_left_for_the_broker_and_matches_the_connection():
    cert = access(
        [
            statement(
                "Allow",
                ["iot:Connect", "iot:Publish"],
                [f"{ARN}:client/${{iot:ClientId}}", f"{ARN}:topic/${{iot:ClientId}}/out"],
            )
        ]
    )
    assert any(policy_acl.CLIENT_ID_VARIABLE in rule.pattern for rule in cert.rules)
    assert allowed(cert, "sensor-7", "connect", "sensor-7")
    assert allowed(cert, "sensor-7", "publish", "sensor-7/out")
    assert not allowed(cert, "sensor-7", "publish", "sensor-8/out")


def test_thing_attributes_and_type_resolve_for_the_attached_thing():
    doc = statement("Allow", "iot:Publish", f"{ARN}:topic/site/${{iot:Connection.Thing.Attributes[site]}}/*")
    things = [Thing(A, "sensor", {"site": "lab"})]
    cert = CertificateAccess("c" * 64, "ACTIVE", things, policy_acl.render_rules([doc], things))
    assert allowed(cert, A, "publish", "site/lab/t")
    assert not allowed(cert, A, "publish", "site/home/t")
    assert not allowed(cert, B, "publish", "site/lab/t")


def test_unresolvable_variables_grant_nothing():
    cert = access([statement("Allow", "iot:Connect", f"{ARN}:client/${{iot:Certificate.Subject.CommonName}}")])
    assert cert.rules == []


@pytest.mark.parametrize(
    "document",
    [
        statement("Allow", "iot:*", "*", Condition={"Bool": {"iot:Connection.Thing.IsAttached": "true"}}),
        json.dumps({"Statement": [{"Effect": "Allow", "NotAction": "iot:Publish", "Resource": "*"}]}),
        json.dumps({"Statement": [{"Effect": "Allow", "Action": "iot:*", "NotResource": "x"}]}),
        "not json",
        json.dumps(["not", "an", "object"]),
    ],
)
def test_what_cannot_be_evaluated_grants_nothing(document):
    assert access([document]).rules == []


def test_a_conditional_deny_still_denies():
    documents = [statement("Allow", "iot:*", "*"), statement("Deny", "iot:Connect", "*", Condition={"x": {}})]
    assert not allowed(access(documents), A, "connect", A)


# ---------------------------------------------------------------- the state file


def test_state_file_round_trips():
    cert = access([seed_policy()], things=(A, B))
    text = policy_acl.format_state(ARN, [cert])
    assert text.splitlines()[0] == policy_acl.FORMAT_HEADER
    prefix, parsed = policy_acl.parse_state(text)
    assert prefix == ARN
    assert [(c.certificate_id, c.status, [t.name for t in c.things], c.rules) for c in parsed] == [
        (cert.certificate_id, "ACTIVE", [A, B], cert.rules)
    ]


def test_write_state_replaces_the_file_atomically_and_only_when_it_changes(tmp_path):
    path = tmp_path / "acl.txt"
    assert policy_acl.write_state(path, "one\n") is True
    inode = path.stat().st_ino
    assert policy_acl.write_state(path, "one\n") is False
    assert path.stat().st_ino == inode
    assert policy_acl.write_state(path, "two\n") is True
    assert path.read_text() == "two\n" and path.stat().st_ino != inode  # renamed into place, never rewritten
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["acl.txt"]


def test_patterns_with_tabs_or_newlines_are_dropped():
    assert access([statement("Allow", "iot:Publish", f"{ARN}:topic/a\tb")]).rules == []


# ---------------------------------------------------------------- the moto process writes it from the registry


@pytest.fixture
def registry(aws, tmp_path, monkeypatch):
    from moto.core.config import default_user_config

    monkeypatch.setitem(default_user_config, "iot", {"use_valid_cert": True})
    monkeypatch.setattr(broker_hook, "DEBOUNCE_S", 0.0)
    folder = tmp_path / "broker"
    moto_ext.apply(tmp_path / "ca", broker_dir=folder, region=aws)
    try:
        yield boto3.client("iot"), folder
    finally:
        moto_ext.revert()


def wait_for_state(folder, predicate, timeout=5.0):
    """The parsed state file once `predicate(certificates)` holds (the writer is a background thread)."""
    deadline = time.monotonic() + timeout
    while True:
        prefix, certificates = policy_acl.parse_state(broker.acl_file(folder).read_text())
        if predicate(certificates) or time.monotonic() > deadline:
            return prefix, {cert.certificate_id: cert for cert in certificates}
        time.sleep(0.02)


def register(iot, thing):
    created = iot.create_certificate_from_csr(certificateSigningRequest=make_csr()[1], setAsActive=True)
    iot.create_thing(thingName=thing)
    iot.attach_policy(policyName="device", target=created["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=created["certificateArn"])
    return created


def test_state_file_follows_the_registry(registry):
    iot, folder = registry
    prefix, certificates = wait_for_state(folder, lambda certs: True)
    assert (prefix, certificates) == (ARN, {})  # written at start: a restarted server forgets old rules
    iot.create_policy(policyName="device", policyDocument=seed_policy())
    created = register(iot, A)
    cert_id = created["certificateId"]

    def rules_of(certs, cert_id=cert_id):
        return [c for c in certs if c.certificate_id == cert_id and c.rules]

    _prefix, certificates = wait_for_state(folder, rules_of)
    cert = certificates[cert_id]
    assert cert.status == "ACTIVE" and [t.name for t in cert.things] == [A]
    assert policy_acl.is_allowed(cert, ARN, A, "publish", f"{A}/telemetry")

    iot.update_certificate(certificateId=cert_id, newStatus="REVOKED")
    _prefix, certificates = wait_for_state(folder, lambda certs: certs and certs[0].status == "REVOKED")
    assert certificates[cert_id].status == "REVOKED"

    iot.detach_policy(policyName="device", target=created["certificateArn"])
    _prefix, certificates = wait_for_state(folder, lambda certs: not certs[0].rules)
    assert certificates[cert_id].rules == []

    iot.detach_thing_principal(thingName=A, principal=created["certificateArn"])
    iot.delete_certificate(certificateId=cert_id)
    _prefix, certificates = wait_for_state(folder, lambda certs: not certs)
    assert certificates == {}


def test_a_new_default_policy_version_changes_the_rules(registry):
    iot, folder = registry
    iot.create_policy(policyName="device", policyDocument=seed_policy())
    cert_id = register(iot, A)["certificateId"]
    wait_for_state(folder, lambda certs: certs and certs[0].rules)
    narrower = statement("Allow", "iot:Connect", f"{ARN}:client/${{iot:Connection.Thing.ThingName}}")
    iot.create_policy_version(policyName="device", policyDocument=narrower, setAsDefault=True)
    _prefix, certificates = wait_for_state(folder, lambda certs: len(certs[0].rules) == 1)
    assert [rule.action for rule in certificates[cert_id].rules] == ["connect"]


def test_delete_connection_of_a_client_that_is_not_connected_is_404(registry):
    iot, _folder = registry
    data = boto3.client("iot-data", region_name=iot.meta.region_name)
    with pytest.raises(data.exceptions.ResourceNotFoundException):
        data.delete_connection(clientId=A)
