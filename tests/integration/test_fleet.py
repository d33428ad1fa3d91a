"""fleet.yml against the private sandbox and three virtual boards, flashed with the real esptool.

One cloud.yml converge (prefix fleettest) and one set of boards for the module; the tests run in
order: first rollout, no-change re-run, check mode, one corrupted region, a MAC mismatch, then
revoke -> quarantined board left alone -> rotate -> the board is back.
"""

import hashlib
import json
import os
import re
import socket
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from firmware import fsimage
from firmware import layout as flash_layout
from sandbox import esp32_boards
from sandbox.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "fleettest"
# Locally administered MACs, so these things never meet another test's boards in the shared sandbox.
BOARDS = {
    "fleetboard1": {"chip": "esp32s3", "mac": "02:F1:EE:00:00:01", "flash_size": "8MB"},
    "fleetboard2": {"chip": "esp32", "mac": "02:F1:EE:00:00:02", "flash_size": "4MB"},
    "fleetboard3": {"chip": "esp32s3", "mac": "02:F1:EE:00:00:03", "flash_size": "4MB"},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thing(name):
    return BOARDS[name]["mac"].replace(":", "")


@pytest.fixture(scope="module")
def fleet(sandbox, tmp_path_factory):
    """A test inventory (its boards on free ports, the sandbox inventory's group_vars) and its boards running."""
    folder = tmp_path_factory.mktemp("fleet")
    inventory = folder / "inventory"
    inventory.mkdir()
    (inventory / "group_vars").symlink_to(ROOT / "inventories" / "local" / "group_vars")
    hosts = {}
    for name, board in BOARDS.items():
        hosts[name] = {"esp32_port": f"socket://127.0.0.1:{free_port()}", "virtual_board": board}
    mac = BOARDS["fleetboard1"]["mac"].lower()
    hosts["fleetboard1"].update(owner="alice", location="lab-1", esp32_expected_mac=mac)
    # fleetboard3 hangs off a "station" other than the controller: its images are copied there first
    # (the station is reached with a local connection here, so the role is told it is remote).
    hosts["fleetboard3"].update(esp32_station="fleetstation", fleet_device_station_local=False)
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    tree = {
        "all": {
            "hosts": {"localhost": dict(local), "fleetstation": dict(local)},
            "children": {"esp32_boards": {"vars": dict(local), "hosts": hosts}},
        }
    }
    (inventory / "hosts.yml").write_text(yaml.safe_dump(tree))
    settings = load_settings(state_dir=sandbox["state_dir"], port=sandbox["port"])
    boards = esp32_boards.read_inventory(inventory / "hosts.yml")
    assert esp32_boards.up(settings, boards) == 0
    try:
        yield {
            "inventory": inventory,
            "keys": folder / "keys",
            "cache": folder / "firmware",
            "station_dir": folder / "station",
            "flash": {name: settings.state_dir / "boards" / f"{name}.flash" for name in BOARDS},
            "state_dir": settings.state_dir,
        }
    finally:
        esp32_boards.down(settings)


@pytest.fixture(scope="module")
def run(playbook, fleet):
    def run_playbook(path, *extra):
        return playbook(
            path,
            "-i",
            str(fleet["inventory"]),
            "-e",
            f"iotfleet_prefix={PREFIX}",
            "-e",
            f"iotfleet_sandbox_state_dir={fleet['state_dir']}",
            "-e",
            f"fleet_device_key_store={fleet['keys']}",
            "-e",
            f"fleet_device_firmware_cache={fleet['cache']}",
            "-e",
            f"fleet_device_station_dir={fleet['station_dir']}",
            *extra,
        )

    return run_playbook


@pytest.fixture(scope="module")
def stack(run):
    converge = run("playbooks/cloud.yml")
    assert converge.returncode == 0, converge.output
    return converge


@pytest.fixture(scope="module")
def first(stack, run):
    rollout = run("playbooks/fleet.yml")
    assert rollout.returncode == 0, rollout.output
    return rollout


def table(output):
    """The fleet table's rows: {board: [thing, chip, certificate, firmware, credentials]} (columns: 2+ spaces)."""
    rows = {}
    for line in output.splitlines():
        match = re.match(r"^\s*- '?(fleetboard\d\s.*?)'?$", line)
        if match:
            name, *columns = re.split(r"\s{2,}", match.group(1).strip())
            rows[name] = columns
    return rows


def layout(fleet, name):
    board = BOARDS[name]
    base = fleet["cache"] / f"micropython-standin-{board['chip']}.bin"
    return flash_layout.flash_layout(base, board["chip"], board["flash_size"])


def flash_region(fleet, name, offset, size):
    data = fleet["flash"][name].read_bytes()[offset : offset + size]
    return data + b"\xff" * (size - len(data))  # the virtual board reads 0xFF past its file


def board_files(fleet, name):
    fs = layout(fleet, name)["filesystem"]
    return fsimage.read_image(flash_region(fleet, name, fs["offset"], fs["size"]))


def public_key(pem):
    return pem.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_board_credentials(fleet, name, aws_client):
    """The board's flashed filesystem holds its thing's registered certificate for the key in the key store."""
    files = board_files(fleet, name)
    config = json.loads(files["/config.json"])
    assert config["thing_name"] == thing(name)
    # The sandbox's MQTT broker: its port (the session's free port) and DescribeEndpoint's 127.0.0.1.
    assert config["port"] == int(os.environ["IOTFLEET_SANDBOX_MQTT_PORT"]) and config["wifi_ssid"] == "iotfleet-sandbox"
    assert config["endpoint"] == aws_client("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert config["endpoint"] == "127.0.0.1"
    certificate = x509.load_pem_x509_certificate(files["/certs/device.crt"])
    key = serialization.load_pem_private_key((fleet["keys"] / f"{thing(name)}.key").read_bytes(), None)
    assert files["/certs/device.key"] == (fleet["keys"] / f"{thing(name)}.key").read_bytes()
    assert public_key(certificate) == public_key(key)
    assert files["/certs/root-ca.pem"] == (fleet["state_dir"] / "ca" / "ca.pem").read_bytes()
    assert files["/app/mqtt.py"] == (ROOT / "firmware" / "app" / "mqtt.py").read_bytes()
    certificate_id = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    iot = aws_client("iot")
    described = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
    assert described["status"] == "ACTIVE"
    principals = iot.list_thing_principals(thingName=thing(name))["principals"]
    assert principals == [described["certificateArn"]]
    assert f"{PREFIX}_device_policy" in [
        p["policyName"] for p in iot.list_attached_policies(target=described["certificateArn"])["policies"]
    ]
    return certificate_id


def groups_of(aws_client, name):
    groups = aws_client("iot").list_thing_groups_for_thing(thingName=thing(name))["thingGroups"]
    return sorted(group["groupName"] for group in groups)


def devices_table(aws_client):
    items = aws_client("dynamodb").scan(TableName=f"{PREFIX}_devices")["Items"]
    return {item["device_id"]["S"]: {k: next(iter(v.values())) for k, v in item.items()} for item in items}


def test_check_mode_before_the_first_run_plans_and_writes_nothing(stack, run, fleet, aws_client):
    plan = run("playbooks/fleet.yml", "--check", "--diff")
    assert plan.returncode == 0, plan.output
    rows = table(plan.output)
    assert sorted(rows) == sorted(BOARDS)
    assert all(row[2:] == ["new", "to compare", "to build"] for row in rows.values()), plan.output
    assert not fleet["keys"].exists() and not fleet["cache"].exists()
    assert all(not path.exists() or path.stat().st_size == 0 for path in fleet["flash"].values())
    things = [t["thingName"] for t in aws_client("iot").list_things()["things"]]
    assert not set(things) & {thing(name) for name in BOARDS}


def test_first_run_registers_and_flashes_every_board(first, fleet, aws_client):
    assert first.changed > 0
    rows = table(first.output)
    assert sorted(rows) == sorted(BOARDS)
    for name in BOARDS:
        assert rows[name][0] == thing(name)
        assert rows[name][3:] == ["written", "written"], first.output
        certificate_id = check_board_credentials(fleet, name, aws_client)
        assert rows[name][2] == certificate_id[:12]
        assert groups_of(aws_client, name) == [f"{PREFIX}_fleet"]
        # The shared image sits at the chip's offset, the whole of it.
        board_layout = layout(fleet, name)
        base = (fleet["cache"] / f"micropython-standin-{BOARDS[name]['chip']}.bin").read_bytes()
        assert flash_region(fleet, name, board_layout["image_offset"], len(base)) == base
    # Key store: keys 0600, the images too (they hold the key); the station got its copies 0600.
    for name in BOARDS:
        assert (fleet["keys"] / f"{thing(name)}.key").stat().st_mode & 0o777 == 0o600
        assert (fleet["keys"] / f"{thing(name)}.fs.img").stat().st_mode & 0o777 == 0o600
    assert (fleet["station_dir"] / f"{thing('fleetboard3')}.fs.img").stat().st_mode & 0o777 == 0o600
    # The devices table has each device with its owner, location and certificate id.
    devices = devices_table(aws_client)
    for name in BOARDS:
        assert devices[thing(name)]["certificate_id"] == check_board_credentials(fleet, name, aws_client)
    assert devices[thing("fleetboard1")]["owner"] == "alice" and devices[thing("fleetboard1")]["location"] == "lab-1"
    attributes = aws_client("iot").describe_thing(thingName=thing("fleetboard1"))["attributes"]
    assert attributes == {"owner": "alice", "location": "lab-1"}
    # No key material in the output.
    assert "PRIVATE KEY" not in first.output and "sandbox-wifi-not-a-secret" not in first.output


def test_second_run_changes_nothing_and_writes_nothing(first, run):
    again = run("playbooks/fleet.yml")
    assert again.returncode == 0, again.output
    assert again.changed == 0, again.output
    assert all(row[3:] == ["unchanged", "unchanged"] for row in table(again.output).values()), again.output
    assert "0 bytes written" in again.output


def test_check_mode_reports_the_plan_and_writes_nothing(first, run, fleet):
    before = {name: path.read_bytes() for name, path in fleet["flash"].items()}
    check = run("playbooks/fleet.yml", "--check", "--diff")
    assert check.returncode == 0, check.output
    assert check.changed == 0, check.output
    assert {name: path.read_bytes() for name, path in fleet["flash"].items()} == before


def test_a_corrupted_region_alone_is_rewritten(first, run, fleet):
    fs = layout(fleet, "fleetboard2")["filesystem"]
    with open(fleet["flash"]["fleetboard2"], "r+b") as handle:
        handle.seek(fs["offset"] + 3 * 4096)
        handle.write(b"\x00" * 64)
    check = run("playbooks/fleet.yml", "--check")
    assert check.returncode == 0 and check.recap["fleetboard2"]["changed"] == 1, check.output
    assert table(check.output)["fleetboard2"][3:] == ["unchanged", "to write"]

    repair = run("playbooks/fleet.yml")
    assert repair.returncode == 0, repair.output
    assert repair.recap["fleetboard2"]["changed"] == 1, repair.output
    assert repair.changed == 1, repair.output
    rows = table(repair.output)
    assert rows["fleetboard2"][3:] == ["unchanged", "written"]
    assert rows["fleetboard1"][3:] == rows["fleetboard3"][3:] == ["unchanged", "unchanged"]
    assert f"{fs['size']} bytes written" in repair.output
    image = (fleet["keys"] / f"{thing('fleetboard2')}.fs.img").read_bytes()
    assert flash_region(fleet, "fleetboard2", fs["offset"], fs["size"]) == image


def test_a_board_with_another_mac_is_refused(first, run, fleet):
    before = fleet["flash"]["fleetboard2"].read_bytes()
    wrong = run("playbooks/fleet.yml", "--limit", "fleetboard2", "-e", "esp32_expected_mac=02:F1:EE:00:00:99")
    assert wrong.returncode != 0
    assert "expects esp32_expected_mac 02:F1:EE:00:00:99" in wrong.output
    assert fleet["flash"]["fleetboard2"].read_bytes() == before


def test_rotation_without_limit_is_refused(first, run):
    refused = run("playbooks/fleet.yml", "-e", "rotate_certificate=true")
    assert refused.returncode != 0
    assert "Name the boards with --limit" in refused.output


def test_revoked_board_is_left_alone_then_rotated_back(first, run, fleet, aws_client):
    iot = aws_client("iot")
    old_id = check_board_credentials(fleet, "fleetboard1", aws_client)
    old_image = (fleet["keys"] / f"{thing('fleetboard1')}.fs.img").read_bytes()
    revoked = run("playbooks/revoke.yml", "-e", f"devices={thing('fleetboard1')}", "-e", "drop_sessions=false")
    assert revoked.returncode == 0, revoked.output
    assert groups_of(aws_client, "fleetboard1") == [f"{PREFIX}_quarantine"]
    # Through the API's revokeDevice mutation (the backend is deployed), not DynamoDB behind its back.
    assert "devices_api: no AppSync API" not in revoked.output
    row = devices_table(aws_client)[thing("fleetboard1")]
    assert (row["status"], row["revoked_certificate_id"], row["certificate_id"]) == ("revoked", old_id, old_id)
    assert "revoked_at" in row

    # A plain rollout leaves the quarantined board alone: not re-registered, not flashed.
    plain = run("playbooks/fleet.yml")
    assert plain.returncode == 0, plain.output
    assert plain.changed == 0, plain.output
    assert table(plain.output)["fleetboard1"][2:] == ["-", "-", "quarantined"]
    assert groups_of(aws_client, "fleetboard1") == [f"{PREFIX}_quarantine"]

    rotated = run("playbooks/fleet.yml", "--limit", "fleetboard1", "-e", "rotate_certificate=true")
    assert rotated.returncode == 0, rotated.output
    new_id = check_board_credentials(fleet, "fleetboard1", aws_client)
    assert new_id != old_id
    assert table(rotated.output)["fleetboard1"][2:] == [new_id[:12], "unchanged", "written"]
    assert iot.describe_certificate(certificateId=old_id)["certificateDescription"]["status"] == "REVOKED"
    assert groups_of(aws_client, "fleetboard1") == [f"{PREFIX}_fleet"]
    assert (fleet["keys"] / f"{thing('fleetboard1')}.fs.img").read_bytes() != old_image
    assert list(fleet["keys"].glob(f"{thing('fleetboard1')}.key.retired-*"))
    # Re-admitted: the new certificate, no longer revoked (CoreTelemetry takes its readings again).
    row = devices_table(aws_client)[thing("fleetboard1")]
    assert (row["status"], row["certificate_id"]) == ("disconnected", new_id)
    assert "revoked_at" not in row and "revoked_certificate_id" not in row

    after = run("playbooks/fleet.yml")
    assert after.returncode == 0, after.output
    assert after.changed == 0, after.output
