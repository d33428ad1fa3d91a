"""Small builders shared by the sandbox tests."""

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

THING = "4827E2E59190"


def make_csr(key=None, common_name: str = THING) -> tuple[object, str]:
    """(private key, PEM CSR) as the controller makes them for a board."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def tampered_csr() -> str:
    """A well-formed CSR whose signature does not verify (its subject changed after signing)."""
    _key, pem = make_csr(common_name="AAAAAAAAAAAA")
    der = x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    der = der.replace(b"AAAAAAAAAAAA", b"BBBBBBBBBBBB")
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM).decode()


def public_bytes(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def policy_document() -> str:
    return '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}'
