"""AppSync gaps of moto 5.2.5 closed by sandbox/ext_appsync.py, in process."""

import json
import re
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from werkzeug.test import Client
from werkzeug.wrappers import Response

from sandbox import ext_appsync
from sandbox import moto_ext

GRAPHQL_URL = "http://127.0.0.1:45600/graphql"
ROLE = "arn:aws:iam::123456789012:role/appsync-devices"
SCHEMA = """
type Device @aws_iam @aws_api_key {
  device_id: ID!
  status: String
}

type Query {
  getDevice(device_id: ID!): Device @aws_iam @aws_api_key
}

type Mutation {
  upsertDevice(device_id: ID!, status: String): Device @aws_iam
}

type Subscription {
  onUpsertDevice: Device @aws_subscribe(mutations: ["upsertDevice"]) @aws_iam @aws_api_key
}
"""
GET_ITEM = (
    '{"version": "2018-05-29", "operation": "GetItem", '
    '"key": {"device_id": $util.dynamodb.toDynamoDBJson($ctx.args.device_id)}}'
)
RESULT = "$util.toJson($ctx.result)"


@pytest.fixture
def appsync(ext, tmp_path):
    moto_ext.apply(tmp_path / "ca", state_dir=tmp_path, endpoint="http://127.0.0.1:45599", appsync_url=GRAPHQL_URL)
    return boto3.client("appsync")


@pytest.fixture
def api_id(appsync):
    api = appsync.create_graphql_api(
        name="iotfleet",
        authenticationType="AWS_IAM",
        additionalAuthenticationProviders=[{"authenticationType": "API_KEY"}],
    )["graphqlApi"]
    appsync.start_schema_creation(apiId=api["apiId"], definition=SCHEMA.encode())
    return api["apiId"]


def error_of(excinfo) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def devices_source(appsync, api_id, name="Devices", table="devices"):
    return appsync.create_data_source(
        apiId=api_id,
        name=name,
        type="AMAZON_DYNAMODB",
        serviceRoleArn=ROLE,
        dynamodbConfig={"tableName": table, "awsRegion": "eu-north-1"},
    )["dataSource"]


# --- data sources ------------------------------------------------------------------------------------


def test_data_source_crud(appsync, api_id):
    created = devices_source(appsync, api_id)
    assert created == {
        "dataSourceArn": f"arn:aws:appsync:eu-north-1:123456789012:apis/{api_id}/datasources/Devices",
        "name": "Devices",
        "type": "AMAZON_DYNAMODB",
        "serviceRoleArn": ROLE,
        "dynamodbConfig": {"tableName": "devices", "awsRegion": "eu-north-1"},
    }
    assert appsync.get_data_source(apiId=api_id, name="Devices")["dataSource"] == created
    lambda_arn = "arn:aws:lambda:eu-north-1:123456789012:function:CoreTelemetry"
    appsync.create_data_source(
        apiId=api_id, name="Telemetry", type="AWS_LAMBDA", lambdaConfig={"lambdaFunctionArn": lambda_arn}
    )
    appsync.create_data_source(apiId=api_id, name="Local", type="NONE", description="no backing store")
    listed = appsync.get_paginator("list_data_sources").paginate(apiId=api_id).build_full_result()["dataSources"]
    assert [source["name"] for source in listed] == ["Devices", "Telemetry", "Local"]

    updated = appsync.update_data_source(apiId=api_id, name="Devices", type="NONE", description="now local")[
        "dataSource"
    ]
    assert updated["type"] == "NONE" and updated["description"] == "now local"
    assert "dynamodbConfig" not in updated and "serviceRoleArn" not in updated  # an update replaces the definition
    assert updated["dataSourceArn"] == created["dataSourceArn"]

    appsync.delete_data_source(apiId=api_id, name="Devices")
    with pytest.raises(ClientError) as excinfo:
        appsync.get_data_source(apiId=api_id, name="Devices")
    assert error_of(excinfo) == ("NotFoundException", 404)
    for call in (appsync.delete_data_source, appsync.get_data_source):
        with pytest.raises(ClientError) as excinfo:
            call(apiId=api_id, name="Devices")
        assert error_of(excinfo) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        appsync.update_data_source(apiId=api_id, name="Devices", type="NONE")
    assert error_of(excinfo) == ("NotFoundException", 404)


