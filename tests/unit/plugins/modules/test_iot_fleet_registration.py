"""iot_fleet_registration against moto in process, with the sandbox's CSR-signing patch applied."""

import json
import threading

import botocore.session
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.iotfleet.aws.plugins.modules import iot_fleet_registration
from sandbox import moto_ext

POLICY = "iotfleet_device"
GROUP = "iotfleet_fleet"
LISTINGS = {"ListCertificates": 1, "ListTargetsForPolicy": 1, "ListThings": 1, "ListThingsInThingGroup": 1}
WRITES = {
    "AddThingToThingGroup",
    "AttachPolicy",
    "AttachThingPrincipal",
    "CreateCertificateFromCsr",
    "CreateThing",
    "DeleteCertificate",
    "DetachPolicy",
    "DetachThingPrincipal",
    "UpdateCertificate",
    "UpdateThing",
}


def thing_name(number):
    return f"4827E2E5{number:04X}"


def make_csr(name, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, request.public_bytes(serialization.Encoding.PEM).decode()


def spki(key):
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Board:
    def __init__(self, number, attributes=None):
        self.name = thing_name(number)
        self.key, self.csr = make_csr(self.name)
        self.attributes = attributes
        self.certificate_pem = None

    def new_key(self):
        self.key, self.csr = make_csr(self.name)
        self.certificate_pem = None

    def device(self, cached=True):
        device = {"thing_name": self.name, "csr": self.csr}
        if self.attributes is not None:
            device["attributes"] = self.attributes
        if cached and self.certificate_pem:
            device["certificate_pem"] = self.certificate_pem
        return device


@pytest.fixture
def signing(aws, tmp_path, monkeypatch):
    """moto with the sandbox's patches: certificates for the CSR's key, ids as AWS computes them."""
    from moto.core.config import default_user_config

    monkeypatch.setitem(default_user_config, "iot", {"use_valid_cert": True})
    moto_ext.apply(tmp_path / "ca")
    try:
        yield
    finally:
        moto_ext.revert()


@pytest.fixture
def fleet(signing, iot):
    iot.create_policy(policyName=POLICY, policyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    iot.create_thing_group(thingGroupName=GROUP)
    return iot


@pytest.fixture
def calls(monkeypatch):
    """Counts the HTTP requests every new IoT client sends, per API, through a botocore event hook."""
    counted = {}
    lock = threading.Lock()  # the module's thread pool sends from several threads at once
    create_client = botocore.session.Session.create_client

    def counting_create_client(self, service_name, *args, **kwargs):
        client = create_client(self, service_name, *args, **kwargs)
        if service_name == "iot":

            def count(event_name, **_kwargs):
                operation = event_name.rsplit(".", 1)[-1]
                with lock:
                    counted[operation] = counted.get(operation, 0) + 1

            client.meta.events.register("before-send.iot", count)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", counting_create_client)
    return counted


@pytest.fixture
def register(run_module, calls):
    def run(boards, cached=True, check_mode=False, diff=False, expect_failure=False, **options):
        calls.clear()
        args = {"devices": [board.device(cached) for board in boards], "policy_name": POLICY, "thing_group": GROUP}
        args.setdefault("max_workers", 4)
        args.update(options)
        result = run_module(
            iot_fleet_registration, args, check_mode=check_mode, diff=diff, expect_failure=expect_failure
        )
        if not check_mode:
            for board, device in zip(boards, result["devices"], strict=True):
                if device["certificate_pem"]:
                    board.certificate_pem = device["certificate_pem"]
        return result

    return run


def certificates_of(iot, name):
    """{certificate id: status} of the certificates attached to the thing."""
    arns = iot.list_thing_principals(thingName=name)["principals"]
    return {arn.rsplit("/", 1)[-1]: status_of(iot, arn.rsplit("/", 1)[-1]) for arn in arns}


def status_of(iot, cert_id):
    return iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["status"]


def policy_targets(iot):
    return set(iot.list_targets_for_policy(policyName=POLICY)["targets"])


def key_of(iot, cert_id):
    pem = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificatePem"]
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def writes(calls):
    return {op: n for op, n in calls.items() if op in WRITES}


def assert_registered(iot, board, attributes=None):
    """Thing with attributes, in the group, exactly one ACTIVE certificate: for its key, with the policy."""
    described = iot.describe_thing(thingName=board.name)
    assert described["attributes"] == (attributes or {})
    assert board.name in iot.list_things_in_thing_group(thingGroupName=GROUP)["things"]
    active = [cid for cid, status in certificates_of(iot, board.name).items() if status == "ACTIVE"]
    assert len(active) == 1
    assert key_of(iot, active[0]) == spki(board.key)
    arn = iot.describe_certificate(certificateId=active[0])["certificateDescription"]["certificateArn"]
    assert arn in policy_targets(iot)
    return active[0]


def test_registers_new_devices(fleet, register):
    boards = [Board(n, attributes={"owner": "alice", "location": f"lab-{n}"}) for n in range(6)]

    result = register(boards)

    assert result["changed"] is True
    summary = result["summary"]
    assert {k: summary[k] for k in ("devices", "changed", "unchanged", "failed")} == {
        "devices": 6,
        "changed": 6,
        "unchanged": 0,
        "failed": 0,
    }
    assert summary["created_things"] == summary["issued_certificates"] == 6
    assert summary["api_calls"]["CreateCertificateFromCsr"] == 6
    for board, device in zip(boards, result["devices"], strict=True):
        cert_id = assert_registered(fleet, board, {"owner": "alice", "location": board.attributes["location"]})
        assert device["thing_name"] == board.name
        assert device["thing_arn"].endswith(f":thing/{board.name}")
        assert device["certificate_id"] == cert_id
        assert device["certificate_arn"].endswith(f":cert/{cert_id}")
        cert = x509.load_pem_x509_certificate(device["certificate_pem"].encode())
        assert spki(cert) == spki(board.key)
        assert (device["created_thing"], device["issued_certificate"], device["reused_certificate"]) == (
            True,
            True,
            False,
        )
        assert device["actions"] == [
            "create_thing",
            "issue_certificate",
            "attach_thing_principal",
            "attach_policy",
            "add_to_thing_group",
        ]
        assert device["changed"] is True and device["failed"] is False
        assert device["retired_certificates"] == []


def test_unchanged_rerun_costs_the_listings_only(fleet, register, calls):
    boards = [Board(n, attributes={"owner": "alice"}) for n in range(40)]
    register(boards)

    result = register(boards)

    assert result["changed"] is False
    assert result["summary"]["unchanged"] == 40
    assert all(d["reused_certificate"] and not d["actions"] for d in result["devices"])
    # O(pages): one page of each listing here (moto pages ListThings by 250; the others are not paginated).
    assert calls == LISTINGS
    assert result["summary"]["api_calls"] == LISTINGS


def test_unchanged_rerun_without_cached_certificates_costs_two_calls_a_device(fleet, register, calls):
    boards = [Board(n) for n in range(10)]
    first = register(boards)

    result = register(boards, cached=False)

    assert result["changed"] is False
    assert calls == {**LISTINGS, "ListThingPrincipals": 10, "DescribeCertificate": 10}
    assert [d["certificate_id"] for d in result["devices"]] == [d["certificate_id"] for d in first["devices"]]
    assert [d["certificate_pem"] for d in result["devices"]] == [d["certificate_pem"] for d in first["devices"]]


def test_verify_attachments_lists_each_thing_but_describes_nothing(fleet, register, calls):
    boards = [Board(n) for n in range(5)]
    register(boards)

    result = register(boards, verify_attachments=True)

    assert result["changed"] is False
    assert calls == {**LISTINGS, "ListThingPrincipals": 5}


def test_cached_certificate_of_another_key_is_ignored(fleet, register):
    board = Board(1)
    register([board])
    stale = board.certificate_pem
    board.new_key()
    board.certificate_pem = stale

    result = register([board])

    assert result["devices"][0]["issued_certificate"] is True
    assert_registered(fleet, board)


def test_existing_active_certificate_for_the_same_key_is_reused(fleet, register, calls):
    board = Board(1)
    fleet.create_thing(thingName=board.name)
    fleet.add_thing_to_thing_group(thingGroupName=GROUP, thingName=board.name)
    made = fleet.create_certificate_from_csr(certificateSigningRequest=board.csr, setAsActive=True)
    fleet.attach_thing_principal(thingName=board.name, principal=made["certificateArn"])

    result = register([board])

    device = result["devices"][0]
    assert device["reused_certificate"] is True and device["issued_certificate"] is False
    assert device["certificate_id"] == made["certificateId"]
    assert device["actions"] == ["attach_policy"]
    assert "CreateCertificateFromCsr" not in calls
    assert assert_registered(fleet, board) == made["certificateId"]


def test_attributes_are_merged_and_updated(fleet, register):
    board = Board(1, attributes={"owner": "alice"})
    register([board])
    fleet.update_thing(thingName=board.name, attributePayload={"attributes": {"floor": "3"}, "merge": True})
    board.attributes = {"owner": "bob", "location": "lab"}

    result = register([board])

    assert result["devices"][0]["actions"] == ["update_attributes"]
    assert fleet.describe_thing(thingName=board.name)["attributes"] == {"owner": "bob", "location": "lab", "floor": "3"}
    assert register([board])["changed"] is False


def test_new_key_gets_a_new_certificate_and_the_old_one_is_retired(fleet, register):
    board = Board(1)
    old = register([board])["devices"][0]
    board.new_key()

    result = register([board], diff=True)

    device = result["devices"][0]
    assert device["issued_certificate"] is True
    assert device["retired_certificates"] == [old["certificate_id"]]
    assert device["actions"] == [
        "issue_certificate",
        "attach_thing_principal",
        "attach_policy",
        f"deactivate_certificate {old['certificate_id']}",
        f"detach_policy {old['certificate_id']}",
        f"detach_thing_principal {old['certificate_id']}",
    ]
    assert status_of(fleet, old["certificate_id"]) == "INACTIVE"  # kept, not deleted
    assert old["certificate_arn"] not in policy_targets(fleet)
    assert certificates_of(fleet, board.name) == {device["certificate_id"]: "ACTIVE"}
    assert result["diff"]["before"][board.name]["certificates"] == {old["certificate_id"]: "ACTIVE"}
    assert result["diff"]["after"][board.name]["certificates"] == {
        old["certificate_id"]: "INACTIVE",
        device["certificate_id"]: "ACTIVE",
    }
    assert register([board])["changed"] is False


def test_rotate_replaces_the_certificate_even_for_the_same_key(fleet, register):
    boards = [Board(1), Board(2)]
    first = register(boards)["devices"]

    result = register(boards, rotate=[boards[0].name])

    rotated, untouched = result["devices"]
    assert rotated["issued_certificate"] is True
    assert rotated["certificate_id"] != first[0]["certificate_id"]
    assert rotated["retired_certificates"] == [first[0]["certificate_id"]]
    assert status_of(fleet, first[0]["certificate_id"]) == "INACTIVE"
    assert assert_registered(fleet, boards[0]) == rotated["certificate_id"]
    assert untouched["changed"] is False


def revoke(iot, board, cert_id, status="REVOKED"):
    """What the revocation module does: status changed, policy and thing detached."""
    arn = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]["certificateArn"]
    iot.update_certificate(certificateId=cert_id, newStatus=status)
    iot.detach_policy(policyName=POLICY, target=arn)
    iot.detach_thing_principal(thingName=board.name, principal=arn)


def test_revoked_key_never_gets_a_certificate_again(fleet, register, calls):
    boards = [Board(1), Board(2)]
    cert_id = register(boards)["devices"][0]["certificate_id"]
    revoke(fleet, boards[0], cert_id)
    fleet.remove_thing_from_thing_group(thingGroupName=GROUP, thingName=boards[0].name)  # quarantined

    for rotate in ([], [boards[0].name]):
        result = register(boards, cached=False, expect_failure=True, rotate=rotate)
        members = fleet.list_things_in_thing_group(thingGroupName=GROUP)["things"]

        assert boards[0].name not in members, "a refused device must not rejoin the fleet group"

        assert boards[0].name in result["msg"] and "REVOKED" in result["msg"]
        assert boards[1].name not in result["msg"]
        assert result["devices"][0]["failed"] is True and "REVOKED" in result["devices"][0]["error"]
        assert result["devices"][1]["failed"] is False
        assert "CreateCertificateFromCsr" not in calls and "UpdateCertificate" not in calls
        assert status_of(fleet, cert_id) == "REVOKED"

    boards[0].new_key()
    result = register(boards, rotate=[boards[0].name])

    assert result["devices"][0]["issued_certificate"] is True
    assert status_of(fleet, cert_id) == "REVOKED"
    assert_registered(fleet, boards[0])


def test_revoked_certificate_still_attached_is_left_alone(fleet, register):
    board = Board(1)
    cert_id = register([board])["devices"][0]["certificate_id"]
    fleet.update_certificate(certificateId=cert_id, newStatus="REVOKED")

    result = register([board], expect_failure=True)

    assert "REVOKED" in result["devices"][0]["error"]
    assert status_of(fleet, cert_id) == "REVOKED"


def test_deactivated_key_needs_rotate(fleet, register):
    board = Board(1)
    cert_id = register([board])["devices"][0]["certificate_id"]
    revoke(fleet, board, cert_id, status="INACTIVE")

    result = register([board], expect_failure=True)
    assert "INACTIVE" in result["devices"][0]["error"] and "rotate" in result["devices"][0]["error"]

    result = register([board], rotate=[board.name])
    assert result["devices"][0]["issued_certificate"] is True
    assert status_of(fleet, cert_id) == "INACTIVE"  # never reactivated
    assert_registered(fleet, board)


def test_check_mode_writes_nothing_and_reports_the_plan(fleet, register, calls):
    registered, new = Board(1), Board(2)
    register([registered])
    registered.new_key()

    result = register([registered, new], check_mode=True, diff=True)

    assert result["changed"] is True
    assert writes(calls) == {}
    assert fleet.list_things()["things"][0]["thingName"] == registered.name
    assert len(fleet.list_things()["things"]) == 1
    changed_key, created = result["devices"]
    assert changed_key["actions"][:3] == ["issue_certificate", "attach_thing_principal", "attach_policy"]
    assert changed_key["actions"][3].startswith("deactivate_certificate ")
    assert created["actions"] == [
        "create_thing",
        "issue_certificate",
        "attach_thing_principal",
        "attach_policy",
        "add_to_thing_group",
    ]
    assert created["thing_arn"] is None and created["certificate_id"] is None
    assert result["diff"]["before"][new.name] == {
        "thing": None,
        "in_thing_group": False,
        "certificates": {},
        "policy_attached": False,
    }


def test_diff_and_result_hold_no_private_key_and_diff_no_pem(fleet, register):
    boards = [Board(1), Board(2)]

    result = register(boards, diff=True)

    assert "PRIVATE KEY" not in json.dumps(result)
    assert "BEGIN" not in json.dumps(result["diff"])
    assert set(result["diff"]["after"]) == {boards[0].name, boards[1].name}


def test_unchanged_devices_are_not_in_the_diff(fleet, register):
    boards = [Board(1), Board(2)]
    register(boards)
    boards[1].new_key()

    result = register(boards, diff=True)

    assert set(result["diff"]["before"]) == {boards[1].name}


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ({"thing_name": "48:27:E2:E5:91:90"}, "devices[1].thing_name: '48:27:E2:E5:91:90' is not a fleet thing name"),
        ({"thing_name": "4827e2e59190"}, "devices[1].thing_name: '4827e2e59190'"),
        ({"csr": "garbage"}, "devices[1].csr (4827E2E50002): not a PEM certificate signing request"),
        ({"csr": make_csr("AAAAAAAAAAAA")[1]}, "devices[1].csr (4827E2E50002): the CSR is for CN=AAAAAAAAAAAA"),
        ({"attributes": {"owner": "a b"}}, "devices[1].attributes.owner: 'a b' is not a valid attribute value"),
        ({"certificate_pem": "nope"}, "devices[1].certificate_pem (4827E2E50002): not a PEM X.509 certificate"),
    ],
)
def test_bad_device_entries_are_named(fleet, run_module, calls, device, expected):
    good, bad = Board(1), Board(2)
    args = {"devices": [good.device(), {**bad.device(), **device}], "policy_name": POLICY, "thing_group": GROUP}

    result = run_module(iot_fleet_registration, args, expect_failure=True)

    assert expected in result["msg"]
    assert calls == {}


