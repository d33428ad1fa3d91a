# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A device's identity on the controller: its EC P-256 key, its CSR and the certificate AWS issued.

The key store is one folder (0700) holding, per thing, `<thing>.key` (PKCS#8 PEM, 0600), `<thing>.csr`
and, once registered, `<thing>.crt` (both public, 0644). Every file is written to a temporary file
in the same folder and then linked or renamed into place, so a reader never sees half a file and a
key, once there, is never replaced except by an explicit rotation. Nothing here returns key material.
"""

import hashlib
import os
import stat
import tempfile
from datetime import UTC
from datetime import datetime

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

KEY_STORE_MODE = 0o700
KEY_MODE = 0o600
PUBLIC_MODE = 0o644
# What CreateCertificateFromCsr accepts (AWS IoT API reference).
MIN_RSA_BITS = 2048
EC_CURVE_NAMES = ("secp256r1", "secp384r1", "secp521r1")


class IdentityError(ValueError):
    """A CSR, certificate or key file that cannot be used; the message says why."""


# Parsing and comparing public material.


def public_key_der(item):
    """The SubjectPublicKeyInfo (DER) of a CSR, certificate or key: what "same key" compares."""
    return item.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_csr(pem):
    """Parse a PEM CSR and check what AWS checks (signature, key type); IdentityError says what is wrong."""
    if not isinstance(pem, str) or "PRIVATE KEY" in pem:
        raise IdentityError("not a PEM certificate signing request")
    try:
        request = x509.load_pem_x509_csr(pem.encode("utf-8"))
    except ValueError as e:
        raise IdentityError(f"not a PEM certificate signing request ({e})") from None
    if not request.is_signature_valid:
        raise IdentityError("the request's signature does not match its public key (corrupted or edited)")
    key = request.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return request
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_CURVE_NAMES:
        return request
    raise IdentityError("AWS IoT accepts RSA keys of at least 2048 bits or EC keys on P-256, P-384 or P-521 only")


def common_name(item):
    """The subject CN of a CSR or certificate, or None."""
    names = item.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else None


def load_certificate(pem):
    if not isinstance(pem, str) or "PRIVATE KEY" in pem:
        raise IdentityError("not a PEM X.509 certificate")
    try:
        return x509.load_pem_x509_certificate(pem.encode("utf-8"))
    except ValueError as e:
        raise IdentityError(f"not a PEM X.509 certificate ({e})") from None


def certificate_id(certificate):
    """AWS IoT's id of a certificate: the SHA-256 of its DER form."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_public_key(pem):
    """The SubjectPublicKeyInfo of a PEM certificate, or None when it does not parse."""
    try:
        return public_key_der(load_certificate(pem))
    except IdentityError:
        return None


# Making keys and CSRs.


def new_private_key():
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def build_csr(key, name):
    """A CSR for `key` with CN = `name` (the thing name), PEM text."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode("ascii")


# Files.


def write_atomically(path, data, mode, replace=True):
    """Write `data` to `path` with `mode` from the first byte on; return False if `replace` is off and it exists.

    The temporary file is created 0600 (mkstemp) and chmod-ed before any byte is written, so a key
    is never readable by others, even for a moment.
    """
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
            tmp = None
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        return True
    finally:
        if tmp is not None:
            os.unlink(tmp)


def ensure_mode(path, mode, check_mode):
    """Set the permission bits of `path` to `mode`; True when they were different."""
    if stat.S_IMODE(os.stat(path).st_mode) == mode:
        return False
    if not check_mode:
        os.chmod(path, mode)
    return True


class KeyStore:
    """The key store folder and the files of each thing in it."""

    def __init__(self, path, check_mode=False):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.check_mode = check_mode

    def key_path(self, thing):
        return os.path.join(self.path, f"{thing}.key")

    def csr_path(self, thing):
        return os.path.join(self.path, f"{thing}.csr")

    def certificate_path(self, thing):
        return os.path.join(self.path, f"{thing}.crt")

    def ensure_folder(self):
        """Create the folder 0700 (parents as needed) or tighten its mode; True when something changed."""
        if os.path.isdir(self.path):
            return ensure_mode(self.path, KEY_STORE_MODE, self.check_mode)
        if os.path.exists(self.path):
            raise IdentityError(f"{self.path} exists and is not a folder")
        if not self.check_mode:
            os.makedirs(self.path, mode=KEY_STORE_MODE, exist_ok=True)
            os.chmod(self.path, KEY_STORE_MODE)
        return True

    def load_key(self, thing):
        """The thing's private key, or None when it has none yet; IdentityError when the file is unusable."""
        path = self.key_path(thing)
        if not os.path.exists(path):
            return None
        try:
            with open(path, "rb") as handle:
                key = serialization.load_pem_private_key(handle.read(), password=None)
        except (ValueError, TypeError) as e:
            # Never echo the file: it may hold a key in some other form.
            raise IdentityError(
                f"{path} is not an unencrypted PEM private key ({type(e).__name__}); it is left as it is. "
                f"Move it away to make a new key (the board then needs a new certificate)."
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise IdentityError(f"{path} is not an EC P-256 key; it is left as it is. Move it away to make a new one.")
        return key

    def retire_key(self, thing):
        """Rename the thing's key (and drop its CSR and certificate) before a rotation; return the new key path."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        retired = f"{self.key_path(thing)}.retired-{stamp}"
        if not self.check_mode:
            os.replace(self.key_path(thing), retired)
            for path in (self.csr_path(thing), self.certificate_path(thing)):
                if os.path.exists(path):
                    os.unlink(path)
        return retired

    def create_key(self, thing):
        """Make and store a new key, unless a concurrent run stored one first; return the key in the file."""
        key = new_private_key()
        if self.check_mode:
            return key
        write_atomically(self.key_path(thing), private_key_pem(key), KEY_MODE, replace=False)
        return self.load_key(thing)

    def read_csr(self, thing, key):
        """The stored CSR text if it is for `key` and names `thing`, else None."""
        path = self.csr_path(thing)
        if not os.path.exists(path):
            return None
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
        try:
            request = load_csr(text)
        except IdentityError:
            return None
        if public_key_der(request) != public_key_der(key) or common_name(request) != thing:
            return None
        return text

    def read_certificate(self, thing, key):
        """The stored certificate text if it is for `key`, else None."""
        path = self.certificate_path(thing)
        if not os.path.exists(path):
            return None
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
        return text if certificate_public_key(text) == public_key_der(key) else None
