"""Fixtures for the firmware tests: a throwaway PKI (made per session, never committed), a TLS broker
stub, and a board filesystem extracted from a real fsimage build, as a virtual device would use it."""

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from firmware import fsimage
from tests.unit.firmware.broker import Broker

THING = "4827E2E59190"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject_cn, key, issuer_cert, issuer_key, ca=False, server=False):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject_cn))
        .issuer_name(issuer_cert.subject if issuer_cert is not None else _name(subject_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class PKI:
    """PEM bytes and files of a CA, a server (127.0.0.1/localhost) and a device (CN = THING)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        ca_key = _key()
        ca = _cert("iotfleet test CA", ca_key, None, ca_key, ca=True)
        server_key, device_key, rogue_key = _key(), _key(), _key()
        rogue_ca = _cert("rogue CA", rogue_key, None, rogue_key, ca=True)
        self.pem = {
            "ca.pem": _pem_cert(ca),
            "server.crt": _pem_cert(_cert("broker", server_key, ca, ca_key, server=True)),
            "server.key": _pem_key(server_key),
            "device.crt": _pem_cert(_cert(THING, device_key, ca, ca_key)),
            "device.key": _pem_key(device_key),
            "rogue-ca.pem": _pem_cert(rogue_ca),
            "rogue-server.crt": _pem_cert(_cert("rogue", server_key, rogue_ca, rogue_key, server=True)),
        }
        for name, data in self.pem.items():
            fsimage.write_private(self.folder / name, data)

    def path(self, name):
        return str(self.folder / name)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(pki):
    server = Broker(pki.path("server.crt"), pki.path("server.key"), pki.path("ca.pem")).start()
    yield server
    server.stop()


def device_config(port, **overrides):
    config = {
        "thing_name": THING,
        "endpoint": "127.0.0.1",
        "port": port,
        "wifi_ssid": "sandbox",
        "wifi_password": "not-a-secret",
        "sensor_type": "DHT22",
        "sensor_pin": 7,
        "send_interval_seconds": 1,
        "keepalive_seconds": 30,
    }
    config.update(overrides)
    return config


@pytest.fixture
def board_fs(pki, tmp_path):
    """make(config) -> folder holding the board's files, built and read back through fsimage."""

    def make(config):
        image = fsimage.build_board_image(
            config, pki.pem["device.crt"], pki.pem["device.key"], pki.pem["ca.pem"], 64 * 4096
        )
        return fsimage.extract_image(image, tmp_path / "board")

    return make
