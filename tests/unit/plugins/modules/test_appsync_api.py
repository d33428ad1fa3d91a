"""appsync_api against moto in process, with the sandbox's AppSync extension (data sources, resolvers)."""

import json
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import boto3
import pytest

from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import canonical_schema
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import object_type_fields
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import render_schema
from ansible_collections.iotfleet.aws.plugins.modules import appsync_api
from tests.unit.conftest import ACCOUNT_ID
from tests.unit.conftest import REGION

NAME = "iotfleet-api"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/iotfleet-appsync"
DAY = 86400

SCHEMA = """
# The fleet's schema (a part of it).
schema { query: Query mutation: Mutation subscription: Subscription }

\"\"\"A board, named after its MAC address.\"\"\"
type Device @aws_iam @aws_api_key {
  device_id: ID!
  status: String
}

type Telemetry @aws_iam @aws_api_key {
  device_id: ID!
  timestamp: AWSTimestamp!
  temperature: Float
}

type Query {
  "One device."
  getDevice(device_id: ID!): Device @aws_iam @aws_api_key
  listDevices: [Device] @aws_iam @aws_api_key
}

type Mutation {
  createTelemetry(device_id: ID!, temperature: Float): Telemetry @aws_iam
}

type Subscription {
  onCreateTelemetry(device_id: ID): Telemetry
    @aws_subscribe(mutations: ["createTelemetry"]) @aws_iam @aws_api_key
}
"""

# The same schema as AWS might print it: other layout and order, commas, no comments or descriptions,
# AppSync's scalars and directives declared.
SCHEMA_REPRINTED = """
directive @aws_iam on FIELD_DEFINITION | OBJECT
directive @aws_api_key on FIELD_DEFINITION | OBJECT
scalar AWSTimestamp
type Subscription {
  onCreateTelemetry(device_id: ID): Telemetry @aws_subscribe(mutations: ["createTelemetry"]) @aws_iam @aws_api_key
}
type Mutation { createTelemetry(device_id: ID!, temperature: Float): Telemetry @aws_iam }
type Query {
  getDevice(device_id: ID!): Device @aws_iam @aws_api_key
  listDevices: [Device] @aws_iam @aws_api_key
}
type Telemetry @aws_iam @aws_api_key { device_id: ID!, timestamp: AWSTimestamp!, temperature: Float }
type Device @aws_iam @aws_api_key { device_id: ID!, status: String }
"""


def template(text):
    return json.dumps({"version": "2018-05-29", "operation": text})


def data_sources():
    return [
        {"name": "devices", "type": "AMAZON_DYNAMODB", "table_name": "iotfleet-devices", "service_role_arn": ROLE},
        {"name": "telemetry", "type": "AMAZON_DYNAMODB", "table_name": "iotfleet-telemetry", "service_role_arn": ROLE},
        {"name": "local", "type": "NONE", "description": "subscriptions"},
    ]


def resolvers():
    return [
        {
            "type_name": "Query",
            "field_name": "getDevice",
            "data_source": "devices",
            "request_template": template("GetItem"),
            "response_template": "$util.toJson($ctx.result)",
        },
        {
            "type_name": "Query",
            "field_name": "listDevices",
            "data_source": "devices",
            "request_template": template("Scan"),
            "response_template": "$util.toJson($ctx.result.items)",
        },
        {
            "type_name": "Mutation",
            "field_name": "createTelemetry",
            "data_source": "telemetry",
            "request_template": template("PutItem"),
            "response_template": "$util.toJson($ctx.result)",
        },
    ]


def api_args(**overrides):
    args = {
        "name": NAME,
        "authentication_type": "AWS_IAM",
        "additional_authentication_providers": ["API_KEY"],
        "schema": SCHEMA,
        "data_sources": data_sources(),
        "resolvers": resolvers(),
        "api_key": {"description": "dashboard"},
        "tags": {"project": "iotfleet"},
    }
    args.update(overrides)
    return args


@pytest.fixture
def appsync(aws, tmp_path):
    """moto in process with the sandbox's patches (AppSync data sources and resolvers among them)."""
    from sandbox import moto_ext

    moto_ext.apply(tmp_path / "ca")
    try:
        yield boto3.client("appsync", region_name=aws)
    finally:
        moto_ext.revert()