def test_data_source_refusals(appsync, api_id):
    devices_source(appsync, api_id)
    with pytest.raises(ClientError) as excinfo:
        devices_source(appsync, api_id)
    assert error_of(excinfo) == ("BadRequestException", 400)
    with pytest.raises(ClientError) as excinfo:
        appsync.create_data_source(apiId=api_id, name="NoTable", type="AMAZON_DYNAMODB", serviceRoleArn=ROLE)
    assert error_of(excinfo) == ("BadRequestException", 400)
    with pytest.raises(ClientError) as excinfo:
        appsync.create_data_source(apiId=api_id, name="NoFunction", type="AWS_LAMBDA", serviceRoleArn=ROLE)
    assert error_of(excinfo) == ("BadRequestException", 400)
    with pytest.raises(ClientError) as excinfo:
        appsync.create_data_source(apiId=api_id, name="bad-name", type="NONE")
    assert error_of(excinfo) == ("BadRequestException", 400)
    with pytest.raises(ClientError) as excinfo:
        appsync.create_data_source(apiId="missing", name="Local", type="NONE")
    assert error_of(excinfo) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        appsync.list_data_sources(apiId="missing")
    assert error_of(excinfo) == ("NotFoundException", 404)


# --- resolvers and functions ---------------------------------------------------------------------------


def test_resolver_crud(appsync, api_id):
    devices_source(appsync, api_id)
    created = appsync.create_resolver(
        apiId=api_id,
        typeName="Query",
        fieldName="getDevice",
        dataSourceName="Devices",
        requestMappingTemplate=GET_ITEM,
        responseMappingTemplate=RESULT,
    )["resolver"]
    assert created == {
        "typeName": "Query",
        "fieldName": "getDevice",
        "dataSourceName": "Devices",
        "resolverArn": f"arn:aws:appsync:eu-north-1:123456789012:apis/{api_id}/types/Query/resolvers/getDevice",
        "requestMappingTemplate": GET_ITEM,
        "responseMappingTemplate": RESULT,
        "kind": "UNIT",
        "maxBatchSize": 0,
    }
    assert appsync.get_resolver(apiId=api_id, typeName="Query", fieldName="getDevice")["resolver"] == created
    appsync.create_resolver(
        apiId=api_id,
        typeName="Mutation",
        fieldName="upsertDevice",
        dataSourceName="Devices",
        requestMappingTemplate="{}",
    )
    paginator = appsync.get_paginator("list_resolvers")
    listed = paginator.paginate(apiId=api_id, typeName="Query").build_full_result()["resolvers"]
    assert [r["fieldName"] for r in listed] == ["getDevice"]

    updated = appsync.update_resolver(
        apiId=api_id, typeName="Query", fieldName="getDevice", dataSourceName="Devices", requestMappingTemplate="{}"
    )["resolver"]
    assert updated["requestMappingTemplate"] == "{}" and "responseMappingTemplate" not in updated

    appsync.delete_resolver(apiId=api_id, typeName="Query", fieldName="getDevice")
    assert appsync.list_resolvers(apiId=api_id, typeName="Query")["resolvers"] == []
    with pytest.raises(ClientError) as excinfo:
        appsync.get_resolver(apiId=api_id, typeName="Query", fieldName="getDevice")
    assert error_of(excinfo) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        appsync.delete_resolver(apiId=api_id, typeName="Query", fieldName="getDevice")
    assert error_of(excinfo) == ("NotFoundException", 404)