def test_duplicates_and_unknown_rotate_are_named(fleet, run_module):
    board = Board(1)
    twin = {"thing_name": thing_name(2), "csr": make_csr(thing_name(2), board.key)[1]}
    args = {
        "devices": [board.device(), board.device(), twin],
        "policy_name": POLICY,
        "thing_group": GROUP,
        "rotate": ["4827E2E5FFFF"],
    }

    msg = run_module(iot_fleet_registration, args, expect_failure=True)["msg"]

    assert "devices[1].thing_name: 4827E2E50001 is also devices[0]" in msg
    assert "devices[2].csr: same public key as devices[0].csr" in msg
    assert "rotate: ['4827E2E5FFFF'] are not thing names listed in devices" in msg


def test_private_key_passed_as_csr_is_refused_and_masked(fleet, run_module):
    key = ec.generate_private_key(ec.SECP256R1())
    text = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    args = {"devices": [{"thing_name": thing_name(1), "csr": text}], "policy_name": POLICY, "thing_group": GROUP}

    result = run_module(iot_fleet_registration, args, expect_failure=True)

    assert "devices[0].csr: this text contains a private key" in result["msg"]
    assert "PRIVATE KEY" not in json.dumps(result)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"policy_name": "missing"}, "policy_name: no IoT policy 'missing'"),
        ({"thing_group": "missing"}, "thing_group: no thing group 'missing'"),
        ({"rate_limits": {"CreateThings": 5}}, "rate_limits: 'CreateThings' is not an API this module calls"),
        ({"rate_limits": {"CreateThing": 0}}, "rate_limits.CreateThing: 0 is not a positive number"),
        ({"max_workers": 0}, "max_workers: must be between 1 and 64"),
    ],
)
def test_setup_errors(fleet, run_module, args, expected):
    base = {"devices": [Board(1).device()], "policy_name": POLICY, "thing_group": GROUP}

    result = run_module(iot_fleet_registration, {**base, **args}, expect_failure=True)

    assert expected in result["msg"]
    assert fleet.list_things()["things"] == []


