import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.iotfleet.aws.plugins.modules import iot_certificate
from tests.unit.conftest import ACCOUNT_ID
from tests.unit.conftest import REGION

THING = "4827E2E59190"
POLICY_DOCUMENT = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
)


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key=None, common_name=THING):
    key = key or make_key()
    request = x509.CertificateSigningRequestBuilder().subject_name(name(common_name)).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def make_certificate(key=None, issuer_key=None, issuer="iotfleet test CA", subject=THING):
    key = key or make_key()
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(issuer_key or key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def public_key_of(pem, loader):
    return (
        loader(pem.encode())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def private_key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def csr_key_honoured(aws, monkeypatch):
    """Make moto issue certificates for the CSR's public key, as AWS does (moto 5.2.5 ignores it)."""
    from moto.iot.models import IoTBackend

    ca_key = make_key()

    def create_certificate_from_csr(self, csr, set_as_active):
        request = x509.load_pem_x509_csr(csr.encode())
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(request.subject)
            .issuer_name(name("moto test CA"))
            .public_key(request.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
            .sign(ca_key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        return self.register_certificate(pem, ca_certificate_pem=None, set_as_active=set_as_active, status="INACTIVE")

    monkeypatch.setattr(IoTBackend, "create_certificate_from_csr", create_certificate_from_csr)


@pytest.fixture
def thing(iot):
    iot.create_thing(thingName=THING)
    return THING


@pytest.fixture
def no_sleep(monkeypatch):
    sleeps = []
    monkeypatch.setattr(iot_certificate.time, "sleep", sleeps.append)
    return sleeps


def certificate_ids(iot):
    return [cert["certificateId"] for cert in iot.list_certificates()["certificates"]]


def status_of(iot, certificate_id):
    return iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"]


def policies_of(iot, arn):
    return sorted(policy["policyName"] for policy in iot.list_attached_policies(target=arn)["policies"])


def create_policies(iot, *names):
    for policy in names:
        iot.create_policy(policyName=policy, policyDocument=POLICY_DOCUMENT)


# Issuing from a CSR.


def test_issues_certificate_from_csr_attached_to_thing_with_policies(iot, thing, run_module, csr_key_honoured):
    create_policies(iot, "device")
    csr = make_csr()

    result = run_module(iot_certificate, {"csr": csr, "thing_name": thing, "policies": ["device"]})

    assert result["changed"] is True
    assert result["reused"] is False
    certificate = result["certificate"]
    assert certificate_ids(iot) == [certificate["certificate_id"]]
    assert certificate["certificate_arn"] == f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:cert/{certificate['certificate_id']}"
    assert certificate["status"] == "ACTIVE"
    assert certificate["things"] == [thing]
    assert certificate["policies"] == ["device"]
    assert certificate["creation_date"]
    assert public_key_of(certificate["certificate_pem"], x509.load_pem_x509_certificate) == public_key_of(
        csr, x509.load_pem_x509_csr
    )
    assert iot.list_thing_principals(thingName=thing)["principals"] == [certificate["certificate_arn"]]
    assert policies_of(iot, certificate["certificate_arn"]) == ["device"]
    assert "PRIVATE KEY" not in json.dumps(result)


def test_second_run_reuses_the_active_certificate(iot, thing, run_module, csr_key_honoured):
    create_policies(iot, "device")
    args = {"csr": make_csr(), "thing_name": thing, "policies": ["device"]}
    first = run_module(iot_certificate, args)

    second = run_module(iot_certificate, args)

    assert second["changed"] is False
    assert second["reused"] is True
    assert second["certificate"]["certificate_id"] == first["certificate"]["certificate_id"]
    assert second["certificate"]["certificate_pem"] == first["certificate"]["certificate_pem"]
    assert len(certificate_ids(iot)) == 1


def test_reuse_existing_false_issues_another_certificate(iot, thing, run_module, csr_key_honoured):
    csr = make_csr()
    run_module(iot_certificate, {"csr": csr, "thing_name": thing})

    result = run_module(iot_certificate, {"csr": csr, "thing_name": thing, "reuse_existing": False})

    assert result["changed"] is True
    assert result["reused"] is False
    assert len(certificate_ids(iot)) == 2


def test_inactive_or_revoked_certificates_are_not_reused(iot, thing, run_module, csr_key_honoured):
    csr = make_csr()
    first = run_module(iot_certificate, {"csr": csr, "thing_name": thing})
    iot.update_certificate(certificateId=first["certificate"]["certificate_id"], newStatus="REVOKED")

    result = run_module(iot_certificate, {"csr": csr, "thing_name": thing})

    assert result["changed"] is True
    assert result["reused"] is False
    assert result["certificate"]["certificate_id"] != first["certificate"]["certificate_id"]
    assert status_of(iot, first["certificate"]["certificate_id"]) == "REVOKED"


def test_issuing_inactive_then_rerunning_is_idempotent(iot, thing, run_module, csr_key_honoured):
    args = {"csr": make_csr(), "thing_name": thing, "status": "INACTIVE"}
    first = run_module(iot_certificate, args)

    second = run_module(iot_certificate, args)

    assert first["certificate"]["status"] == "INACTIVE"
    assert second["changed"] is False
    assert second["reused"] is True
    assert len(certificate_ids(iot)) == 1


def test_active_certificate_for_another_key_is_neither_reused_nor_duplicated(iot, thing, run_module):
    # Plain moto: the issued certificate never carries the CSR's key, like a certificate made for an
    # older key of the board that has since been replaced.
    run_module(iot_certificate, {"csr": make_csr(), "thing_name": thing})

    result = run_module(iot_certificate, {"csr": make_csr(), "thing_name": thing}, expect_failure=True)

    assert result["msg"].startswith("thing_name:")
    assert "reuse_existing=false" in result["msg"]
    assert len(certificate_ids(iot)) == 1


def test_check_mode_issues_nothing(iot, thing, run_module, csr_key_honoured):
    create_policies(iot, "device")

    result = run_module(
        iot_certificate, {"csr": make_csr(), "thing_name": thing, "policies": ["device"]}, check_mode=True, diff=True
    )

    assert result["changed"] is True
    assert certificate_ids(iot) == []
    assert iot.list_thing_principals(thingName=thing)["principals"] == []
    assert result["certificate"] == {"status": "ACTIVE", "things": [thing], "policies": ["device"]}
    assert result["diff"] == {"before": {}, "after": {"status": "ACTIVE", "things": [thing], "policies": ["device"]}}


def test_csr_needs_a_thing_name(iot, run_module):
    result = run_module(iot_certificate, {"csr": make_csr()}, expect_failure=True)

    assert result["msg"].startswith("thing_name:")
    assert "csr" in result["msg"]


# Bad input fails before any write.


@pytest.mark.parametrize(
    "csr",
    [
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "device.csr",
    ],
)
def test_bad_csr_text_names_the_option_and_the_fix(iot, thing, run_module, csr):
    result = run_module(iot_certificate, {"csr": csr, "thing_name": thing}, expect_failure=True)

    assert result["msg"].startswith("csr:")
    assert "lookup('file', 'device.csr')" in result["msg"]
    assert certificate_ids(iot) == []


def test_csr_with_a_broken_signature_is_refused(iot, thing, run_module):
    request = x509.load_pem_x509_csr(make_csr().encode())
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()

    result = run_module(iot_certificate, {"csr": tampered, "thing_name": thing}, expect_failure=True)

    assert result["msg"].startswith("csr:")
    assert "signature" in result["msg"]
    assert certificate_ids(iot) == []


@pytest.mark.parametrize("option", ["csr", "certificate_pem"])
def test_a_private_key_is_refused_and_never_echoed(iot, thing, run_module, monkeypatch, option):
    from ansible.module_utils import basic
    from ansible.module_utils.common.parameters import remove_values

    patched_fail_json = basic.AnsibleModule.fail_json

    def fail_json_with_invocation(self, msg="", **kwargs):
        # What AnsibleModule really returns: the arguments too, with no_log values masked.
        kwargs["invocation"] = {"module_args": self.params}
        patched_fail_json(self, msg, **remove_values(kwargs, self.no_log_values))

    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json_with_invocation)
    key_pem = private_key_pem(make_key())

    result = run_module(iot_certificate, {option: key_pem, "thing_name": thing}, expect_failure=True)

    assert result["msg"].startswith(f"{option}:")
    assert "private key" in result["msg"]
    assert result["invocation"]["module_args"]["thing_name"] == thing
    assert "PRIVATE KEY" not in json.dumps(result)
    assert certificate_ids(iot) == []


def test_missing_thing_names_the_option_and_writes_nothing(iot, run_module):
    result = run_module(iot_certificate, {"csr": make_csr(), "thing_name": "nope"}, expect_failure=True)

    assert result["msg"].startswith("thing_name:")
    assert "'nope'" in result["msg"]
    assert certificate_ids(iot) == []


def test_bad_thing_name_is_refused(iot, run_module):
    result = run_module(iot_certificate, {"csr": make_csr(), "thing_name": "a b"}, expect_failure=True)

    assert result["msg"].startswith("thing_name:")


def test_missing_policy_names_the_option_and_writes_nothing(iot, thing, run_module):
    create_policies(iot, "device")

    result = run_module(
        iot_certificate, {"csr": make_csr(), "thing_name": thing, "policies": ["device", "nope"]}, expect_failure=True
    )

    assert result["msg"].startswith("policies:")
    assert "'nope'" in result["msg"]
    assert certificate_ids(iot) == []


def test_nonexistent_certificate_id(iot, run_module):
    missing = "ab" * 32

    result = run_module(iot_certificate, {"certificate_id": missing}, expect_failure=True)

    assert result["msg"] == f"certificate_id: no certificate {missing} in this account/region."


def test_malformed_certificate_id(iot, run_module):
    result = run_module(iot_certificate, {"certificate_id": "1234"}, expect_failure=True)

    assert result["msg"].startswith("certificate_id:")
    assert "64 hex digits" in result["msg"]


def test_exactly_one_source_is_required(iot, run_module):
    none = run_module(iot_certificate, {"thing_name": THING}, expect_failure=True)
    two = run_module(iot_certificate, {"csr": make_csr(), "certificate_id": "ab" * 32}, expect_failure=True)

    assert "csr, certificate_pem, certificate_id" in none["msg"]
    assert "mutually exclusive" in two["msg"]
    assert "csr|certificate_pem|certificate_id" in two["msg"]


def test_ca_certificate_pem_needs_certificate_pem(iot, run_module):
    result = run_module(
        iot_certificate, {"certificate_id": "ab" * 32, "ca_certificate_pem": make_certificate()}, expect_failure=True
    )

    assert "ca_certificate_pem" in result["msg"]
    assert "certificate_pem" in result["msg"]


# Status.


def test_status_changes_and_is_idempotent(iot, run_module):
    cert_id = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]

    result = run_module(iot_certificate, {"certificate_id": cert_id, "status": "INACTIVE"}, diff=True)
    again = run_module(iot_certificate, {"certificate_id": cert_id, "status": "INACTIVE"})

    assert result["changed"] is True
    assert result["diff"]["before"]["status"] == "ACTIVE"
    assert result["diff"]["after"]["status"] == "INACTIVE"
    assert "certificate_pem" not in result["diff"]["after"]
    assert status_of(iot, cert_id) == "INACTIVE"
    assert again["changed"] is False


def test_check_mode_status_change_writes_nothing(iot, run_module):
    cert_id = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]

    result = run_module(iot_certificate, {"certificate_id": cert_id, "status": "REVOKED"}, check_mode=True)

    assert result["changed"] is True
    assert result["certificate"]["status"] == "REVOKED"
    assert status_of(iot, cert_id) == "ACTIVE"


@pytest.mark.parametrize("status", ["ACTIVE", "INACTIVE"])
def test_revoked_certificate_is_never_changed_back(iot, run_module, status):
    cert_id = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    run_module(iot_certificate, {"certificate_id": cert_id, "status": "REVOKED"})

    result = run_module(iot_certificate, {"certificate_id": cert_id, "status": status}, expect_failure=True)

    assert result["msg"].startswith("status:")
    assert "REVOKED" in result["msg"]
    assert "Issue a new certificate" in result["msg"]
    assert status_of(iot, cert_id) == "REVOKED"


def test_revoked_certificate_refusal_happens_before_other_writes(iot, thing, run_module):
    create_policies(iot, "device")
    cert_id = iot.create_keys_and_certificate(setAsActive=False)["certificateId"]
    iot.update_certificate(certificateId=cert_id, newStatus="REVOKED")
    arn = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]

    run_module(
        iot_certificate,
        {"certificate_id": cert_id, "status": "ACTIVE", "thing_name": thing, "policies": ["device"]},
        expect_failure=True,
    )

    assert iot.list_thing_principals(thingName=thing)["principals"] == []
    assert policies_of(iot, arn) == []