def test_resolver_refusals(appsync, api_id):
    devices_source(appsync, api_id)
    resolver = {"apiId": api_id, "typeName": "Query", "fieldName": "getDevice", "dataSourceName": "Devices"}
    appsync.create_resolver(**resolver, requestMappingTemplate=GET_ITEM)
    with pytest.raises(ClientError) as excinfo:
        appsync.create_resolver(**resolver, requestMappingTemplate=GET_ITEM)
    assert error_of(excinfo) == ("BadRequestException", 400)
    assert excinfo.value.response["Error"]["Message"] == "Only one resolver is allowed per field."
    with pytest.raises(ClientError) as excinfo:
        appsync.create_resolver(apiId=api_id, typeName="Query", fieldName="listDevices", dataSourceName="Devices")
    assert error_of(excinfo) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        appsync.create_resolver(apiId=api_id, typeName="Nope", fieldName="x", dataSourceName="Devices")
    assert error_of(excinfo) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        appsync.create_resolver(apiId=api_id, typeName="Mutation", fieldName="upsertDevice", dataSourceName="Missing")
    assert error_of(excinfo) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        appsync.update_resolver(apiId=api_id, typeName="Mutation", fieldName="upsertDevice", dataSourceName="Devices")
    assert error_of(excinfo) == ("NotFoundException", 404)


def test_functions_and_pipeline_resolvers(appsync, api_id):
    devices_source(appsync, api_id)
    function = appsync.create_function(
        apiId=api_id, name="readDevice", dataSourceName="Devices", requestMappingTemplate=GET_ITEM
    )["functionConfiguration"]
    function_id = function["functionId"]
    assert re.fullmatch(r"[a-z0-9]{26}", function_id)
    assert function["functionArn"].endswith(f"apis/{api_id}/functions/{function_id}")
    assert function["functionVersion"] == "2018-05-29"
    assert appsync.get_function(apiId=api_id, functionId=function_id)["functionConfiguration"] == function
    assert appsync.list_functions(apiId=api_id)["functions"] == [function]
    updated = appsync.update_function(
        apiId=api_id, functionId=function_id, name="readDevice", dataSourceName="Devices", description="v2"
    )["functionConfiguration"]
    assert updated["description"] == "v2" and updated["functionId"] == function_id

    appsync.create_resolver(
        apiId=api_id,
        typeName="Query",
        fieldName="getDevice",
        kind="PIPELINE",
        pipelineConfig={"functions": [function_id]},
        requestMappingTemplate="{}",
        responseMappingTemplate="$util.toJson($ctx.prev.result)",
    )
    by_function = appsync.list_resolvers_by_function(apiId=api_id, functionId=function_id)["resolvers"]
    assert [r["fieldName"] for r in by_function] == ["getDevice"]
    with pytest.raises(ClientError) as excinfo:
        appsync.create_resolver(
            apiId=api_id,
            typeName="Mutation",
            fieldName="upsertDevice",
            kind="PIPELINE",
            pipelineConfig={"functions": ["x"]},
        )
    assert error_of(excinfo) == ("NotFoundException", 404)

    appsync.delete_function(apiId=api_id, functionId=function_id)
    with pytest.raises(ClientError) as excinfo:
        appsync.get_function(apiId=api_id, functionId=function_id)
    assert error_of(excinfo) == ("NotFoundException", 404)


# --- schema ------------------------------------------------------------------------------------------


