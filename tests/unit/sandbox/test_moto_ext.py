"""The moto extension applied in process: each patch against the gap it closes."""

import hashlib
import re
from datetime import UTC
from datetime import datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import moto_ext
from sandbox.ca import issue_certificate
from sandbox.ca import load_csr
from tests.unit.sandbox.helpers import make_csr
from tests.unit.sandbox.helpers import policy_document
from tests.unit.sandbox.helpers import public_bytes
from tests.unit.sandbox.helpers import tampered_csr


@pytest.fixture
def iot(ext):
    return boto3.client("iot")


def error_of(excinfo) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_certificate_from_csr_carries_the_csr_key_and_is_signed_by_the_ca(iot, ext):
    key, csr = make_csr()
    created = iot.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)

    cert = x509.load_pem_x509_certificate(created["certificatePem"].encode())
    assert public_bytes(cert.public_key()) == public_bytes(key.public_key())
    cert.verify_directly_issued_by(ext.cert)
    assert cert.subject.rfc4514_string() == "CN=AWS IoT Certificate"
    assert cert.not_valid_after_utc == datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    # AWS's certificate id: SHA-256 of the DER certificate.
    assert created["certificateId"] == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert created["certificateArn"].endswith(f":cert/{created['certificateId']}")

    described = iot.describe_certificate(certificateId=created["certificateId"])["certificateDescription"]
    assert described["certificatePem"] == created["certificatePem"]
    assert described["status"] == "ACTIVE"
    assert described["validity"]["notAfter"] == cert.not_valid_after_utc
    assert described["validity"]["notBefore"] == cert.not_valid_before_utc


@pytest.mark.parametrize(
    ("kwargs", "status"), [({}, "INACTIVE"), ({"setAsActive": False}, "INACTIVE"), ({"setAsActive": True}, "ACTIVE")]
)
def test_set_as_active_is_honoured(iot, kwargs, status):
    cert_id = iot.create_certificate_from_csr(certificateSigningRequest=make_csr()[1], **kwargs)["certificateId"]
    assert iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == status


def test_the_same_csr_twice_gives_two_certificates(iot):
    _key, csr = make_csr()
    first = iot.create_certificate_from_csr(certificateSigningRequest=csr)["certificateId"]
    second = iot.create_certificate_from_csr(certificateSigningRequest=csr)["certificateId"]
    assert first != second


BAD_CSRS = {
    "not PEM": lambda: "garbage",
    "not DER inside": lambda: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    "bad signature": tampered_csr,
    "RSA 1024": lambda: make_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024))[1],
    "secp256k1": lambda: make_csr(ec.generate_private_key(ec.SECP256K1()))[1],
}


@pytest.mark.parametrize("bad", BAD_CSRS)
def test_bad_csr_is_an_invalid_request(iot, bad):
    csr = BAD_CSRS[bad]()
    with pytest.raises(ClientError) as excinfo:
        iot.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)
    assert error_of(excinfo) == ("InvalidRequestException", 400)
    assert iot.list_certificates()["certificates"] == []


def test_csr_certificate_works_with_the_rest_of_the_iot_api(iot):
    cert = iot.create_certificate_from_csr(certificateSigningRequest=make_csr()[1], setAsActive=True)
    arn, cert_id = cert["certificateArn"], cert["certificateId"]
    iot.create_thing(thingName="board")
    iot.create_policy(policyName="device", policyDocument=policy_document())

    iot.attach_policy(policyName="device", target=arn)
    iot.attach_thing_principal(thingName="board", principal=arn)
    assert [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]] == ["device"]
    assert iot.list_targets_for_policy(policyName="device")["targets"] == [arn]
    assert iot.list_principal_things(principal=arn)["things"] == ["board"]
    assert iot.list_thing_principals(thingName="board")["principals"] == [arn]
    assert [c["certificateId"] for c in iot.list_certificates()["certificates"]] == [cert_id]

    iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    iot.detach_policy(policyName="device", target=arn)
    iot.detach_thing_principal(thingName="board", principal=arn)
    iot.delete_certificate(certificateId=cert_id)
    assert iot.list_certificates()["certificates"] == []


