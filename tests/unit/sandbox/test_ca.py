"""The local CA: made once, reused, never replaced."""

import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from sandbox.ca import CA_COMMON_NAME
from sandbox.ca import ensure_ca


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_a_ca_made_once_and_private(tmp_path):
    ca = ensure_ca(tmp_path / "ca")
    assert ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_COMMON_NAME
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert (ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc).days >= 3650
    ca.cert.verify_directly_issued_by(ca.cert)
    assert mode(tmp_path / "ca") == 0o700
    assert mode(tmp_path / "ca" / "ca.key") == 0o600
    assert not [p.name for p in (tmp_path / "ca").iterdir() if p.name.startswith(".")]  # no temp files left

    before = {p.name: p.read_bytes() for p in (tmp_path / "ca").iterdir()}
    assert ensure_ca(tmp_path / "ca").cert == ca.cert
    assert {p.name: p.read_bytes() for p in (tmp_path / "ca").iterdir()} == before


def test_a_lost_certificate_is_remade_from_the_existing_key(tmp_path):
    ensure_ca(tmp_path / "ca")
    key_pem = (tmp_path / "ca" / "ca.key").read_bytes()
    (tmp_path / "ca" / "ca.pem").unlink()
    ca = ensure_ca(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").read_bytes() == key_pem
    assert ca.cert.public_key() == ca.key.public_key()


def test_a_certificate_of_another_key_is_refused_not_replaced(tmp_path):
    ensure_ca(tmp_path / "one")
    ensure_ca(tmp_path / "two")
    (tmp_path / "two" / "ca.pem").write_bytes((tmp_path / "one" / "ca.pem").read_bytes())
    with pytest.raises(ValueError, match="does not belong"):
        ensure_ca(tmp_path / "two")