def test_schema_status_and_introspection(appsync):
    api_id = appsync.create_graphql_api(name="fresh", authenticationType="AWS_IAM")["graphqlApi"]["apiId"]
    with pytest.raises(ClientError) as excinfo:
        appsync.get_schema_creation_status(apiId=api_id)  # moto: HTTP 500
    assert error_of(excinfo) == ("NotFoundException", 404)

    assert appsync.start_schema_creation(apiId=api_id, definition=SCHEMA.encode())["status"] == "PROCESSING"
    assert appsync.get_schema_creation_status(apiId=api_id)["status"] == "SUCCESS"
    sdl = appsync.get_introspection_schema(apiId=api_id, format="SDL")["schema"].read().decode()
    assert sdl == SCHEMA  # with its @aws_iam / @aws_api_key / @aws_subscribe, which moto's re-print dropped
    bare = appsync.get_introspection_schema(apiId=api_id, format="SDL", includeDirectives=False)["schema"].read()
    assert b"@aws_iam" not in bare and b"type Device" in bare
    introspection = json.loads(appsync.get_introspection_schema(apiId=api_id, format="JSON")["schema"].read())
    assert "__schema" in introspection

    # Parses, but does not build (unknown type): AWS fails the creation, moto said SUCCESS.
    appsync.start_schema_creation(apiId=api_id, definition=b"type Query { device: Unknown }")
    status = appsync.get_schema_creation_status(apiId=api_id)
    assert status["status"] == "FAILED" and "Unknown" in status["details"]

    with pytest.raises(ClientError) as excinfo:
        appsync.start_schema_creation(apiId="missing", definition=SCHEMA.encode())
    assert error_of(excinfo) == ("NotFoundException", 404)


# --- GraphQL API and API keys --------------------------------------------------------------------------


def test_uris_lead_to_the_simulator(appsync, api_id):
    uris = {"GRAPHQL": GRAPHQL_URL, "REALTIME": "ws://127.0.0.1:45600/graphql/realtime"}
    assert appsync.get_graphql_api(apiId=api_id)["graphqlApi"]["uris"] == uris
    assert (
        appsync.update_graphql_api(apiId=api_id, name="iotfleet", authenticationType="AWS_IAM")["graphqlApi"]["uris"]
        == uris
    )
    assert [api["uris"] for api in appsync.list_graphql_apis()["graphqlApis"]] == [uris]
    created = appsync.create_graphql_api(name="other", authenticationType="API_KEY")["graphqlApi"]
    assert created["uris"] == uris


def test_additional_providers_can_be_removed(appsync, api_id):
    api = appsync.update_graphql_api(apiId=api_id, name="iotfleet", authenticationType="AWS_IAM")["graphqlApi"]
    assert api["additionalAuthenticationProviders"] == [{"authenticationType": "API_KEY"}]  # absent: kept
    api = appsync.update_graphql_api(
        apiId=api_id, name="iotfleet", authenticationType="AWS_IAM", additionalAuthenticationProviders=[]
    )["graphqlApi"]
    assert not api.get("additionalAuthenticationProviders")