# Policies and things.


def test_policies_are_attached_and_others_kept_without_purge(iot, thing, run_module):
    create_policies(iot, "device", "extra", "debug")
    created = iot.create_keys_and_certificate(setAsActive=True)
    arn = created["certificateArn"]
    iot.attach_policy(policyName="debug", target=arn)

    result = run_module(iot_certificate, {"certificate_id": created["certificateId"], "policies": ["device", "extra"]})
    again = run_module(iot_certificate, {"certificate_id": created["certificateId"], "policies": ["device", "extra"]})

    assert result["changed"] is True
    assert result["certificate"]["policies"] == ["debug", "device", "extra"]
    assert policies_of(iot, arn) == ["debug", "device", "extra"]
    assert again["changed"] is False


def test_purge_policies_detaches_unlisted_ones(iot, run_module):
    create_policies(iot, "device", "debug")
    created = iot.create_keys_and_certificate(setAsActive=True)
    arn = created["certificateArn"]
    iot.attach_policy(policyName="debug", target=arn)
    args = {"certificate_id": created["certificateId"], "policies": ["device"], "purge_policies": True}

    result = run_module(iot_certificate, args, diff=True)
    again = run_module(iot_certificate, args)

    assert result["changed"] is True
    assert result["diff"]["before"]["policies"] == ["debug"]
    assert result["diff"]["after"]["policies"] == ["device"]
    assert policies_of(iot, arn) == ["device"]
    assert again["changed"] is False


