"""The backend of cloud.yml on the sandbox: what it provisions, and a reading's way through it.

A device registered through the GraphQL API (IAM, as the fleet rollout does) gets its telemetry
stored by the deployed CoreTelemetry Lambda and read back through `telemetryByDevice` with the
dashboard's read-only API key; an unknown device's telemetry and a malformed reading are not
stored; a presence event through CoreStatus sets the device's status. The stack has its own
prefix, so it shares the session's sandbox with the other tests' stacks without touching them.
"""

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "backend"
REGION = "eu-north-1"
ACCOUNT = "123456789012"
FUNCTIONS = {"CoreTelemetry": 10, "CoreStatus": 10, "DiscordWebhook": 30}
RETENTION_DAYS = 30
SECRETS = {"CUSTOM_LAMBDA_GRAPHQL_ENDPOINT", "CUSTOM_LAMBDA_GRAPHQL_KEY"}

UPSERT_DEVICE = """mutation UpsertDevice($input: UpsertDeviceInput!) {
  upsertDevice(input: $input) { device_id owner location status registered_at }
}"""
GET_DEVICE = """query GetDevice($device_id: ID!) {
  getDevice(device_id: $device_id) { device_id owner status last_seen session_id }
}"""
TELEMETRY_BY_DEVICE = """query TelemetryByDevice($device_id: ID!) {
  telemetryByDevice(device_id: $device_id) {
    items { device_id timestamp temperature humidity owner expires_at }
    nextToken
  }
}"""


@dataclass
class Backend:
    api_id: str
    url: str
    api_key: str
    app_id: str
    settings: dict


def served(sandbox, api_url):
    """(the API the sandbox offers the simulator with its etag, the one the simulator has loaded)."""
    with urllib.request.urlopen(f"{sandbox['endpoint']}/iotfleet-sandbox/appsync/apis", timeout=10) as answer:
        offered = json.loads(answer.read())["current"] or {}
    health_url = api_url.rsplit("/graphql", 1)[0] + "/iotfleet-sandbox/health"
    with urllib.request.urlopen(health_url, timeout=10) as answer:
        health = json.loads(answer.read())
    return (offered.get("apiId"), offered.get("etag")), (health.get("apiId"), health.get("etag"))


def wait_until_served(sandbox, api_id, api_url, timeout=30):
    """The simulator serves one API, the newest; it reloads within a second or so of a change."""
    deadline = time.monotonic() + timeout
    while True:
        offered, loaded = served(sandbox, api_url)
        assert offered[0] == api_id, (
            f"the sandbox's GraphQL simulator serves only the newest API, and that is {offered[0]}, not {PREFIX}'s"
        )
        if loaded == offered:
            return
        assert time.monotonic() < deadline, f"the simulator did not load {api_id} within {timeout} s: {loaded}"
        time.sleep(0.5)


def graphql(url, query, variables, api_key=None):
    """POST one operation; signed with SigV4 (service appsync) unless an API key is given."""
    body = json.dumps({"query": query, "variables": variables}).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    else:
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(Credentials("testing", "testing"), "appsync", REGION).add_auth(request)
        headers = dict(request.headers.items())
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def data(answer):
    assert not answer.get("errors"), answer
    return answer["data"]


def new_device_id():
    """A thing name as the fleet makes them (12 upper-case hex digits), new for each test."""
    return secrets.token_hex(6).upper()


@pytest.fixture(scope="module")
def backend(playbook, aws_client, sandbox):
    run = playbook("playbooks/cloud.yml", "-e", f"iotfleet_prefix={PREFIX}")
    assert run.returncode == 0, run.output
    (api,) = [a for a in aws_client("appsync").list_graphql_apis()["graphqlApis"] if a["name"] == f"{PREFIX}_api"]
    (app,) = [a for a in aws_client("amplify").list_apps()["apps"] if a["name"] == f"{PREFIX}_dashboard"]
    path = f"/amplify/shared/{app['appId']}/"
    parameters = aws_client("ssm").get_parameters_by_path(Path=path, WithDecryption=True)["Parameters"]
    settings = {p["Name"].removeprefix(path): p for p in parameters}
    wait_until_served(sandbox, api["apiId"], api["uris"]["GRAPHQL"])
    return Backend(
        api_id=api["apiId"],
        url=api["uris"]["GRAPHQL"],
        api_key=settings["CUSTOM_LAMBDA_GRAPHQL_KEY"]["Value"],
        app_id=app["appId"],
        settings=settings,
    )


def register(backend, device_id, owner="alice"):
    """What the fleet rollout does for a board: upsertDevice, signed with IAM."""
    device = data(graphql(backend.url, UPSERT_DEVICE, {"input": {"device_id": device_id, "owner": owner}}))
    assert device["upsertDevice"]["device_id"] == device_id
    return device["upsertDevice"]