def test_a_revoked_certificate_stays_revoked(iot):
    created = iot.create_certificate_from_csr(certificateSigningRequest=make_csr()[1], setAsActive=True)
    cert_id = created["certificateId"]
    iot.update_certificate(certificateId=cert_id, newStatus="REVOKED")
    iot.update_certificate(certificateId=cert_id, newStatus="REVOKED")  # idempotent
    with pytest.raises(ClientError) as excinfo:
        iot.update_certificate(certificateId=cert_id, newStatus="ACTIVE")
    assert error_of(excinfo) == ("CertificateStateException", 406)
    assert iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"] == "REVOKED"


def test_registered_certificates_get_a_status_their_validity_and_a_400_when_not_certificates(iot, ext):
    cert = issue_certificate(load_csr(make_csr()[1]), ext)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_id = iot.register_certificate_without_ca(certificatePem=pem)["certificateId"]
    described = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert described["status"] == "INACTIVE"
    assert described["validity"]["notAfter"] == cert.not_valid_after_utc

    for register in (iot.register_certificate, iot.register_certificate_without_ca):
        with pytest.raises(ClientError) as excinfo:
            register(certificatePem="not a certificate")
        assert error_of(excinfo) == ("CertificateValidationException", 400)


def test_register_certificate_with_its_ca(iot, ext):
    ca_pem = ext.cert.public_bytes(serialization.Encoding.PEM).decode()
    ca_id = iot.register_ca_certificate(caCertificate=ca_pem, setAsActive=True)["certificateId"]
    cert = issue_certificate(load_csr(make_csr()[1]), ext)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_id = iot.register_certificate(certificatePem=pem, caCertificatePem=ca_pem, setAsActive=True)["certificateId"]
    described = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert described["status"] == "ACTIVE"
    assert iot.list_certificates_by_ca(caCertificateId=ca_id)["certificates"][0]["certificateId"] == cert_id


def test_unknown_default_policy_version_is_not_found_and_changes_nothing(iot):
    iot.create_policy(policyName="device", policyDocument=policy_document())
    iot.create_policy_version(policyName="device", policyDocument=policy_document(), setAsDefault=True)
    with pytest.raises(ClientError) as excinfo:
        iot.set_default_policy_version(policyName="device", policyVersionId="9")
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)
    versions = iot.list_policy_versions(policyName="device")["policyVersions"]
    assert [v["versionId"] for v in versions if v["isDefaultVersion"]] == ["2"]

    iot.set_default_policy_version(policyName="device", policyVersionId="1")
    iot.delete_policy_version(policyName="device", policyVersionId="2")
    assert iot.get_policy(policyName="device")["defaultVersionId"] == "1"


def test_topic_rule_error_action_only_when_set(iot):
    lambda_arn = "arn:aws:lambda:eu-north-1:123456789012:function:CoreTelemetry"
    payload = {
        "sql": "SELECT * FROM '+/telemetry'",
        "awsIotSqlVersion": "2016-03-23",
        "actions": [{"lambda": {"functionArn": lambda_arn}}],
    }
    iot.create_topic_rule(ruleName="plain", topicRulePayload=payload)
    error_action = {"lambda": {"functionArn": lambda_arn}}
    iot.create_topic_rule(ruleName="guarded", topicRulePayload=dict(payload, errorAction=error_action))
    assert "errorAction" not in iot.get_topic_rule(ruleName="plain")["rule"]
    assert iot.get_topic_rule(ruleName="guarded")["rule"]["errorAction"] == error_action

    iot.replace_topic_rule(ruleName="guarded", topicRulePayload=payload)
    assert "errorAction" not in iot.get_topic_rule(ruleName="guarded")["rule"]


@pytest.mark.parametrize("endpoint_type", ["iot:Data-ATS", "iot:Data"])
def test_data_endpoints_are_the_sandbox_broker(iot, endpoint_type):
    addresses = {iot.describe_endpoint(endpointType=endpoint_type)["endpointAddress"] for _attempt in range(3)}
    assert addresses == {moto_ext.BROKER_ADDRESS} == {"127.0.0.1"}