def test_attaches_existing_certificate_to_thing(iot, thing, run_module):
    created = iot.create_keys_and_certificate(setAsActive=True)

    result = run_module(iot_certificate, {"certificate_id": created["certificateId"], "thing_name": thing})
    again = run_module(iot_certificate, {"certificate_id": created["certificateId"], "thing_name": thing})

    assert result["changed"] is True
    assert result["certificate"]["things"] == [thing]
    assert iot.list_thing_principals(thingName=thing)["principals"] == [created["certificateArn"]]
    assert again["changed"] is False


# Registering an existing certificate.


def test_registers_certificate_without_ca_and_finds_it_again(iot, thing, run_module):
    pem = make_certificate()

    result = run_module(iot_certificate, {"certificate_pem": pem, "thing_name": thing})
    # Same certificate, different whitespace: still the same certificate.
    again = run_module(iot_certificate, {"certificate_pem": pem.replace("\n", "\r\n") + "\n\n", "thing_name": thing})

    assert result["changed"] is True
    assert result["certificate"]["status"] == "ACTIVE"
    assert result["certificate"]["things"] == [thing]
    assert again["changed"] is False
    assert again["certificate"]["certificate_id"] == result["certificate"]["certificate_id"]
    assert len(certificate_ids(iot)) == 1