def invoke(aws_client, function, event):
    answer = aws_client("lambda").invoke(FunctionName=f"{PREFIX}_{function}", Payload=json.dumps(event))
    result = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, result
    return result


def telemetry_event(device_id, timestamp, **reading):
    """The telemetry rule's output: the device's payload plus device_id and timestamp."""
    return {"temperature": 21.5, "humidity": 40.0, **reading, "device_id": device_id, "timestamp": timestamp}


def readings(backend, device_id):
    """telemetryByDevice with the dashboard's API key (read only)."""
    answer = graphql(backend.url, TELEMETRY_BY_DEVICE, {"device_id": device_id}, api_key=backend.api_key)
    return data(answer)["telemetryByDevice"]["items"]


def stored_rows(aws_client, device_id):
    """The telemetry table itself, not only what the API shows."""
    return aws_client("dynamodb").query(
        TableName=f"{PREFIX}_telemetry",
        KeyConditionExpression="device_id = :d",
        ExpressionAttributeValues={":d": {"S": device_id}},
        ConsistentRead=True,
    )["Items"]


def now_ms():
    return int(time.time() * 1000)


# What cloud.yml provisioned for the backend.


def test_tables_are_on_demand_with_point_in_time_recovery_and_ttl(backend, aws_client):
    dynamodb = aws_client("dynamodb")
    keys = {"devices": ["device_id"], "telemetry": ["device_id", "timestamp"]}
    for logical, key in keys.items():
        table = dynamodb.describe_table(TableName=f"{PREFIX}_{logical}")["Table"]
        assert [k["AttributeName"] for k in table["KeySchema"]] == key
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        backups = dynamodb.describe_continuous_backups(TableName=f"{PREFIX}_{logical}")["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = dynamodb.describe_time_to_live(TableName=f"{PREFIX}_telemetry")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_functions_have_their_settings_role_and_failure_queue(backend, aws_client):
    queue_url = aws_client("sqs").get_queue_url(QueueName=f"{PREFIX}_lambda_failures")["QueueUrl"]
    queue_arn = aws_client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    for name, timeout in FUNCTIONS.items():
        config = aws_client("lambda").get_function_configuration(FunctionName=f"{PREFIX}_{name}")
        assert config["Runtime"] == "python3.12"
        assert config["Handler"] == "handler.handler"
        assert config["Timeout"] == timeout
        assert config["Role"] == f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}_lambda_{name}"
        variables = config["Environment"]["Variables"]
        assert variables["IOTFLEET_SETTINGS_PATH"] == f"/amplify/shared/{backend.app_id}/"
        assert variables["IOTFLEET_RETENTION_DAYS"] == str(RETENTION_DAYS)
        # The settings (endpoint, API key) come from SSM, never from the function's environment.
        assert backend.api_key not in json.dumps(variables)
        assert config["DeadLetterConfig"]["TargetArn"] == queue_arn["Attributes"]["QueueArn"]
        groups = aws_client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{PREFIX}_{name}")["logGroups"]
        assert [(g["logGroupName"], g.get("retentionInDays")) for g in groups] == [(f"/aws/lambda/{PREFIX}_{name}", 30)]


