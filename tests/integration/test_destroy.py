"""destroy.yml on the sandbox: a converged stack with boards goes completely, and only it.

The stack has its own prefix (`gone`), so the other tests' stacks in the session's sandbox stay.
Next to it, resources of a stack whose prefix merely starts the same way (`gone_also`) must
survive: destroy.yml deletes by exact name, never by matching a prefix.
"""

import json
import re
from dataclasses import dataclass
from dataclasses import field

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PREFIX = "gone"
LOOKALIKE = "gone_also"
CARRIES_PREFIX = re.compile(rf"(^|/){PREFIX}[_/]")
CARRIES_LOOKALIKE = re.compile(rf"(^|/){LOOKALIKE}[_/]")
LAMBDA_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


@dataclass
class Stack:
    app_id: str
    # thing name -> its certificate ids
    boards: dict = field(default_factory=dict)


def all_pages(client, operation, key, **params):
    return client.get_paginator(operation).paginate(**params).build_full_result().get(key, [])


def names_by_service(aws_client, app_id):
    """Every named resource of the services the stack uses (SSM: the app's settings path)."""
    iot = aws_client("iot")
    return {
        "iot thing groups": [g["groupName"] for g in iot.list_thing_groups()["thingGroups"]],
        "iot policies": [p["policyName"] for p in iot.list_policies()["policies"]],
        "iot topic rules": [r["ruleName"] for r in iot.list_topic_rules()["rules"]],
        "lambda functions": [f["FunctionName"] for f in all_pages(aws_client("lambda"), "list_functions", "Functions")],
        "iam roles": [r["RoleName"] for r in all_pages(aws_client("iam"), "list_roles", "Roles")],
        "log groups": [g["logGroupName"] for g in all_pages(aws_client("logs"), "describe_log_groups", "logGroups")],
        "sqs queues": [url.rsplit("/", 1)[-1] for url in aws_client("sqs").list_queues().get("QueueUrls", [])],
        "appsync apis": [a["name"] for a in aws_client("appsync").list_graphql_apis()["graphqlApis"]],
        "amplify apps": [a["name"] for a in aws_client("amplify").list_apps()["apps"]],
        "dynamodb tables": aws_client("dynamodb").list_tables()["TableNames"],
        "ssm parameters": [
            p["Name"]
            for p in all_pages(
                aws_client("ssm"), "get_parameters_by_path", "Parameters", Path=f"/amplify/shared/{app_id}/"
            )
        ],
    }


def with_prefix(names, pattern=CARRIES_PREFIX):
    """The names that carry the prefix (the app's settings path carries its id instead: all of them count)."""
    return {
        service: sorted(n for n in found if service == "ssm parameters" or pattern.search(n))
        for service, found in names.items()
    }


def stack_resources(aws_client, stack):
    """What of the stack exists: names per service, and the boards' things and certificates."""
    names = names_by_service(aws_client, stack.app_id)
    found = {
        service: [n for n in found if not CARRIES_LOOKALIKE.search(n)] for service, found in with_prefix(names).items()
    }
    iot = aws_client("iot")
    found["iot things"] = sorted(name for name in stack.boards if exists(iot.describe_thing, thingName=name))
    certificates = [cert for certs in stack.boards.values() for cert in certs]
    found["iot certificates"] = sorted(c for c in certificates if exists(iot.describe_certificate, certificateId=c))
    return found


def exists(describe, **params):
    try:
        describe(**params)
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            return False
        raise
    return True