@pytest.fixture
def failing():
    """failing(operation, thing_or_policy) -> patch: moto refuses that operation for it until patch.undo()."""
    from moto.iot.exceptions import InvalidRequestException
    from moto.iot.models import IoTBackend

    patch = pytest.MonkeyPatch()

    def fail(method, victim):
        original = getattr(IoTBackend, method)

        def refusing(self, *args, **kwargs):
            if victim in args or victim in kwargs.values():
                raise InvalidRequestException(f"injected failure of {method} for {victim}")
            return original(self, *args, **kwargs)

        patch.setattr(IoTBackend, method, refusing)
        return patch

    yield fail
    patch.undo()


def active_certificates_attached_to_nothing(iot):
    orphans = []
    for cert in iot.list_certificates()["certificates"]:
        if cert["status"] == "ACTIVE" and not iot.list_principal_things(principal=cert["certificateArn"])["things"]:
            orphans.append(cert["certificateId"])
    return orphans


def test_failed_thing_attachment_leaves_no_orphan_and_a_rerun_converges(fleet, register, failing):
    boards = [Board(n) for n in range(5)]
    patch = failing("attach_thing_principal", boards[2].name)

    result = register(boards, expect_failure=True)

    assert result["msg"].startswith("1 of 5 devices could not be registered")
    assert f"{boards[2].name}: Failed to attach the certificate to the thing" in result["msg"]
    assert "was deactivated and deleted" in result["msg"]
    failed = result["devices"][2]
    assert failed["failed"] is True and failed["certificate_id"] is None
    assert [d["failed"] for d in result["devices"]] == [False, False, True, False, False]
    assert result["summary"]["failed"] == 1 and result["summary"]["changed"] == 4
    assert active_certificates_attached_to_nothing(fleet) == []
    assert len(fleet.list_certificates()["certificates"]) == 4

    patch.undo()
    result = register(boards)
    assert [d["changed"] for d in result["devices"]] == [False, False, True, False, False]
    # The failed run left the thing out of the fleet group too; the re-run adds it last.
    assert result["devices"][2]["actions"] == [
        "issue_certificate",
        "attach_thing_principal",
        "attach_policy",
        "add_to_thing_group",
    ]
    for board in boards:
        assert_registered(fleet, board)
    assert register(boards)["changed"] is False