def test_api_has_iam_and_api_key_auth_data_sources_and_resolvers(backend, aws_client):
    appsync = aws_client("appsync")
    api = appsync.get_graphql_api(apiId=backend.api_id)["graphqlApi"]
    assert api["authenticationType"] == "AWS_IAM"
    assert [p["authenticationType"] for p in api["additionalAuthenticationProviders"]] == ["API_KEY"]
    manifest = yaml.safe_load((ROOT / "files" / "graphql" / "resolvers.yml").read_text())
    sources = {s["name"]: s for s in appsync.list_data_sources(apiId=backend.api_id)["dataSources"]}
    assert set(sources) == {s["name"] for s in manifest["data_sources"]}
    for source in manifest["data_sources"]:
        live = sources[source["name"]]
        assert live["type"] == "AMAZON_DYNAMODB"
        assert live["dynamodbConfig"]["tableName"] == f"{PREFIX}_{source['table']}"
        assert live["serviceRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}_appsync_{source['name']}"
    resolvers = {
        (r["typeName"], r["fieldName"], r["dataSourceName"])
        for type_name in ("Query", "Mutation")
        for r in appsync.list_resolvers(apiId=backend.api_id, typeName=type_name)["resolvers"]
    }
    assert resolvers == {(r["type"], r["field"], r["data_source"]) for r in manifest["resolvers"]}


def test_amplify_app_and_its_secrets(backend, aws_client, sandbox):
    app = aws_client("amplify").get_app(appId=backend.app_id)["app"]
    assert app["name"] == f"{PREFIX}_dashboard"
    branches = aws_client("amplify").list_branches(appId=backend.app_id)["branches"]
    assert [b["branchName"] for b in branches] == ["main"]
    # The sandbox inventory points the stack at the sandbox's Discord stand-in.
    assert set(backend.settings) == SECRETS | {"CUSTOM_DISCORD_ENDPOINT"}
    discord_port = sandbox["ports"]["iotfleet_sandbox_discord_port"]
    discord_url = f"http://127.0.0.1:{discord_port}/api/webhooks/sandbox/discord"
    assert backend.settings["CUSTOM_DISCORD_ENDPOINT"]["Value"] == discord_url
    assert {p["Type"] for p in backend.settings.values()} == {"SecureString"}
    api = aws_client("appsync").get_graphql_api(apiId=backend.api_id)["graphqlApi"]
    assert backend.settings["CUSTOM_LAMBDA_GRAPHQL_ENDPOINT"]["Value"] == api["uris"]["GRAPHQL"]
    keys = aws_client("appsync").list_api_keys(apiId=backend.api_id)["apiKeys"]
    assert backend.api_key in {k["id"] for k in keys}


# A reading's way through the backend.


def test_telemetry_of_a_registered_device_is_readable_through_graphql(backend, aws_client):
    device_id = new_device_id()
    register(backend, device_id, owner="alice")
    timestamp = now_ms()

    result = invoke(aws_client, "CoreTelemetry", telemetry_event(device_id, timestamp, temperature=21.5, humidity=40))

    assert result == {"outcome": "stored", "device_id": device_id, "timestamp": timestamp}
    assert readings(backend, device_id) == [
        {
            "device_id": device_id,
            "timestamp": timestamp,
            "temperature": 21.5,
            "humidity": 40,
            "owner": "alice",
            "expires_at": timestamp // 1000 + RETENTION_DAYS * 86400,
        }
    ]


def test_telemetry_of_an_unknown_device_is_dropped(backend, aws_client):
    device_id = new_device_id()

    result = invoke(aws_client, "CoreTelemetry", telemetry_event(device_id, now_ms()))

    assert result == {"outcome": "dropped", "reason": "unknown device"}
    assert readings(backend, device_id) == []
    assert stored_rows(aws_client, device_id) == []


def test_malformed_telemetry_is_rejected_and_not_stored(backend, aws_client):
    device_id = new_device_id()
    register(backend, device_id)

    result = invoke(aws_client, "CoreTelemetry", telemetry_event(device_id, now_ms(), temperature="hot"))

    assert result["outcome"] == "rejected"
    assert "temperature" in result["reason"]
    assert readings(backend, device_id) == []
    assert stored_rows(aws_client, device_id) == []


def test_presence_event_marks_the_device_connected(backend, aws_client):
    device_id = new_device_id()
    register(backend, device_id)
    timestamp = now_ms()
    event = {
        "clientId": device_id,
        "timestamp": timestamp,
        "eventType": "connected",
        "sessionIdentifier": "00000000-0000-0000-0000-000000000001",
        "principalIdentifier": "3f1c0e6e6f4b2a7d9c8e5b1a0d2f4e6c8a9b7d5e3f1a2c4e6b8d0f2a4c6e8b0d",
        "ipAddress": "192.0.2.10",
        "versionNumber": 0,
        "device_id": device_id,
    }

    result = invoke(aws_client, "CoreStatus", event)

    assert result["outcome"] == "applied", result
    answer = graphql(backend.url, GET_DEVICE, {"device_id": device_id}, api_key=backend.api_key)
    device = data(answer)["getDevice"]
    assert device["status"] == "connected"
    assert device["last_seen"] == timestamp
    assert device["session_id"] == event["sessionIdentifier"]


def test_the_api_key_may_read_but_not_write(backend):
    device_id = new_device_id()
    answer = graphql(backend.url, UPSERT_DEVICE, {"input": {"device_id": device_id}}, api_key=backend.api_key)
    assert answer["data"]["upsertDevice"] is None
    assert [e["errorType"] for e in answer["errors"]] == ["Unauthorized"]
    assert data(graphql(backend.url, GET_DEVICE, {"device_id": device_id}, api_key=backend.api_key)) == {
        "getDevice": None
    }


def test_a_key_of_no_api_is_refused(backend):
    with pytest.raises(urllib.error.HTTPError) as refused:
        graphql(backend.url, GET_DEVICE, {"device_id": new_device_id()}, api_key="da2-notakeyofthisapi0000000000")
    assert refused.value.code == 401