@pytest.fixture
def calls(monkeypatch):
    """Records the module's writes of schemas and resolvers while still making them."""
    made = []

    def spy(name):
        original = getattr(appsync_api, name)

        def record(*args, **kwargs):
            made.append((name, kwargs.get("fieldName") or (args[3] if len(args) > 3 else None)))
            return original(*args, **kwargs)

        monkeypatch.setattr(appsync_api, name, record)

    for name in ("start_schema_creation", "create_resolver", "update_resolver", "delete_resolver"):
        spy(name)
    return made


def only_api(appsync):
    apis = appsync.list_graphql_apis()["graphqlApis"]
    assert len(apis) == 1
    return apis[0]


def live_resolvers(appsync, api_id):
    found = {}
    for type_name in ("Query", "Mutation", "Subscription", "Device", "Telemetry"):
        for resolver in appsync.list_resolvers(apiId=api_id, typeName=type_name)["resolvers"]:
            found[f"{type_name}.{resolver['fieldName']}"] = resolver
    return found


def diff_entry(result, header):
    entries = [entry for entry in result["diff"] if entry["before_header"] == header]
    return entries[0] if entries else None


def set_key_expiry(api_id, key_id, when):
    """Move a key's expiry, also into the past (which AppSync's API refuses), in moto's store."""
    from moto.appsync.models import appsync_backends

    appsync_backends[ACCOUNT_ID][REGION].graphql_apis[api_id].api_keys[key_id].expires = when


# Creating and re-running.


def test_creates_the_whole_api(appsync, run_module):
    result = run_module(appsync_api, api_args())

    assert result["changed"] is True
    aws_api = only_api(appsync)
    api = result["api"]
    assert api["api_id"] == aws_api["apiId"]
    assert api["arn"] == aws_api["arn"]
    assert api["name"] == NAME
    assert api["authentication_type"] == "AWS_IAM"
    assert api["additional_authentication_providers"] == ["API_KEY"]
    assert api["tags"] == {"project": "iotfleet"}
    assert api["log_config"] is None
    assert "GRAPHQL" in api["uris"]
    live_sdl = appsync.get_introspection_schema(apiId=api["api_id"], format="SDL")["schema"].read().decode()
    assert canonical_schema(live_sdl) == canonical_schema(SCHEMA)
    assert result["data_sources"] == [
        {"name": "devices", "type": "AMAZON_DYNAMODB", "arn": f"{aws_api['arn']}/datasources/devices"},
        {"name": "local", "type": "NONE", "arn": f"{aws_api['arn']}/datasources/local"},
        {"name": "telemetry", "type": "AMAZON_DYNAMODB", "arn": f"{aws_api['arn']}/datasources/telemetry"},
    ]
    devices = appsync.get_data_source(apiId=api["api_id"], name="devices")["dataSource"]
    assert devices["dynamodbConfig"] == {"tableName": "iotfleet-devices", "awsRegion": REGION}
    assert devices["serviceRoleArn"] == ROLE
    assert result["resolvers"] == ["Mutation.createTelemetry", "Query.getDevice", "Query.listDevices"]
    get_device = live_resolvers(appsync, api["api_id"])["Query.getDevice"]
    assert get_device["requestMappingTemplate"] == template("GetItem")
    assert get_device["dataSourceName"] == "devices"
    keys = appsync.list_api_keys(apiId=api["api_id"])["apiKeys"]
    assert len(keys) == 1
    assert result["api_key"] == {"id": keys[0]["id"], "description": "dashboard", "expires": keys[0]["expires"]}
    assert 364 * DAY < result["api_key"]["expires"] - time.time() <= 365 * DAY
    assert result["api_key"]["expires"] % 3600 == 0


def test_second_run_is_unchanged_even_with_the_schema_reprinted(appsync, run_module, calls):
    run_module(appsync_api, api_args())
    calls.clear()

    result = run_module(appsync_api, api_args(schema=SCHEMA_REPRINTED), diff=True)

    assert result["changed"] is False
    assert result["diff"] == []
    assert calls == []
    assert len(appsync.list_api_keys(apiId=result["api"]["api_id"])["apiKeys"]) == 1