def test_failed_policy_attachment_is_adopted_by_the_rerun(fleet, register, failing, calls):
    boards = [Board(1), Board(2)]
    patch = failing("attach_policy", POLICY)  # every device fails at the policy

    result = register(boards[:1], expect_failure=True)

    issued = fleet.list_certificates()["certificates"]
    assert len(issued) == 1 and issued[0]["status"] == "ACTIVE"
    assert certificates_of(fleet, boards[0].name) == {issued[0]["certificateId"]: "ACTIVE"}
    assert "Failed to attach the IoT policy" in result["devices"][0]["error"]

    patch.undo()
    result = register(boards[:1])
    device = result["devices"][0]
    assert device["reused_certificate"] is True and device["actions"] == ["attach_policy", "add_to_thing_group"]
    assert device["certificate_id"] == issued[0]["certificateId"]
    assert "CreateCertificateFromCsr" not in calls


def test_many_devices_in_parallel(fleet, register):
    boards = [Board(n) for n in range(60)]

    result = register(boards, max_workers=16)

    assert result["summary"]["issued_certificates"] == 60
    assert len({d["certificate_id"] for d in result["devices"]}) == 60
    assert len(fleet.list_things_in_thing_group(thingGroupName=GROUP)["things"]) == 60
    assert register(boards, max_workers=16)["changed"] is False
