"""Port, region and state dir: option, then environment, then the inventory, then defaults."""

from sandbox.settings import PORT_ENV
from sandbox.settings import ROOT
from sandbox.settings import STATE_DIR_ENV
from sandbox.settings import load_settings


def test_defaults_without_inventory_file(tmp_path, monkeypatch):
    monkeypatch.delenv(PORT_ENV, raising=False)
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    settings = load_settings(vars_file=tmp_path / "missing.yml")
    assert (settings.port, settings.region, settings.state_dir) == (4599, "eu-north-1", ROOT / ".sandbox")
    assert settings.endpoint == "http://127.0.0.1:4599"


def test_inventory_then_environment_then_option(tmp_path, monkeypatch):
    monkeypatch.delenv(PORT_ENV, raising=False)
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    vars_file = tmp_path / "sandbox.yml"
    vars_file.write_text("iotfleet_sandbox_port: 4600\niotfleet_aws_region: eu-west-1\n")
    assert load_settings(vars_file=vars_file).port == 4600
    assert load_settings(vars_file=vars_file).region == "eu-west-1"

    monkeypatch.setenv(PORT_ENV, "4601")
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "env-state"))
    settings = load_settings(vars_file=vars_file)
    assert (settings.port, settings.state_dir) == (4601, tmp_path / "env-state")

    settings = load_settings(state_dir=tmp_path / "opt-state", port=4602, vars_file=vars_file)
    assert (settings.port, settings.state_dir) == (4602, tmp_path / "opt-state")
    assert settings.pid_file == tmp_path / "opt-state" / "moto.pid"
    assert settings.ca_dir == tmp_path / "opt-state" / "ca"
