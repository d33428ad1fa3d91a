import base64
import hashlib
import os
import zipfile

import pytest

from ansible_collections.iotfleet.aws.plugins.modules import lambda_package


@pytest.fixture
def source(tmp_path):
    function = tmp_path / "CoreTelemetry"
    (function / "__pycache__").mkdir(parents=True)
    (function / "handler.py").write_text("def handler(event, context):\n    return event\n")
    (function / "__pycache__" / "handler.cpython-312.pyc").write_bytes(b"cache")
    common = tmp_path / "common"
    common.mkdir()
    (common / "settings.py").write_text("TTL = 300\n")
    return tmp_path


def args(source, dest):
    return {
        "sources": [{"src": str(source / "CoreTelemetry")}, {"src": str(source / "common"), "dest": "common"}],
        "dest": str(dest),
    }


def test_packs_sorted_entries_without_caches_and_reports_lambda_sha(source, tmp_path, run_module):
    dest = tmp_path / "out" / "fn.zip"
    result = run_module(lambda_package, args(source, dest), region=None)

    data = dest.read_bytes()
    assert result["changed"] is True
    assert result["files"] == ["common/settings.py", "handler.py"]
    assert result["code_sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert zipfile.ZipFile(dest).read("handler.py").startswith(b"def handler")


def test_same_source_gives_same_bytes_even_after_touching_files(source, tmp_path, run_module):
    dest = tmp_path / "fn.zip"
    first = run_module(lambda_package, args(source, dest), region=None)
    os.utime(source / "CoreTelemetry" / "handler.py", (1, 1))
    (source / "common" / "settings.py").chmod(0o600)
    second = run_module(lambda_package, args(source, dest), region=None)

    assert second["changed"] is False
    assert second["code_sha256"] == first["code_sha256"]


def test_changed_source_is_rewritten_and_check_mode_does_not_write(source, tmp_path, run_module):
    dest = tmp_path / "fn.zip"
    first = run_module(lambda_package, args(source, dest), region=None)
    (source / "common" / "settings.py").write_text("TTL = 60\n")

    predicted = run_module(lambda_package, args(source, dest), check_mode=True, diff=True, region=None)
    assert predicted["changed"] is True
    assert base64.b64encode(hashlib.sha256(dest.read_bytes()).digest()).decode() == first["code_sha256"]

    written = run_module(lambda_package, args(source, dest), region=None)
    assert written["changed"] is True
    assert written["code_sha256"] != first["code_sha256"]


def test_missing_source_and_duplicate_entries_are_named(source, tmp_path, run_module):
    missing = run_module(
        lambda_package,
        {"sources": [{"src": str(source / "nope")}], "dest": str(tmp_path / "x.zip")},
        expect_failure=True,
        region=None,
    )
    assert missing["msg"].startswith("sources[0].src:")

    twice = run_module(
        lambda_package,
        {"sources": [{"src": str(source / "common")}] * 2, "dest": str(tmp_path / "x.zip")},
        expect_failure=True,
        region=None,
    )
    assert "sources[1]: settings.py is packed twice" in twice["msg"]
    assert not (tmp_path / "x.zip").exists()
