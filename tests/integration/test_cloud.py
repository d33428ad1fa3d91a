"""cloud.yml against the sandbox: converges, re-runs with zero changes, and --check stays quiet."""

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ACCOUNT = "123456789012"
REGION = "eu-north-1"


@pytest.fixture(scope="module")
def converged(playbook):
    first = playbook("playbooks/cloud.yml")
    assert first.returncode == 0, first.output
    return first


def test_first_run_creates_the_stack(converged, aws_client):
    assert converged.changed > 0
    iot = aws_client("iot")
    assert {"iotfleet_fleet", "iotfleet_quarantine"} <= {g["groupName"] for g in iot.list_thing_groups()["thingGroups"]}
    assert {"iotfleet_telemetry", "iotfleet_presence"} <= {r["ruleName"] for r in iot.list_topic_rules()["rules"]}


def test_second_run_changes_nothing(converged, playbook):
    again = playbook("playbooks/cloud.yml")
    assert again.returncode == 0, again.output
    assert again.changed == 0, again.output


def test_check_mode_on_converged_stack_changes_nothing(converged, playbook):
    check = playbook("playbooks/cloud.yml", "--check", "--diff")
    assert check.returncode == 0, check.output
    assert check.changed == 0, check.output


def test_device_policy_is_rendered_for_this_account_and_region(converged, aws_client):
    iot = aws_client("iot")
    policy = iot.get_policy(policyName="iotfleet_device_policy")
    document = json.loads(policy["policyDocument"])
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}"
    connect, subscribe, publish = document["Statement"]
    assert connect["Action"] == "iot:Connect"
    assert connect["Resource"] == f"{arn}:client/${{iot:Connection.Thing.ThingName}}"
    assert set(subscribe["Resource"]) == {
        f"{arn}:topicfilter/${{iot:Connection.Thing.ThingName}}/downlink",
        f"{arn}:topicfilter/$aws/things/${{iot:Connection.Thing.ThingName}}/shadow/*",
    }
    assert set(publish["Action"]) == {"iot:Publish", "iot:Receive"}
    assert f"{arn}:topic/${{iot:Connection.Thing.ThingName}}/telemetry" in publish["Resource"]


def test_rules_have_the_design_sql_and_an_error_action(converged, aws_client):
    iot = aws_client("iot")
    telemetry = iot.get_topic_rule(ruleName="iotfleet_telemetry")["rule"]
    presence = iot.get_topic_rule(ruleName="iotfleet_presence")["rule"]
    assert telemetry["sql"] == "SELECT *, clientId() AS device_id, timestamp() AS timestamp FROM '+/telemetry'"
    assert presence["sql"] == "SELECT *, clientId() AS device_id FROM '$aws/events/presence/+/+'"
    for rule in (telemetry, presence):
        assert rule["awsIotSqlVersion"] == "2016-03-23"
        assert rule["ruleDisabled"] is False
        logs = rule["errorAction"]["cloudwatchLogs"]
        assert logs["logGroupName"] == "/iotfleet/iot/rule-errors"
        assert logs["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/iotfleet_iot_rule_errors"
    groups = aws_client("logs").describe_log_groups(logGroupNamePrefix="/iotfleet/iot/rule-errors")["logGroups"]
    assert groups[0]["retentionInDays"] == 30


def test_rules_invoke_the_backend_functions(converged, aws_client):
    iot = aws_client("iot")
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:iotfleet_"
    telemetry = iot.get_topic_rule(ruleName="iotfleet_telemetry")["rule"]["actions"]
    presence = iot.get_topic_rule(ruleName="iotfleet_presence")["rule"]["actions"]
    assert telemetry == [{"lambda": {"functionArn": function + "CoreTelemetry"}}]
    assert presence == [
        {"lambda": {"functionArn": function + "CoreStatus"}},
        {"lambda": {"functionArn": function + "DiscordWebhook"}},
    ]
    policy = json.loads(aws_client("lambda").get_policy(FunctionName="iotfleet_CoreTelemetry")["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "iot.amazonaws.com"}
    assert (
        statement["Condition"]["ArnLike"]["AWS:SourceArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:rule/iotfleet_telemetry"
    )


def test_bad_prefix_is_refused_before_anything_is_created(playbook, aws_client):
    run = playbook("playbooks/cloud.yml", "-e", "iotfleet_prefix=bad-prefix")
    assert run.returncode != 0
    assert "iotfleet_prefix" in run.output
    assert not [p for p in aws_client("iot").list_policies()["policies"] if p["policyName"].startswith("bad-prefix")]
    assert not [t for t in aws_client("dynamodb").list_tables()["TableNames"] if t.startswith("bad-prefix")]


def test_seven_policy_updates_keep_at_most_five_versions(playbook, aws_client):
    iot = aws_client("iot")
    for revision in range(1, 8):
        run = playbook("tests/integration/playbooks/policy_revision.yml", "-e", f"revision={revision}")
        assert run.returncode == 0, run.output
        assert run.changed == 1, run.output
        versions = iot.list_policy_versions(policyName="revisions_policy")["policyVersions"]
        assert len(versions) <= 5
    default = iot.get_policy(policyName="revisions_policy")
    assert "topic/revision/7" in default["policyDocument"]


def test_certificate_from_csr_carries_the_key_and_verifies_against_the_sandbox_ca(
    converged, playbook, sandbox, aws_client, tmp_path
):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "4827E2E59190")]))
        .sign(key, hashes.SHA256())
    )
    csr_path = tmp_path / "device.csr"
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))

    run = playbook(
        "tests/integration/playbooks/certificate_from_csr.yml", "-e", f"csr_path={csr_path}", "-e", "thing=4827E2E59190"
    )
    assert run.returncode == 0, run.output
    assert "PRIVATE KEY" not in run.output

    cert = x509.load_pem_x509_certificate((tmp_path / "device.csr.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((sandbox["state_dir"] / "ca" / "ca.pem").read_bytes())
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.PEM, public) == key.public_key().public_bytes(
        serialization.Encoding.PEM, public
    )
    cert.verify_directly_issued_by(ca)

    again = playbook(
        "tests/integration/playbooks/certificate_from_csr.yml", "-e", f"csr_path={csr_path}", "-e", "thing=4827E2E59190"
    )
    assert again.returncode == 0, again.output
    assert again.changed == 0, again.output
    certificates = aws_client("iot").list_thing_principals(thingName="4827E2E59190")["principals"]
    assert len(certificates) == 1, "the active certificate must be reused, not issued twice"