def test_check_mode_create_writes_nothing_and_diff_shows_everything(appsync, run_module):
    result = run_module(appsync_api, api_args(), check_mode=True, diff=True)

    assert result["changed"] is True
    assert result["api"] == {}
    assert result["api_key"] == {}
    assert appsync.list_graphql_apis()["graphqlApis"] == []
    headers = [entry["before_header"] for entry in result["diff"]]
    assert headers == ["api", "tags", "schema", "data_sources", "resolvers", "api_key"]
    assert diff_entry(result, "schema")["before"] == ""
    assert "getDevice(device_id: ID!): Device @aws_iam @aws_api_key" in diff_entry(result, "schema")["after"]
    assert sorted(diff_entry(result, "resolvers")["after"]) == [
        "Mutation.createTelemetry",
        "Query.getDevice",
        "Query.listDevices",
    ]


def test_check_mode_update_writes_nothing(appsync, run_module, calls):
    run_module(appsync_api, api_args())
    calls.clear()
    changed = resolvers()
    changed[0]["request_template"] = template("Query")

    result = run_module(
        appsync_api, api_args(resolvers=changed, schema=SCHEMA + "type Extra { a: Int }"), check_mode=True
    )

    assert result["changed"] is True
    assert calls == []
    api_id = result["api"]["api_id"]
    assert live_resolvers(appsync, api_id)["Query.getDevice"]["requestMappingTemplate"] == template("GetItem")
    live_sdl = appsync.get_introspection_schema(apiId=api_id, format="SDL")["schema"].read().decode()
    assert "Extra" not in live_sdl


# The schema.


def test_schema_change_starts_schema_creation_and_diff_shows_the_text(appsync, run_module, calls):
    run_module(appsync_api, api_args())
    calls.clear()
    schema = SCHEMA.replace("  status: String\n", "  status: String\n  owner: String\n")

    result = run_module(appsync_api, api_args(schema=schema), diff=True)

    assert result["changed"] is True
    assert calls == [("start_schema_creation", None)]
    entry = diff_entry(result, "schema")
    assert "owner" not in entry["before"]
    assert "  owner: String\n" in entry["after"]
    assert [e["before_header"] for e in result["diff"]] == ["schema"]
    live_sdl = appsync.get_introspection_schema(apiId=result["api"]["api_id"], format="SDL")["schema"].read().decode()
    assert "owner: String" in live_sdl
    assert run_module(appsync_api, api_args(schema=schema))["changed"] is False


def test_schema_rejected_by_appsync_fails_with_its_details(appsync, run_module):
    run_module(appsync_api, api_args())
    schema = SCHEMA.replace("status: String", "status: DeviceStatus")

    result = run_module(appsync_api, api_args(schema=schema), expect_failure=True)

    assert result["msg"].startswith("schema: AppSync rejected the schema: ")
    assert "DeviceStatus" in result["msg"]


def test_schema_is_left_alone_when_not_given(appsync, run_module, calls):
    run_module(appsync_api, api_args())
    calls.clear()

    result = run_module(appsync_api, api_args(schema=None))

    assert result["changed"] is False
    assert calls == []


# Resolvers.


def test_template_change_updates_only_that_resolver(appsync, run_module, calls):
    run_module(appsync_api, api_args())
    calls.clear()
    changed = resolvers()
    changed[1]["response_template"] = "$util.toJson($ctx.result.items[0:10])"

    result = run_module(appsync_api, api_args(resolvers=changed), diff=True)

    assert result["changed"] is True
    assert calls == [("update_resolver", "listDevices")]
    entry = diff_entry(result, "resolvers")
    assert list(entry["before"]) == ["Query.listDevices"] == list(entry["after"])
    assert entry["after"]["Query.listDevices"]["responseMappingTemplate"] == "$util.toJson($ctx.result.items[0:10])"
    live = live_resolvers(appsync, result["api"]["api_id"])["Query.listDevices"]
    assert live["responseMappingTemplate"] == "$util.toJson($ctx.result.items[0:10])"
    assert [e["before_header"] for e in result["diff"]] == ["resolvers"]


def test_unlisted_resolver_is_purged_unless_purge_is_off(appsync, run_module, calls):
    run_module(appsync_api, api_args())
    calls.clear()
    fewer = resolvers()[:2]

    kept = run_module(appsync_api, api_args(resolvers=fewer, purge_resolvers=False))
    assert kept["changed"] is False
    assert "Mutation.createTelemetry" in kept["resolvers"]

    result = run_module(appsync_api, api_args(resolvers=fewer), diff=True)

    assert result["changed"] is True
    assert calls == [("delete_resolver", "createTelemetry")]
    assert result["resolvers"] == ["Query.getDevice", "Query.listDevices"]
    entry = diff_entry(result, "resolvers")
    assert list(entry["before"]) == ["Mutation.createTelemetry"]
    assert entry["after"] == {}


