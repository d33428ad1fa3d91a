"""Shared fixtures for unit tests: moto in process and a runner for Ansible modules."""

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The collection is importable as ansible_collections.iotfleet.aws through the bootstrap link.
sys.path.insert(0, str(ROOT / ".collections"))

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402

REGION = "eu-north-1"
ACCOUNT_ID = "123456789012"  # moto's default account


class ModuleExit(Exception):
    """Raised instead of exit_json/fail_json so a test can read the module's result."""

    def __init__(self, result, failed):
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise ModuleExit(kwargs, failed=False)


def _fail_json(self, msg="", **kwargs):
    kwargs["msg"] = msg
    kwargs["failed"] = True
    raise ModuleExit(kwargs, failed=True)


@pytest.fixture
def aws(monkeypatch):
    """Fresh moto backends for one test, with fake credentials and region."""
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield REGION


@pytest.fixture
def run_module(monkeypatch):
    """run_module(module, args, check_mode=False, diff=False) -> result dict.

    Raises AssertionError if the module fails and `expect_failure` is not set; returns the result
    of exit_json or fail_json. AWS modules get the test region unless `region=None` (modules that
    do not talk to AWS refuse the option).
    """
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)

    def run(module, args, check_mode=False, diff=False, expect_failure=False, region=REGION):
        module_args = dict(args)
        if region:
            module_args.setdefault("region", region)
        if check_mode:
            module_args["_ansible_check_mode"] = True
        if diff:
            module_args["_ansible_diff"] = True
        with patch_module_args(module_args):
            with pytest.raises(ModuleExit) as exc:
                module.main()
        result = exc.value.result
        if exc.value.failed and not expect_failure:
            raise AssertionError(f"module failed: {json.dumps(result, default=str)}")
        if expect_failure and not exc.value.failed:
            raise AssertionError(f"module succeeded but a failure was expected: {json.dumps(result, default=str)}")
        return result

    return run


@pytest.fixture
def iot(aws):
    import boto3

    return boto3.client("iot", region_name=aws)


os.environ.setdefault("ANSIBLE_LOCAL_TEMP", str(ROOT / "tests" / "output" / "tmp"))