def test_registers_certificate_with_its_ca(iot, run_module):
    ca_key = make_key()
    ca_pem = make_certificate(key=ca_key, subject="iotfleet test CA")
    ca_id = iot.register_ca_certificate(caCertificate=ca_pem, setAsActive=True)["certificateId"]
    pem = make_certificate(issuer_key=ca_key)

    result = run_module(iot_certificate, {"certificate_pem": pem, "ca_certificate_pem": ca_pem, "status": "INACTIVE"})

    assert result["changed"] is True
    assert result["certificate"]["status"] == "INACTIVE"
    by_ca = iot.list_certificates_by_ca(caCertificateId=ca_id)["certificates"]
    assert [cert["certificateId"] for cert in by_ca] == [result["certificate"]["certificate_id"]]


def test_check_mode_registers_nothing(iot, run_module):
    pem = make_certificate()

    result = run_module(iot_certificate, {"certificate_pem": pem}, check_mode=True)

    assert result["changed"] is True
    assert result["certificate"]["certificate_pem"] == pem
    assert certificate_ids(iot) == []


def test_bad_certificate_pem_names_the_option(iot, run_module):
    result = run_module(iot_certificate, {"certificate_pem": "device.crt"}, expect_failure=True)

    assert result["msg"].startswith("certificate_pem:")
    assert certificate_ids(iot) == []