def test_missing_api_is_not_found(appsync):
    calls = [
        lambda: appsync.update_graphql_api(apiId="missing", name="x", authenticationType="AWS_IAM"),
        lambda: appsync.delete_graphql_api(apiId="missing"),
        lambda: appsync.create_api_key(apiId="missing"),
        lambda: appsync.list_api_keys(apiId="missing"),
        lambda: appsync.update_api_key(apiId="missing", id="da2-x", description="x"),
        lambda: appsync.delete_api_key(apiId="missing", id="da2-x"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_of(excinfo) == ("NotFoundException", 404)


def test_api_keys(appsync, api_id):
    key = appsync.create_api_key(apiId=api_id, description="dashboard")["apiKey"]
    assert re.fullmatch(r"da2-[a-z0-9]{26}", key["id"])
    expires = int(time.time()) + 30 * 86400
    updated = appsync.update_api_key(apiId=api_id, id=key["id"], expires=expires)["apiKey"]
    assert updated["expires"] == expires and updated["description"] == "dashboard"
    listed = appsync.get_paginator("list_api_keys").paginate(apiId=api_id).build_full_result()["apiKeys"]
    assert [k["id"] for k in listed] == [key["id"]]
    for call in (appsync.update_api_key, appsync.delete_api_key):
        with pytest.raises(ClientError) as excinfo:
            call(apiId=api_id, id="da2-unknown")
        assert error_of(excinfo) == ("NotFoundException", 404)
    appsync.delete_api_key(apiId=api_id, id=key["id"])
    assert appsync.list_api_keys(apiId=api_id)["apiKeys"] == []


# --- what the simulator loads (GET /iotfleet-sandbox/appsync/...) ----------------------------------------


@pytest.fixture
def http():
    """The sandbox's own routes in front of a stand-in for moto."""
    return Client(moto_ext.routes(Response("moto", status=599)))


def test_simulator_config(appsync, api_id, http):
    devices_source(appsync, api_id)
    appsync.create_resolver(
        apiId=api_id, typeName="Query", fieldName="getDevice", dataSourceName="Devices", requestMappingTemplate=GET_ITEM
    )
    key = appsync.create_api_key(apiId=api_id)["apiKey"]["id"]

    response = http.get(f"/iotfleet-sandbox/appsync/{api_id}/config")
    assert response.status_code == 200
    config = response.json
    assert response.headers["ETag"] == f'"{config["etag"]}"'
    assert config["apiId"] == api_id and config["schema"] == SCHEMA
    assert (config["accountId"], config["region"]) == ("123456789012", "eu-north-1")
    assert config["authenticationType"] == "AWS_IAM"
    assert config["additionalAuthenticationProviders"] == [{"authenticationType": "API_KEY"}]
    assert [k["id"] for k in config["apiKeys"]] == [key]
    assert [s["name"] for s in config["dataSources"]] == ["Devices"]
    assert [(r["typeName"], r["fieldName"]) for r in config["resolvers"]] == [("Query", "getDevice")]

    unchanged = http.get(
        f"/iotfleet-sandbox/appsync/{api_id}/config", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert unchanged.status_code == 304
    appsync.update_resolver(
        apiId=api_id, typeName="Query", fieldName="getDevice", dataSourceName="Devices", requestMappingTemplate="{}"
    )
    assert http.get(f"/iotfleet-sandbox/appsync/{api_id}/config").json["etag"] != config["etag"]

    assert http.get("/iotfleet-sandbox/appsync/missing/config").status_code == 404
    assert http.post(f"/iotfleet-sandbox/appsync/{api_id}/config").status_code == 405
    assert http.get("/anything-else").status_code == 599  # moto's


def test_expired_keys_are_left_out(appsync, api_id):
    from moto.appsync.models import appsync_backends
    from moto.core.utils import utcnow

    key = appsync.create_api_key(apiId=api_id)["apiKey"]["id"]
    appsync_backends["123456789012"]["eu-north-1"].graphql_apis[api_id].api_keys[key].expires = utcnow()
    assert ext_appsync.find_config(api_id)["apiKeys"] == []


def test_the_simulator_serves_the_newest_api_with_a_schema(appsync, http):
    assert http.get("/iotfleet-sandbox/appsync/apis").json == {"current": None, "apis": []}
    first = appsync.create_graphql_api(name="first", authenticationType="AWS_IAM")["graphqlApi"]["apiId"]
    appsync.start_schema_creation(apiId=first, definition=SCHEMA.encode())
    second = appsync.create_graphql_api(name="second", authenticationType="AWS_IAM")["graphqlApi"]["apiId"]
    listing = http.get("/iotfleet-sandbox/appsync/apis").json
    assert listing["current"]["apiId"] == first  # the second has no schema yet
    assert [api["apiId"] for api in listing["apis"]] == [first, second]
    appsync.start_schema_creation(apiId=second, definition=SCHEMA.encode())
    assert http.get("/iotfleet-sandbox/appsync/apis").json["current"]["apiId"] == second
    appsync.delete_graphql_api(apiId=second)
    assert http.get("/iotfleet-sandbox/appsync/apis").json["current"]["apiId"] == first


def test_revert_removes_the_additions(appsync):
    from moto.appsync import urls
    from moto.appsync.responses import AppSyncResponse

    moto_ext.revert()
    assert not hasattr(AppSyncResponse, "create_data_source")
    assert not any("datasources" in path for path in urls.url_paths)
