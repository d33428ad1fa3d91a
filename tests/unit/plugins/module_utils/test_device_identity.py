"""Parsing CSRs and certificates, certificate ids, and the key store's files."""

import hashlib
import os
import stat
import threading
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ansible_collections.iotfleet.aws.plugins.module_utils import device_identity as identity

THING = "4827E2E59190"


def csr_for(key, name=THING):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_build_csr_is_p256_with_the_thing_as_cn():
    key = identity.new_private_key()

    request = identity.load_csr(identity.build_csr(key, THING))

    assert identity.common_name(request) == THING
    assert request.public_key().curve.name == "secp256r1"
    assert identity.public_key_der(request) == identity.public_key_der(key)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("garbage", "not a PEM certificate signing request"),
        (None, "not a PEM certificate signing request"),
        (csr_for(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "RSA keys of at least 2048"),
        (csr_for(ec.generate_private_key(ec.SECP256K1())), "P-256, P-384 or P-521"),
    ],
)
def test_unusable_csrs(text, reason):
    with pytest.raises(identity.IdentityError, match=reason):
        identity.load_csr(text)


def test_tampered_csr_is_refused():
    pem = csr_for(ec.generate_private_key(ec.SECP256R1()), "AAAAAAAAAAAA")
    der = x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    tampered = x509.load_der_x509_csr(der.replace(b"AAAAAAAAAAAA", b"BBBBBBBBBBBB"))

    with pytest.raises(identity.IdentityError, match="signature"):
        identity.load_csr(tampered.public_bytes(serialization.Encoding.PEM).decode())


def test_private_key_text_is_refused_without_echo():
    text = identity.private_key_pem(identity.new_private_key()).decode()

    with pytest.raises(identity.IdentityError) as excinfo:
        identity.load_csr(text)

    assert "PRIVATE" not in str(excinfo.value)


def test_certificate_id_is_sha256_of_der():
    key = identity.new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, THING)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    assert identity.certificate_id(identity.load_certificate(pem)) == hashlib.sha256(
        cert.public_bytes(serialization.Encoding.DER)
    ).hexdigest()
    assert identity.certificate_public_key(pem) == identity.public_key_der(key)
    assert identity.certificate_public_key("nope") is None


def test_write_atomically_sets_the_mode_and_replaces(tmp_path):
    path = str(tmp_path / "a.key")

    assert identity.write_atomically(path, b"one", 0o600) is True
    assert mode_of(path) == 0o600
    assert identity.write_atomically(path, b"two", 0o644) is True
    assert open(path, "rb").read() == b"two" and mode_of(path) == 0o644
    assert os.listdir(tmp_path) == ["a.key"]  # no temporary file left


def test_write_atomically_without_replace_keeps_the_first(tmp_path):
    path = str(tmp_path / "a.key")
    identity.write_atomically(path, b"first", 0o600, replace=False)

    assert identity.write_atomically(path, b"second", 0o600, replace=False) is False
    assert open(path, "rb").read() == b"first"
    assert os.listdir(tmp_path) == ["a.key"]


def test_concurrent_key_creation_leaves_one_key(tmp_path):
    store = identity.KeyStore(str(tmp_path))
    keys = []

    def make():
        keys.append(identity.public_key_der(store.create_key(THING)))

    threads = [threading.Thread(target=make) for _turn in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(keys)) == 1
    assert identity.public_key_der(store.load_key(THING)) == keys[0]


def test_key_store_folder_is_created_0700_and_tightened(tmp_path):
    store = identity.KeyStore(str(tmp_path / "keys" / "iotfleet"))

    assert store.ensure_folder() is True
    assert mode_of(store.path) == 0o700
    assert store.ensure_folder() is False
    os.chmod(store.path, 0o755)
    assert store.ensure_folder() is True and mode_of(store.path) == 0o700


def test_unusable_key_file_is_an_error_that_does_not_echo_it(tmp_path):
    store = identity.KeyStore(str(tmp_path))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(store.key_path(THING), "wb") as handle:
        handle.write(identity.private_key_pem(rsa_key))

    with pytest.raises(identity.IdentityError, match="not an EC P-256 key") as excinfo:
        store.load_key(THING)
    assert "PRIVATE" not in str(excinfo.value)

    with open(store.key_path(THING), "w") as handle:
        # A malformed key, not a real one (the marker is split so no scanner mistakes it for a key).
        marker = "PRIVATE" + " KEY"
        handle.write(f"-----BEGIN {marker}-----\nbroken\n-----END {marker}-----\n")
    with pytest.raises(identity.IdentityError, match="not an unencrypted PEM private key") as excinfo:
        store.load_key(THING)
    assert "broken" not in str(excinfo.value)
