"""The sandbox's local CA: signs the certificates that CreateCertificateFromCsr returns.

Made once per state dir and reused, so certificates issued earlier (and the broker that trusts
the CA) stay valid across `down`/`up`.
"""

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CA_COMMON_NAME = "iotfleet sandbox IoT CA"
CA_VALIDITY = timedelta(days=3652)
# What AWS IoT puts in the certificates it issues: a fixed subject and a validity to the end of 2049.
DEVICE_SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")])
DEVICE_NOT_AFTER = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
# The keys AWS accepts in a CSR (API reference of CreateCertificateFromCsr).
EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path


def _write_once(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `data` unless it exists; a concurrent creator wins, never a mix of both."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    now = datetime.now(UTC).replace(microsecond=0)
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def ensure_ca(ca_dir: Path) -> CA:
    """Load the CA from `ca_dir`, creating whatever part of it is missing; never replace a file."""
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_dir.chmod(0o700)
    key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.pem"
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_once(key_path, pem, 0o600)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not cert_path.exists():
        _write_once(cert_path, _self_signed(key).public_bytes(serialization.Encoding.PEM), 0o644)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.public_key() != key.public_key():
        raise ValueError(f"{cert_path} does not belong to {key_path}; move the CA away to make a new one")
    return CA(cert=cert, key=key, cert_path=cert_path)


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check what AWS checks; ValueError says what is wrong."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"The certificate signing request is not a valid PEM CSR: {exc}") from None
    if not csr.is_signature_valid:
        raise ValueError("The certificate signing request's signature does not verify")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return csr
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, EC_CURVES):
        return csr
    raise ValueError("The CSR's key must be RSA of at least 2048 bits or EC on NIST P-256, P-384 or P-521")


def issue_certificate(csr: x509.CertificateSigningRequest, ca: CA) -> x509.Certificate:
    """A device certificate for the CSR's public key, shaped like the ones AWS IoT issues."""
    now = datetime.now(UTC).replace(microsecond=0)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(DEVICE_SUBJECT)
        .issuer_name(ca.cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(DEVICE_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
