"""The extension through a private sandbox server: GraphQL via the AppSync simulator, Lambda, Amplify.

One server (and its simulator) for the module, on free ports with its own state dir; the fixture
stops both, and kills them if `down` does not.
"""

import io
import json
import shutil
import time
import urllib.error
import urllib.request
import zipfile

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sandbox import simulator
from tests.unit.sandbox.conftest import Instance

pytestmark = pytest.mark.skipif(
    not simulator.INSTALLED_MARKER.is_file() and not (shutil.which("node") and shutil.which("npm")),
    reason="the AppSync simulator needs node and npm (or sandbox/appsync/node_modules)",
)

SCHEMA = """
type Device @aws_iam @aws_api_key {
  device_id: ID!
  status: String
}

type Reading @aws_iam @aws_api_key {
  device_id: ID!
  temperature: Float
}

type Query {
  getDevice(device_id: ID!): Device @aws_iam @aws_api_key
  latestReading(device_id: ID!): Reading @aws_iam @aws_api_key
}

type Mutation {
  upsertDevice(device_id: ID!, status: String): Device @aws_iam
  recordReading(device_id: ID!, temperature: Float!): Reading @aws_iam
}
"""
GET_DEVICE = """{
  "version": "2018-05-29",
  "operation": "GetItem",
  "key": {"device_id": $util.dynamodb.toDynamoDBJson($ctx.args.device_id)}
}"""
PUT_DEVICE = """{
  "version": "2018-05-29",
  "operation": "PutItem",
  "key": {"device_id": $util.dynamodb.toDynamoDBJson($ctx.args.device_id)},
  "attributeValues": {"status": $util.dynamodb.toDynamoDBJson($ctx.args.status)}
}"""
GET_READING = GET_DEVICE
INVOKE = '{"version": "2018-05-29", "operation": "Invoke", "payload": $util.toJson($ctx.args)}'
RESULT = "$util.toJson($ctx.result)"
# A Lambda behind a data source: it writes the reading into moto's DynamoDB with the boto3 of the
# sandbox's interpreter, reaching the sandbox through AWS_ENDPOINT_URL.
RECORDER = """
import boto3


def handler(event, context):
    item = {"device_id": {"S": event["device_id"]}, "temperature": {"N": str(event["temperature"])}}
    boto3.client("dynamodb").put_item(TableName="telemetry", Item=item)
    return {"device_id": event["device_id"], "temperature": event["temperature"]}
"""
QUERY = "query($id: ID!) { getDevice(device_id: $id) { device_id status } }"
MUTATION = "mutation($id: ID!, $s: String) { upsertDevice(device_id: $id, status: $s) { device_id status } }"
RECORD = "mutation($id: ID!, $t: Float!) { recordReading(device_id: $id, temperature: $t) { device_id temperature } }"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    instance = Instance(tmp_path_factory.mktemp("ext-server") / "state")
    try:
        result = instance.run("up")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "appsync simulator started" in result.stdout, result.stdout
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture(scope="module")
def remote(sandbox):
    def make(service: str):
        return boto3.client(
            service,
            endpoint_url=sandbox.settings.endpoint,
            region_name=sandbox.settings.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_until_served(sandbox, api_id: str) -> dict:
    """The simulator's health once it has loaded the API as it is now."""
    etag = get_json(f"{sandbox.settings.endpoint}/iotfleet-sandbox/appsync/{api_id}/config")["etag"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        health = simulator.health(sandbox.settings)
        if health and health["apiId"] == api_id and health["etag"] == etag:
            return health
        time.sleep(0.2)
    pytest.fail(f"the simulator did not load API {api_id}: {simulator.health(sandbox.settings)}")


def graphql(url: str, query: str, variables: dict, headers: dict) -> tuple[int, dict]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def iam(url: str, query: str, variables: dict, region: str) -> tuple[int, dict]:
    """A SigV4-signed (AWS_IAM) request, as the Lambdas send it."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=json.dumps({"query": query, "variables": variables}),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials("testing", "testing"), "appsync", region).add_auth(request)
    return graphql(url, query, variables, dict(request.headers.items()))


def make_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def create_tables(dynamodb) -> None:
    for table in ("devices", "telemetry"):
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def create_recorder(remote) -> str:
    role = remote("iam").create_role(RoleName="recorder", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    return remote("lambda").create_function(
        FunctionName="recorder",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": RECORDER})},
        Timeout=10,
    )["FunctionArn"]


def test_graphql_through_the_simulator(sandbox, remote):
    dynamodb, appsync = remote("dynamodb"), remote("appsync")
    create_tables(dynamodb)
    dynamodb.put_item(TableName="devices", Item={"device_id": {"S": "4827E2E59190"}, "status": {"S": "online"}})
    recorder_arn = create_recorder(remote)

    api = appsync.create_graphql_api(
        name="iotfleet",
        authenticationType="AWS_IAM",
        additionalAuthenticationProviders=[{"authenticationType": "API_KEY"}],
    )["graphqlApi"]
    api_id, url = api["apiId"], api["uris"]["GRAPHQL"]
    assert url == simulator.graphql_url(sandbox.settings)
    appsync.start_schema_creation(apiId=api_id, definition=SCHEMA.encode())
    key = appsync.create_api_key(apiId=api_id)["apiKey"]["id"]
    role = "arn:aws:iam::123456789012:role/appsync"
    for name, table in (("Devices", "devices"), ("Telemetry", "telemetry")):
        appsync.create_data_source(
            apiId=api_id,
            name=name,
            type="AMAZON_DYNAMODB",
            serviceRoleArn=role,
            dynamodbConfig={"tableName": table, "awsRegion": sandbox.settings.region},
        )
    appsync.create_data_source(
        apiId=api_id,
        name="Recorder",
        type="AWS_LAMBDA",
        serviceRoleArn=role,
        lambdaConfig={"lambdaFunctionArn": recorder_arn},
    )
    resolvers = (
        ("Query", "getDevice", "Devices", GET_DEVICE),
        ("Query", "latestReading", "Telemetry", GET_READING),
        ("Mutation", "upsertDevice", "Devices", PUT_DEVICE),
        ("Mutation", "recordReading", "Recorder", INVOKE),
    )
    for type_name, field, source, request in resolvers:
        appsync.create_resolver(
            apiId=api_id,
            typeName=type_name,
            fieldName=field,
            dataSourceName=source,
            requestMappingTemplate=request,
            responseMappingTemplate=RESULT,
        )
    health = wait_until_served(sandbox, api_id)
    assert health["error"] is None

    # The API key reads ...
    status, answer = graphql(url, QUERY, {"id": "4827E2E59190"}, {"x-api-key": key})
    assert (status, answer) == (200, {"data": {"getDevice": {"device_id": "4827E2E59190", "status": "online"}}})
    # ... and may not write.
    status, answer = graphql(url, MUTATION, {"id": "AAAAAAAAAAAA", "s": "x"}, {"x-api-key": key})
    assert answer["data"] == {"upsertDevice": None}
    assert answer["errors"][0]["errorType"] == "Unauthorized"
    assert "Item" not in dynamodb.get_item(TableName="devices", Key={"device_id": {"S": "AAAAAAAAAAAA"}})
    # An unknown key is refused outright.
    status, answer = graphql(url, QUERY, {"id": "4827E2E59190"}, {"x-api-key": "da2-unknown"})
    assert status == 401 and answer["errors"][0]["errorType"] == "UnauthorizedException"

    # IAM (SigV4) writes, into moto's DynamoDB.
    region = sandbox.settings.region
    status, answer = iam(url, MUTATION, {"id": "AAAAAAAAAAAA", "s": "provisioned"}, region)
    assert answer == {"data": {"upsertDevice": {"device_id": "AAAAAAAAAAAA", "status": "provisioned"}}}
    item = dynamodb.get_item(TableName="devices", Key={"device_id": {"S": "AAAAAAAAAAAA"}})["Item"]
    assert item == {"device_id": {"S": "AAAAAAAAAAAA"}, "status": {"S": "provisioned"}}

    # A Lambda data source: the simulator invokes the function in the sandbox, which writes with boto3.
    status, answer = iam(url, RECORD, {"id": "4827E2E59190", "t": 21.5}, region)
    assert answer == {"data": {"recordReading": {"device_id": "4827E2E59190", "temperature": 21.5}}}
    status, answer = graphql(
        url, 'query { latestReading(device_id: "4827E2E59190") { temperature } }', {}, {"x-api-key": key}
    )
    assert answer == {"data": {"latestReading": {"temperature": 21.5}}}


def test_api_keys_follow_the_api(sandbox, remote):
    appsync = remote("appsync")
    api_id = get_json(f"{sandbox.settings.endpoint}/iotfleet-sandbox/appsync/apis")["current"]["apiId"]
    url = simulator.graphql_url(sandbox.settings)
    old = appsync.list_api_keys(apiId=api_id)["apiKeys"][0]["id"]
    new = appsync.create_api_key(apiId=api_id)["apiKey"]["id"]
    wait_until_served(sandbox, api_id)
    for key in (old, new):  # both work while a key is being renewed
        assert graphql(url, QUERY, {"id": "4827E2E59190"}, {"x-api-key": key})[0] == 200
    appsync.delete_api_key(apiId=api_id, id=old)
    wait_until_served(sandbox, api_id)
    assert graphql(url, QUERY, {"id": "4827E2E59190"}, {"x-api-key": old})[0] == 401
    assert graphql(url, QUERY, {"id": "4827E2E59190"}, {"x-api-key": new})[0] == 200


def test_lambda_handler_reaches_the_sandbox_with_boto3(remote):
    response = remote("lambda").invoke(
        FunctionName="recorder", Payload=json.dumps({"device_id": "BBBBBBBBBBBB", "temperature": 4}).encode()
    )
    assert "FunctionError" not in response, response["Payload"].read()
    item = remote("dynamodb").get_item(TableName="telemetry", Key={"device_id": {"S": "BBBBBBBBBBBB"}})["Item"]
    assert item["temperature"] == {"N": "4"}


def test_amplify_deployment_over_http(sandbox, remote):
    amplify = remote("amplify")  # routed by the SigV4 credential scope's service name
    app = amplify.create_app(name="dashboard")["app"]
    amplify.create_branch(appId=app["appId"], branchName="main")
    created = amplify.create_deployment(appId=app["appId"], branchName="main")
    assert created["zipUploadUrl"].startswith(f"{sandbox.settings.endpoint}/iotfleet-sandbox/amplify-upload/")
    upload = urllib.request.Request(
        created["zipUploadUrl"], data=make_zip({"index.html": "<h1>fleet</h1>"}), method="PUT"
    )
    with urllib.request.urlopen(upload, timeout=10) as response:
        assert response.status == 200
    amplify.start_deployment(appId=app["appId"], branchName="main", jobId=created["jobId"])
    job = amplify.get_job(appId=app["appId"], branchName="main", jobId=created["jobId"])["job"]
    assert job["summary"]["status"] == "SUCCEED"
    site = sandbox.settings.state_dir / "amplify" / app["appId"] / "main"
    assert (site / "index.html").read_text() == "<h1>fleet</h1>"


def test_status_then_down_stops_the_simulator(sandbox):
    result = sandbox.run("status")
    line = next(line for line in result.stdout.splitlines() if line.startswith("appsync simulator"))
    assert line.startswith("appsync simulator running") and "serving API" in line
    assert simulator.graphql_url(sandbox.settings) in line
    pid = simulator.running_pid(sandbox.settings)
    assert pid is not None

    result = sandbox.run("down")
    assert result.returncode == 0 and f"appsync simulator stopped (pid {pid})" in result.stdout
    assert not simulator.pid_file(sandbox.settings).exists()
    assert simulator.health(sandbox.settings) is None
    assert "appsync simulator not running" in sandbox.run("status").stdout