def test_resolver_on_a_new_field_comes_after_the_schema(appsync, run_module):
    run_module(appsync_api, api_args())
    schema = SCHEMA.replace("  listDevices:", "  countDevices: Int @aws_iam\n  listDevices:")
    more = resolvers() + [
        {
            "type_name": "Query",
            "field_name": "countDevices",
            "data_source": "local",
            "request_template": template("Count"),
            "response_template": "$util.toJson(0)",
        }
    ]

    result = run_module(appsync_api, api_args(schema=schema, resolvers=more))

    assert result["changed"] is True
    assert "Query.countDevices" in result["resolvers"]


# Data sources.


def test_data_source_change_updates_it_and_unlisted_ones_go_after_their_resolvers(appsync, run_module):
    run_module(appsync_api, api_args())
    sources = data_sources()
    sources[0]["table_name"] = "iotfleet-devices-v2"
    sources = sources[:2]
    remaining = resolvers()

    result = run_module(appsync_api, api_args(data_sources=sources, resolvers=remaining), diff=True)

    assert result["changed"] is True
    api_id = result["api"]["api_id"]
    devices = appsync.get_data_source(apiId=api_id, name="devices")["dataSource"]
    assert devices["dynamodbConfig"]["tableName"] == "iotfleet-devices-v2"
    assert [source["name"] for source in result["data_sources"]] == ["devices", "telemetry"]
    entry = diff_entry(result, "data_sources")
    assert sorted(entry["before"]) == ["devices", "local"]
    assert list(entry["after"]) == ["devices"]

    # A data source still used by a resolver that stays is an input error, caught before any write.
    failed = run_module(appsync_api, api_args(data_sources=sources[:1], resolvers=remaining), expect_failure=True)
    assert "data source 'telemetry' is not in data_sources" in failed["msg"]
    assert appsync.get_data_source(apiId=api_id, name="telemetry")["dataSource"]["name"] == "telemetry"


def test_lambda_data_source(appsync, run_module):
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:iotfleet-core-status"
    source = {"name": "status", "type": "AWS_LAMBDA", "function_arn": function_arn, "service_role_arn": ROLE}

    result = run_module(appsync_api, api_args(data_sources=[source], resolvers=[]))

    live = appsync.get_data_source(apiId=result["api"]["api_id"], name="status")["dataSource"]
    assert live["lambdaConfig"] == {"lambdaFunctionArn": function_arn}
    assert run_module(appsync_api, api_args(data_sources=[source], resolvers=[]))["changed"] is False


# The API key.


def test_key_expiring_within_the_window_is_renewed_and_the_old_one_kept(appsync, run_module):
    first = run_module(appsync_api, api_args())
    api_id, old_key = first["api"]["api_id"], first["api_key"]["id"]
    set_key_expiry(api_id, old_key, datetime.now(UTC).replace(tzinfo=None) + timedelta(days=29))

    result = run_module(appsync_api, api_args(), diff=True)

    assert result["changed"] is True
    assert result["api_key"]["id"] != old_key
    assert result["api_key"]["expires"] - time.time() > 364 * DAY
    assert sorted(key["id"] for key in appsync.list_api_keys(apiId=api_id)["apiKeys"]) == sorted(
        [old_key, result["api_key"]["id"]]
    )
    entry = diff_entry(result, "api_key")
    assert entry["after"]["expires"] == result["api_key"]["expires"]
    assert old_key not in json.dumps(result["diff"]) and result["api_key"]["id"] not in json.dumps(result["diff"])
    assert run_module(appsync_api, api_args())["changed"] is False


def test_key_outside_the_window_is_kept(appsync, run_module):
    first = run_module(appsync_api, api_args())
    set_key_expiry(
        first["api"]["api_id"], first["api_key"]["id"], datetime.now(UTC).replace(tzinfo=None) + timedelta(days=31)
    )

    result = run_module(appsync_api, api_args())

    assert result["changed"] is False
    assert result["api_key"]["id"] == first["api_key"]["id"]