def issue_certificate(iot):
    """A certificate from a CSR, as the fleet rollout gets one (signed by the sandbox's CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    return iot.create_certificate_from_csr(certificateSigningRequest=pem, setAsActive=True)


def add_board(iot, name, group, certificates=()):
    """A registered board: thing in `group`, each certificate with the device policy and attached to the thing."""
    iot.create_thing(thingName=name)
    iot.add_thing_to_thing_group(thingGroupName=f"{PREFIX}_{group}", thingName=name)
    ids = []
    for status in certificates:
        cert = issue_certificate(iot)
        iot.attach_policy(policyName=f"{PREFIX}_device_policy", target=cert["certificateArn"])
        iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
        if status != "ACTIVE":
            iot.update_certificate(certificateId=cert["certificateId"], newStatus=status)
        ids.append(cert["certificateId"])
    return ids


def make_lookalikes(aws_client):
    """Resources of a stack whose prefix starts like ours; destroy.yml must leave them alone."""
    aws_client("iot").create_thing_group(thingGroupName=f"{LOOKALIKE}_fleet")
    aws_client("iot").create_topic_rule(
        ruleName=f"{LOOKALIKE}_telemetry",
        topicRulePayload={"sql": "SELECT * FROM 'x/telemetry'", "actions": [], "awsIotSqlVersion": "2016-03-23"},
    )
    aws_client("iam").create_role(RoleName=f"{LOOKALIKE}_lambda_CoreTelemetry", AssumeRolePolicyDocument=LAMBDA_TRUST)
    aws_client("logs").create_log_group(logGroupName=f"/aws/lambda/{LOOKALIKE}_CoreTelemetry")
    aws_client("sqs").create_queue(QueueName=f"{LOOKALIKE}_lambda_failures")
    aws_client("dynamodb").create_table(
        TableName=f"{LOOKALIKE}_devices",
        KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def remove_lookalikes(aws_client):
    aws_client("iot").delete_thing_group(thingGroupName=f"{LOOKALIKE}_fleet")
    aws_client("iot").delete_topic_rule(ruleName=f"{LOOKALIKE}_telemetry")
    aws_client("iam").delete_role(RoleName=f"{LOOKALIKE}_lambda_CoreTelemetry")
    aws_client("logs").delete_log_group(logGroupName=f"/aws/lambda/{LOOKALIKE}_CoreTelemetry")
    sqs = aws_client("sqs")
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=f"{LOOKALIKE}_lambda_failures")["QueueUrl"])
    aws_client("dynamodb").delete_table(TableName=f"{LOOKALIKE}_devices")


def lookalikes(aws_client):
    return {
        service: sorted(n for n in found if CARRIES_LOOKALIKE.search(n))
        for service, found in names_by_service(aws_client, "none").items()
        if service != "ssm parameters"
    }


@pytest.fixture(scope="module")
def stack(playbook, aws_client):
    run = playbook("playbooks/cloud.yml", "-e", f"iotfleet_prefix={PREFIX}")
    assert run.returncode == 0, run.output
    (app,) = [a for a in aws_client("amplify").list_apps()["apps"] if a["name"] == f"{PREFIX}_dashboard"]
    iot = aws_client("iot")
    stack = Stack(app_id=app["appId"])
    stack.boards["D0DE57000001"] = add_board(iot, "D0DE57000001", "fleet", ["ACTIVE"])
    stack.boards["D0DE57000002"] = add_board(iot, "D0DE57000002", "fleet", ["ACTIVE", "INACTIVE"])
    stack.boards["D0DE57000003"] = add_board(iot, "D0DE57000003", "quarantine", ["REVOKED"])
    stack.boards["D0DE57000004"] = add_board(iot, "D0DE57000004", "fleet")
    make_lookalikes(aws_client)
    yield stack
    remove_lookalikes(aws_client)


@pytest.fixture(scope="module")
def check_run(stack, playbook, aws_client):
    before = stack_resources(aws_client, stack)
    run = playbook("playbooks/destroy.yml", "-e", f"iotfleet_prefix={PREFIX}", "--check", "--diff")
    return run, before, stack_resources(aws_client, stack)


@pytest.fixture(scope="module")
def destroyed(check_run, stack, playbook, aws_client):
    """The first real destroy.yml, after the dry run (which needs the stack still there)."""
    before = lookalikes(aws_client)
    run = playbook("playbooks/destroy.yml", "-e", f"iotfleet_prefix={PREFIX}")
    return run, before


@pytest.fixture(scope="module")
def destroyed_again(destroyed, playbook):
    return playbook("playbooks/destroy.yml", "-e", f"iotfleet_prefix={PREFIX}")


def test_check_mode_reports_changes_and_deletes_nothing(check_run):
    run, before, after = check_run
    assert run.returncode == 0, run.output
    assert run.changed > 0, run.output
    assert all(before.values()), f"the converged stack lacks some resources: {before}"
    assert after == before


def test_destroy_leaves_nothing_with_the_prefix(destroyed, stack, aws_client):
    run, _before = destroyed
    assert run.returncode == 0, run.output
    assert run.changed > 0, run.output
    left = stack_resources(aws_client, stack)
    assert left == {service: [] for service in left}


def test_destroy_leaves_other_stacks_alone(destroyed, aws_client):
    run, before = destroyed
    assert run.returncode == 0, run.output
    made = ("iot thing groups", "iot topic rules", "iam roles", "log groups", "sqs queues", "dynamodb tables")
    assert all(before[service] for service in made), before
    assert lookalikes(aws_client) == before


def test_second_destroy_changes_nothing(destroyed_again):
    assert destroyed_again.returncode == 0, destroyed_again.output
    assert destroyed_again.changed == 0, destroyed_again.output


def test_bad_prefix_is_refused_before_anything_is_deleted(playbook):
    run = playbook("playbooks/destroy.yml", "-e", "iotfleet_prefix=gone-wrong")
    assert run.returncode != 0
    assert "iotfleet_prefix" in run.output
    assert run.changed == 0
