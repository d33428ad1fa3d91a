"""esp32_fs_image: the board's credentials image, deterministic, 0600, written only when bytes differ."""

import datetime
import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.iotfleet.aws.plugins.module_utils import esp32_image
from ansible_collections.iotfleet.aws.plugins.modules import esp32_fs_image
from firmware import fsimage
from firmware import testing

ROOT = Path(__file__).resolve().parents[4]
APP_DIR = ROOT / "firmware" / "app"
THING = "4827E2E59190"
PASSWORD = "wifi-secret-9f2c"


def _self_signed(cn, key, ca):
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "device.key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "device.crt": _self_signed(THING, key, ca=False),
        "ca.pem": _self_signed("root", ec.generate_private_key(ec.SECP256R1()), ca=True),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: str(folder / name) for name in files} | {"bytes": files}


@pytest.fixture
def args(pem, tmp_path):
    base = testing.write_base_image(tmp_path / "base.bin", "esp32s3")
    store = tmp_path / "keys"
    store.mkdir(mode=0o700)
    return {
        "path": str(store / f"{THING}.fs.img"),
        "app_dir": str(APP_DIR),
        "config": {
            "thing_name": THING,
            "endpoint": "abc123-ats.iot.eu-north-1.amazonaws.com",
            "port": "8883",  # as a template may render it
            "wifi_ssid": "lab",
            "sensor_type": "DHT22",
            "sensor_pin": 4,
        },
        "wifi_password": PASSWORD,
        "certificate": pem["device.crt"],
        "private_key": pem["device.key"],
        "root_ca": pem["ca.pem"],
        "base_image": str(base),
        "chip": "ESP32-S3",
        "flash_size": "4MB",
    }


@pytest.fixture
def run(run_module):
    def call(args, **kwargs):
        return run_module(esp32_fs_image, args, region=None, **kwargs)

    return call


def test_builds_the_image_0600_with_the_layout_and_regions(run, args, pem):
    result = run(args)
    assert result["changed"] is True
    image = Path(args["path"]).read_bytes()
    assert os.stat(args["path"]).st_mode & 0o777 == 0o600
    assert result["size"] == len(image) == 0x200000  # 4 MB flash: vfs from 0x200000 to the end
    assert result["md5"] == hashlib.md5(image).hexdigest()
    assert result["layout"]["filesystem"]["offset"] == 0x200000
    assert result["regions"] == [
        {"offset": 0x0, "image": args["base_image"]},
        {"offset": 0x200000, "image": args["path"]},
    ]
    files = esp32_image.read_image(image)
    config = json.loads(files["/config.json"])
    assert config["port"] == 8883 and config["wifi_password"] == PASSWORD
    assert files["/certs/device.key"] == pem["bytes"]["device.key"]
    assert files["/certs/device.crt"] == pem["bytes"]["device.crt"]
    assert files["/certs/root-ca.pem"] == pem["bytes"]["ca.pem"]
    assert "/app/mqtt.py" in files and "/main.py" in files
    assert result["changed_files"] == sorted(files)


def test_same_as_the_firmware_cli_builder(run, args, pem):
    """One implementation: the module's bytes are the firmware package's bytes."""
    result = run(args)
    config = dict(args["config"], port=8883, wifi_password=PASSWORD)
    image = fsimage.build_board_image(
        config, pem["bytes"]["device.crt"], pem["bytes"]["device.key"], pem["bytes"]["ca.pem"], result["size"]
    )
    assert hashlib.md5(image).hexdigest() == result["md5"]


def test_second_run_changes_nothing_and_never_shows_secrets(run, args, pem):
    run(args)
    before = os.stat(args["path"]).st_mtime_ns
    again = run(args, diff=True)
    assert again["changed"] is False and again["changed_files"] == []
    assert os.stat(args["path"]).st_mtime_ns == before
    text = json.dumps(again)
    assert PASSWORD not in text
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text


def test_a_wrong_mode_is_fixed(run, args):
    run(args)
    os.chmod(args["path"], 0o644)
    result = run(args)
    assert result["changed"] is True and result["changed_files"] == []
    assert os.stat(args["path"]).st_mode & 0o777 == 0o600


def test_check_mode_reports_without_writing(run, args):
    result = run(args, check_mode=True, diff=True)
    assert result["changed"] is True
    assert not os.path.exists(args["path"])
    assert result["diff"]["before"]["md5"] is None and result["diff"]["after"]["md5"] == result["md5"]
    run(args)
    args["config"]["endpoint"] = "other-ats.iot.eu-north-1.amazonaws.com"
    before = Path(args["path"]).read_bytes()
    planned = run(args, check_mode=True)
    assert planned["changed"] is True and planned["changed_files"] == ["/config.json"]
    assert Path(args["path"]).read_bytes() == before


def test_explicit_size_without_base_image(run, args):
    for option in ("base_image", "chip", "flash_size"):
        del args[option]
    args["size"] = "256KB"
    result = run(args)
    assert result["size"] == 0x40000 and "regions" not in result


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": {"thing_name": THING, "endpoint": "e", "wifi_ssid": "x", "wifi_password": "p"}}, "wifi_password"),
        ({"config": {"thing_name": "nope", "endpoint": "e", "wifi_ssid": "x"}}, "thing_name must be 12"),
        ({"certificate": "/nonexistent/device.crt"}, "certificate: cannot read"),
        ({"chip": "esp32"}, "the image is built for esp32s3, the board is esp32"),
        ({"flash_size": None}, "flash size is needed"),
        ({"path": "/nonexistent/dir/x.img"}, "does not exist"),
        ({"app_dir": "/nonexistent"}, "app_dir"),
    ],
)
def test_bad_inputs_fail_clearly_without_writing(run, args, change, message):
    args.update(change)
    result = run(args, expect_failure=True)
    assert message in result["msg"]
    assert PASSWORD not in json.dumps(result)


def test_key_in_the_certificate_slot_is_refused_without_echo(run, args, pem):
    args["certificate"] = pem["device.key"]
    result = run(args, expect_failure=True)
    assert "does not look like a PEM file" in result["msg"]
    assert "PRIVATE KEY-----\n" not in result["msg"] and "MI" not in result["msg"]
    assert not os.path.exists(args["path"])