def test_expired_keys_are_deleted_and_replaced(appsync, run_module):
    first = run_module(appsync_api, api_args())
    api_id, old_key = first["api"]["api_id"], first["api_key"]["id"]
    set_key_expiry(api_id, old_key, datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1))

    check = run_module(appsync_api, api_args(), check_mode=True, diff=True)
    assert check["changed"] is True
    assert diff_entry(check, "api_key")["before"] == {"expired_keys": 1}
    assert [key["id"] for key in appsync.list_api_keys(apiId=api_id)["apiKeys"]] == [old_key]

    result = run_module(appsync_api, api_args())

    assert result["changed"] is True
    assert [key["id"] for key in appsync.list_api_keys(apiId=api_id)["apiKeys"]] == [result["api_key"]["id"]]
    assert result["api_key"]["id"] != old_key


def test_key_description_is_updated_in_place(appsync, run_module):
    first = run_module(appsync_api, api_args())

    result = run_module(appsync_api, api_args(api_key={"description": "dashboard, read only"}))

    assert result["changed"] is True
    assert result["api_key"]["id"] == first["api_key"]["id"]
    assert result["api_key"]["description"] == "dashboard, read only"


def test_api_key_mode_may_come_from_the_live_api(appsync, run_module):
    run_module(appsync_api, api_args())
    args = api_args()
    del args["additional_authentication_providers"]

    result = run_module(appsync_api, args)

    assert result["changed"] is False
    assert result["api"]["additional_authentication_providers"] == ["API_KEY"]
    other = run_module(appsync_api, {**args, "name": "other"}, expect_failure=True)
    assert "api_key: the API does not use API_KEY authentication" in other["msg"]


def test_keys_are_left_alone_without_api_key(appsync, run_module):
    run_module(appsync_api, api_args())

    result = run_module(appsync_api, api_args(api_key=None))

    assert result["changed"] is False
    assert "api_key" not in result


# Settings, tags, deletion, several APIs.


def test_settings_and_tags_are_updated(appsync, run_module):
    run_module(appsync_api, api_args())
    log_config = {"field_log_level": "ERROR", "cloudwatch_logs_role_arn": ROLE}

    result = run_module(
        appsync_api,
        api_args(api_key=None, additional_authentication_providers=[], log_config=log_config, tags={"owner": "ops"}),
        diff=True,
    )

    assert result["changed"] is True
    assert result["api"]["additional_authentication_providers"] == []
    assert result["api"]["log_config"] == {**log_config, "exclude_verbose_content": False}
    assert result["api"]["tags"] == {"owner": "ops"}
    assert diff_entry(result, "tags") == {
        "before_header": "tags",
        "after_header": "tags",
        "before": {"project": "iotfleet"},
        "after": {"owner": "ops"},
    }
    assert diff_entry(result, "api")["after"]["additional_authentication_providers"] == []


def test_absent_deletes_the_api(appsync, run_module):
    run_module(appsync_api, api_args())

    check = run_module(appsync_api, {"name": NAME, "state": "absent"}, check_mode=True)
    assert check["changed"] is True
    assert len(appsync.list_graphql_apis()["graphqlApis"]) == 1

    result = run_module(appsync_api, {"name": NAME, "state": "absent"}, diff=True)

    assert result["changed"] is True
    assert result["api"] == {}
    assert appsync.list_graphql_apis()["graphqlApis"] == []
    assert run_module(appsync_api, {"name": NAME, "state": "absent"})["changed"] is False


def test_two_apis_with_the_name_fail_naming_their_ids(appsync, run_module):
    ids = [appsync.create_graphql_api(name=NAME, authenticationType="AWS_IAM")["graphqlApi"]["apiId"] for _copy in "ab"]

    result = run_module(appsync_api, api_args(), expect_failure=True)

    assert "2 AppSync APIs are named 'iotfleet-api'" in result["msg"]
    assert all(api_id in result["msg"] for api_id in ids)


