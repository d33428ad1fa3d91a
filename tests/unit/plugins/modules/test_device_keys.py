"""device_keys: keys and CSRs in a key store on the controller, never in the result."""

import json
import os
import stat
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.iotfleet.aws.plugins.modules import device_keys
from tests.unit.conftest import ModuleExit
from tests.unit.conftest import _exit_json
from tests.unit.conftest import _fail_json

THINGS = ["4827E2E59190", "4827E2E59191"]


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def key_bytes(store, name):
    with open(os.path.join(store, f"{name}.key"), "rb") as handle:
        return handle.read()


def public_key(pem_bytes):
    key = serialization.load_pem_private_key(pem_bytes, password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_for(csr_pem):
    """A certificate for the CSR's key, as AWS would issue it (signed by some CA)."""
    request = x509.load_pem_x509_csr(csr_pem.encode())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]))
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "keys" / "iotfleet")


@pytest.fixture
def keys(monkeypatch, store):
    """keys(**args) -> result of device_keys (not an AWS module: no region added)."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)

    def run(check_mode=False, diff=False, expect_failure=False, **args):
        args = {"things": THINGS, "key_store": store, "_ansible_check_mode": check_mode, "_ansible_diff": diff, **args}
        with patch_module_args(args), pytest.raises(ModuleExit) as exc:
            device_keys.main()
        assert exc.value.failed == expect_failure, exc.value.result
        return exc.value.result

    return run


def test_creates_keys_and_csrs_with_tight_modes(keys, store):
    result = keys()

    assert result["changed"] is True
    assert result["created"] == THINGS
    assert mode_of(store) == 0o700
    for name, device in zip(THINGS, result["devices"], strict=True):
        files = result["files"][name]
        assert files == {
            "key_path": os.path.join(store, f"{name}.key"),
            "csr_path": os.path.join(store, f"{name}.csr"),
            "certificate_path": None,
        }
        assert mode_of(files["key_path"]) == 0o600
        assert mode_of(files["csr_path"]) == 0o644
        request = x509.load_pem_x509_csr(device["csr"].encode())
        assert request.subject.rfc4514_string() == f"CN={name}"
        assert request.public_key().curve.name == "secp256r1"
        assert (
            request.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            == public_key(key_bytes(store, name))
        )
        assert device == {"thing_name": name, "csr": open(files["csr_path"]).read(), "certificate_pem": None}
    assert sorted(os.listdir(store)) == sorted(f"{n}.{ext}" for n in THINGS for ext in ("key", "csr"))


def test_result_and_diff_never_hold_key_material(keys, store):
    result = keys(diff=True)
    again = keys(diff=True, rotate=[THINGS[0]])

    for answer in (result, again):
        text = json.dumps(answer)
        assert "PRIVATE KEY" not in text
        for name in THINGS:
            assert key_bytes(store, name).decode().split("\n")[1] not in text


def test_existing_keys_are_never_regenerated(keys, store):
    first = keys()
    before = {name: key_bytes(store, name) for name in THINGS}

    second = keys()

    assert second["changed"] is False
    assert second["created"] == []
    assert second["devices"] == first["devices"]
    assert {name: key_bytes(store, name) for name in THINGS} == before


def test_missing_or_foreign_csr_is_remade_for_the_same_key(keys, store):
    first = keys()
    os.unlink(os.path.join(store, f"{THINGS[0]}.csr"))
    with open(os.path.join(store, f"{THINGS[1]}.csr"), "w") as handle:
        handle.write("not a csr")

    result = keys()

    assert result["changed"] is True and result["created"] == []
    for old, new in zip(first["devices"], result["devices"], strict=True):
        old_key = x509.load_pem_x509_csr(old["csr"].encode()).public_key()
        assert x509.load_pem_x509_csr(new["csr"].encode()).public_key() == old_key


def test_loose_modes_are_tightened(keys, store):
    keys()
    os.chmod(store, 0o755)
    os.chmod(os.path.join(store, f"{THINGS[0]}.key"), 0o644)

    result = keys()

    assert result["changed"] is True
    assert mode_of(store) == 0o700
    assert mode_of(os.path.join(store, f"{THINGS[0]}.key")) == 0o600


def test_check_mode_writes_nothing(keys, store):
    result = keys(check_mode=True)

    assert result["changed"] is True
    assert result["created"] == THINGS
    assert [d["csr"] for d in result["devices"]] == [None, None]
    assert not os.path.exists(store)


def test_rotate_makes_a_new_key_and_keeps_the_old_one_aside(keys, store):
    first = keys()
    old_key = key_bytes(store, THINGS[0])
    keys(certificates=[{"thing_name": THINGS[0], "certificate_pem": certificate_for(first["devices"][0]["csr"])}])

    result = keys(rotate=[THINGS[0]])

    assert result["changed"] is True
    assert key_bytes(store, THINGS[0]) != old_key
    retired = result["rotated"][THINGS[0]]
    assert retired.startswith(os.path.join(store, f"{THINGS[0]}.key.retired-"))
    assert open(retired, "rb").read() == old_key and mode_of(retired) == 0o600
    assert result["devices"][0]["csr"] != first["devices"][0]["csr"]
    assert result["devices"][0]["certificate_pem"] is None  # the old key's certificate is gone
    assert result["devices"][1] == first["devices"][1]


def test_certificates_are_kept_and_returned(keys, store):
    first = keys()
    pem = certificate_for(first["devices"][0]["csr"])
    registration = [
        {"thing_name": THINGS[0], "certificate_pem": pem, "certificate_id": "abc", "changed": True},
        {"thing_name": THINGS[1], "certificate_pem": None, "failed": True},
    ]

    stored = keys(certificates=registration)
    again = keys(certificates=registration)
    later = keys()

    assert stored["changed"] is True and again["changed"] is False and later["changed"] is False
    path = os.path.join(store, f"{THINGS[0]}.crt")
    assert open(path).read() == pem and mode_of(path) == 0o644
    assert later["devices"][0]["certificate_pem"] == pem
    assert later["files"][THINGS[0]]["certificate_path"] == path
    assert later["devices"][1]["certificate_pem"] is None


def test_certificate_for_another_key_is_refused(keys, store):
    first = keys()

    result = keys(
        certificates=[{"thing_name": THINGS[0], "certificate_pem": certificate_for(first["devices"][1]["csr"])}],
        expect_failure=True,
    )

    assert f"the certificate given for {THINGS[0]} is not for its key" in result["msg"]
    assert not os.path.exists(os.path.join(store, f"{THINGS[0]}.crt"))


def test_unreadable_key_is_an_error_and_is_kept(keys, store):
    keys()
    path = os.path.join(store, f"{THINGS[0]}.key")
    with open(path, "w") as handle:
        handle.write("garbage")

    result = keys(expect_failure=True)

    assert f"things: {THINGS[0]}: {path} is not an unencrypted PEM private key" in result["msg"]
    assert open(path).read() == "garbage"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"things": ["48:27:E2:E5:91:90"]}, "things[0]: '48:27:E2:E5:91:90' is not a fleet thing name"),
        ({"rotate": ["4827E2E5FFFF"]}, "rotate: ['4827E2E5FFFF'] are not listed in things"),
        (
            {"certificates": [{"thing_name": "4827E2E5FFFF", "certificate_pem": "x"}]},
            "certificates[0].thing_name: '4827E2E5FFFF' is not listed in things",
        ),
    ],
)
def test_bad_input(keys, store, args, expected):
    result = keys(expect_failure=True, **args)

    assert expected in result["msg"]
    assert not os.path.exists(store)


def test_key_store_that_is_a_file(keys, tmp_path):
    path = tmp_path / "file"
    path.write_text("")

    result = keys(key_store=str(path), expect_failure=True)

    assert "is not a folder" in result["msg"]