def test_other_endpoints_are_stable_and_aws_shaped(iot):
    addresses = {iot.describe_endpoint(endpointType="iot:Jobs")["endpointAddress"] for _attempt in range(3)}
    assert len(addresses) == 1
    assert re.fullmatch(r"[a-z0-9]{14}\.jobs\.iot\.eu-north-1\.amazonaws\.com", addresses.pop())


def test_dynamodb_tables_have_a_stable_table_id(ext):
    dynamodb = boto3.client("dynamodb")
    created = dynamodb.create_table(
        TableName="devices",
        KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )["TableDescription"]
    described = dynamodb.describe_table(TableName="devices")["Table"]
    updated = dynamodb.update_table(TableName="devices", DeletionProtectionEnabled=False)["TableDescription"]
    assert created["TableId"] == described["TableId"] == updated["TableId"]
    assert len(described["TableId"]) == 36


def test_community_aws_dynamodb_table_runs(ext, run_module):
    from ansible_collections.community.aws.plugins.modules import dynamodb_table

    args = {
        "name": "telemetry",
        "hash_key_name": "device_id",
        "range_key_name": "timestamp",
        "range_key_type": "NUMBER",
        "billing_mode": "PAY_PER_REQUEST",
    }
    assert run_module(dynamodb_table, args)["changed"] is True
    assert run_module(dynamodb_table, args)["changed"] is False


def test_revert_restores_moto(ext):
    from moto.iot.models import IoTBackend

    moto_ext.revert()
    assert IoTBackend.create_certificate_from_csr is not moto_ext.create_certificate_from_csr
    moto_ext.apply(ext.cert_path.parent)  # the fixture reverts again
    assert IoTBackend.create_certificate_from_csr is moto_ext.create_certificate_from_csr


def test_iot_behaviour_stock_moto_already_gets_right(iot):
    """What the README lists as working unchanged, so a moto upgrade that breaks it shows up here."""
    iot.create_policy(policyName="device", policyDocument=policy_document())
    for _attempt in range(4):
        iot.create_policy_version(policyName="device", policyDocument=policy_document())
    with pytest.raises(ClientError) as excinfo:
        iot.create_policy_version(policyName="device", policyDocument=policy_document())
    assert error_of(excinfo)[0] == "VersionsLimitExceededException"
    with pytest.raises(ClientError) as excinfo:
        iot.delete_policy_version(policyName="device", policyVersionId="1")
    assert error_of(excinfo)[0] == "InvalidRequestException"
    with pytest.raises(ClientError) as excinfo:
        iot.delete_policy(policyName="device")
    assert error_of(excinfo)[0] == "DeleteConflictException"

    arn = iot.create_certificate_from_csr(certificateSigningRequest=make_csr()[1], setAsActive=True)["certificateArn"]
    with pytest.raises(ClientError) as excinfo:
        iot.delete_certificate(certificateId=arn.split("/")[-1])
    assert error_of(excinfo)[0] == "CertificateStateException"

    iot.create_thing(thingName="board")
    for group in ("fleet", "quarantine"):
        iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName="fleet", thingName="board")
    iot.update_thing_groups_for_thing(thingName="board", thingGroupsToAdd=["quarantine"], thingGroupsToRemove=["fleet"])
    assert [g["groupName"] for g in iot.list_thing_groups_for_thing(thingName="board")["thingGroups"]] == ["quarantine"]

    error_action = {"lambda": {"functionArn": "arn:aws:lambda:eu-north-1:123456789012:function:err"}}
    payload = {"sql": "SELECT * FROM '+/telemetry'", "actions": [], "errorAction": error_action}
    iot.create_topic_rule(ruleName="telemetry", topicRulePayload=payload)
    iot.disable_topic_rule(ruleName="telemetry")
    rule = iot.get_topic_rule(ruleName="telemetry")["rule"]
    assert rule["ruleDisabled"] is True and rule["errorAction"] == error_action
    iot.enable_topic_rule(ruleName="telemetry")
    assert iot.list_topic_rules()["rules"][0]["ruleDisabled"] is False


def test_delete_connection_answers_that_no_client_is_connected(iot):
    data = boto3.client("iot-data", region_name=iot.meta.region_name)

    with pytest.raises(data.exceptions.ResourceNotFoundException):
        data.delete_connection(clientId="4827E2E59190")