# Bad input: named, and caught before anything is written.


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda args: args["resolvers"][0].update(data_source="dynamo"),
            "resolvers[0] (Query.getDevice): data source 'dynamo' is not in data_sources",
        ),
        (
            lambda args: args["resolvers"][0].update(field_name="getThing"),
            "resolvers[0] (Query.getThing): the schema has no field 'getThing' in object type 'Query'",
        ),
        (
            lambda args: args["resolvers"].append(dict(args["resolvers"][0])),
            "resolvers[3]: resolver Query.getDevice is listed twice",
        ),
        (
            lambda args: args["data_sources"][0].pop("table_name"),
            "data_sources[0] (devices): table_name required for a data source of type AMAZON_DYNAMODB",
        ),
        (
            lambda args: args["data_sources"][2].update(function_arn="arn:aws:lambda:x"),
            "data_sources[2] (local): function_arn does not apply to a data source of type NONE",
        ),
        (
            lambda args: args["data_sources"][1].update(name="tele-metry"),
            "data_sources[1] (tele-metry): 'tele-metry' is not a valid data source name",
        ),
        (
            lambda args: args.update(schema="type Query { a: Int } %"),
            "schema: not valid GraphQL SDL: unexpected character '%'",
        ),
        (lambda args: args.update(schema="# nothing\n"), "schema: empty"),
        (
            lambda args: args.update(additional_authentication_providers=[]),
            "api_key: the API does not use API_KEY authentication",
        ),
        (
            lambda args: args.update(api_key={"validity_days": 400}),
            "api_key.validity_days: 400; AppSync accepts 1 to 365",
        ),
        (
            lambda args: args.update(api_key={"validity_days": 30, "renew_before_days": 30}),
            "api_key.renew_before_days: 30; it must be 0 or more and less than validity_days (30)",
        ),
        (lambda args: args.update(name="iotfleet/api"), "name: 'iotfleet/api' is not a valid API name"),
    ],
)
def test_bad_input_is_named_before_any_write(appsync, run_module, calls, change, message):
    args = api_args()
    change(args)

    result = run_module(appsync_api, args, expect_failure=True)

    assert message in result["msg"]
    assert appsync.list_graphql_apis()["graphqlApis"] == []
    assert calls == []


def test_unknown_data_source_on_an_existing_api_changes_nothing(appsync, run_module, calls):
    run_module(appsync_api, api_args())
    calls.clear()
    args = api_args(schema=SCHEMA + "type Extra { a: Int }")
    args["resolvers"][2]["data_source"] = "nowhere"

    result = run_module(appsync_api, args, expect_failure=True)

    assert "resolvers[2] (Mutation.createTelemetry): data source 'nowhere' is not in data_sources" in result["msg"]
    assert calls == []


def test_resolver_may_use_a_data_source_already_on_the_api_when_data_sources_are_not_managed(appsync, run_module):
    run_module(appsync_api, api_args())

    result = run_module(appsync_api, api_args(data_sources=None))
    assert result["changed"] is False

    args = api_args(data_sources=None)
    args["resolvers"][0]["data_source"] = "missing"
    failed = run_module(appsync_api, args, expect_failure=True)
    assert "data source 'missing' is not in data_sources and not on the API" in failed["msg"]


# The schema comparison itself.


def test_canonical_schema_ignores_layout_comments_descriptions_order_and_implicit_declarations():
    assert canonical_schema(SCHEMA) == canonical_schema(SCHEMA_REPRINTED)


def test_canonical_schema_equals_graphql_core_reprint():
    """AWS re-prints the schema it stores; graphql-core's printer stands in for it here."""
    from graphql import build_schema
    from graphql import print_schema

    plain = SCHEMA.replace("@aws_iam", "").replace("@aws_api_key", "")
    plain = plain.replace('@aws_subscribe(mutations: ["createTelemetry"])', "")
    reprinted = print_schema(build_schema(plain + "scalar AWSTimestamp\n"))

    assert canonical_schema(reprinted) == canonical_schema(plain)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.replace("status: String", "status: String!"),
        lambda s: s.replace("listDevices: [Device]", "listDevices: [Device!]"),
        lambda s: s.replace("@aws_iam @aws_api_key {\n  device_id", "@aws_iam {\n  device_id"),
        lambda s: s.replace('mutations: ["createTelemetry"]', 'mutations: ["createTelemetry", "x"]'),
        lambda s: s.replace("  status: String\n", "  owner: String\n  status: String\n"),
        lambda s: s.replace("subscription: Subscription }", "subscription: Subscriptions }"),
    ],
)
def test_canonical_schema_sees_changes_of_meaning(change):
    assert canonical_schema(change(SCHEMA)) != canonical_schema(SCHEMA)


def test_object_type_fields_and_rendering():
    schema = canonical_schema(SCHEMA)

    fields = object_type_fields(schema)

    assert fields["Query"] == {"getDevice", "listDevices"}
    assert fields["Device"] == {"device_id", "status"}
    rendered = render_schema(schema)
    assert "type Device @aws_iam @aws_api_key {\n  device_id: ID!\n  status: String\n}\n" in rendered
    assert canonical_schema(rendered) == schema