# Deleting.


def test_delete_deactivates_detaches_and_deletes(iot, thing, run_module, no_sleep):
    create_policies(iot, "device")
    created = iot.create_keys_and_certificate(setAsActive=True)
    arn = created["certificateArn"]
    iot.attach_policy(policyName="device", target=arn)
    iot.attach_thing_principal(thingName=thing, principal=arn)

    result = run_module(iot_certificate, {"certificate_id": created["certificateId"], "state": "absent"}, diff=True)
    again = run_module(iot_certificate, {"certificate_id": created["certificateId"], "state": "absent"})

    assert result["changed"] is True
    assert result["certificate"] == {}
    assert result["diff"]["before"]["status"] == "ACTIVE"
    assert result["diff"]["before"]["things"] == [thing]
    assert result["diff"]["after"] == {}
    assert certificate_ids(iot) == []
    assert iot.list_thing_principals(thingName=thing)["principals"] == []
    assert iot.describe_thing(thingName=thing)["thingName"] == thing
    assert iot.list_targets_for_policy(policyName="device")["targets"] == []
    assert again["changed"] is False


def test_delete_waits_for_the_asynchronous_detach(iot, thing, run_module, monkeypatch, no_sleep):
    created = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName=thing, principal=created["certificateArn"])
    real_list = iot_certificate.list_principal_things
    calls = []

    def slow_detach(client, principal):
        calls.append(principal)
        return [thing] if len(calls) <= 2 else real_list(client, principal)

    monkeypatch.setattr(iot_certificate, "list_principal_things", slow_detach)

    result = run_module(iot_certificate, {"certificate_id": created["certificateId"], "state": "absent"})

    assert result["changed"] is True
    assert len(no_sleep) == 1
    assert certificate_ids(iot) == []


def test_delete_gives_up_after_wait_timeout(iot, thing, run_module, monkeypatch, no_sleep):
    created = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName=thing, principal=created["certificateArn"])
    monkeypatch.setattr(iot_certificate, "list_principal_things", lambda client, principal: [thing])

    result = run_module(
        iot_certificate,
        {"certificate_id": created["certificateId"], "state": "absent", "wait_timeout": 0},
        expect_failure=True,
    )

    assert result["msg"].startswith("wait_timeout:")
    assert certificate_ids(iot) == [created["certificateId"]]


def test_check_mode_delete_writes_nothing(iot, thing, run_module):
    created = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName=thing, principal=created["certificateArn"])

    result = run_module(
        iot_certificate, {"certificate_id": created["certificateId"], "state": "absent"}, check_mode=True
    )

    assert result["changed"] is True
    assert status_of(iot, created["certificateId"]) == "ACTIVE"
    assert iot.list_thing_principals(thingName=thing)["principals"] == [created["certificateArn"]]


def test_delete_by_csr_removes_the_things_certificate_for_that_key(iot, thing, run_module, csr_key_honoured):
    csr = make_csr()
    kept = iot.create_keys_and_certificate(setAsActive=False)
    iot.attach_thing_principal(thingName=thing, principal=kept["certificateArn"])
    issued = run_module(iot_certificate, {"csr": csr, "thing_name": thing})

    result = run_module(iot_certificate, {"csr": csr, "thing_name": thing, "state": "absent"})

    assert result["changed"] is True
    assert certificate_ids(iot) == [kept["certificateId"]]
    assert issued["certificate"]["certificate_id"] not in certificate_ids(iot)


def test_delete_by_pem_and_missing_certificate(iot, run_module):
    pem = make_certificate()
    run_module(iot_certificate, {"certificate_pem": pem})

    result = run_module(iot_certificate, {"certificate_pem": pem, "state": "absent"})
    again = run_module(iot_certificate, {"certificate_pem": pem, "state": "absent"})

    assert result["changed"] is True
    assert certificate_ids(iot) == []
    assert again["changed"] is False
