"""files/graphql: the manifest against the schema and the functions' operations, the auth directives,
and every request template rendered and run against moto's DynamoDB (the tables of DESIGN section 2).

There is no GraphQL or VTL engine in this venv, so the schema is read with a light parser and the
request templates with a renderer for exactly the VTL they use: `$ctx.args...` references and the
`$util` calls below. That is also a rule the templates follow: no directives in request templates,
because the local simulator swallows exceptions there (NOTES). The DynamoDB calls mirror the
simulator's DynamoDB data source (update and condition names/values merged, ALL_NEW, base64 JSON
nextToken).
"""

import base64
import json
import re
from decimal import Decimal

import pytest
import yaml
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from common import operations

from .conftest import ROOT

GRAPHQL = ROOT / "files" / "graphql"
MANIFEST = yaml.safe_load((GRAPHQL / "resolvers.yml").read_text())
SCHEMA = (GRAPHQL / "schema.graphql").read_text()
TABLES = {"devices": "test_devices", "telemetry": "test_telemetry"}
NOW_MS = 1_733_400_000_000
DEVICE_ID = "4827E2E59190"
WINDOW = 600_000

# --- the schema, read lightly ---------------------------------------------------------------------

BLOCK = re.compile(r"^(type|input|enum)\s+(\w+)([^{]*)\{(.*?)^\}", re.M | re.S)
FIELD = re.compile(r"(\w+)\s*(\([^)]*\))?\s*:\s*([\[\]\w!]+)((?:\s*@\w+(?:\([^)]*\))?)*)")
DIRECTIVE = re.compile(r"@\w+")


def schema_types():
    text = re.sub(r"#[^\n]*", "", SCHEMA)
    types = {}
    for kind, name, directives, body in BLOCK.findall(text):
        fields = {}
        if kind != "enum":
            for field, args, field_type, field_directives in FIELD.findall(body):
                fields[field] = {
                    "args": args,
                    "type": field_type,
                    "directives": set(DIRECTIVE.findall(field_directives)),
                }
        types[name] = {"kind": kind, "directives": set(DIRECTIVE.findall(directives)), "fields": fields}
    return types


TYPES = schema_types()


def named_type(field_type):
    return field_type.strip("[]!")


def test_every_query_and_mutation_has_exactly_one_resolver_and_its_templates():
    declared = {(r["type"], r["field"]) for r in MANIFEST["resolvers"]}
    assert len(declared) == len(MANIFEST["resolvers"])
    wanted = {(t, f) for t in ("Query", "Mutation") for f in TYPES[t]["fields"]}
    assert declared == wanted
    sources = {source["name"] for source in MANIFEST["data_sources"]}
    assert sources == set(TABLES)
    referenced = set()
    for resolver in MANIFEST["resolvers"]:
        assert resolver["data_source"] in sources
        for key in ("request", "response"):
            assert resolver[key] == f"resolvers/{resolver['type']}.{resolver['field']}.{key}.vtl"
            assert (GRAPHQL / resolver[key]).is_file()
            referenced.add(resolver[key])
    assert {f"resolvers/{path.name}" for path in (GRAPHQL / "resolvers").iterdir()} == referenced


def test_iam_mutates_and_the_api_key_only_reads_and_subscribes():
    assert "schema" in SCHEMA and "subscription: Subscription" in SCHEMA
    for name, field in TYPES["Mutation"]["fields"].items():
        assert field["directives"] == {"@aws_iam"}, name
    for type_name in ("Query", "Subscription"):
        for name, field in TYPES[type_name]["fields"].items():
            assert {"@aws_iam", "@aws_api_key"} <= field["directives"], name
            returned = TYPES[named_type(field["type"])]
            assert {"@aws_iam", "@aws_api_key"} <= returned["directives"], name
            for nested in returned["fields"].values():
                nested_type = TYPES.get(named_type(nested["type"]))
                if nested_type and nested_type["kind"] == "type":
                    assert "@aws_api_key" in nested_type["directives"], (name, nested)
    for name, field in TYPES["Mutation"]["fields"].items():
        assert "@aws_iam" in TYPES[named_type(field["type"])]["directives"], name


def test_optional_input_fields_default_to_null():
    # The simulator's toDynamoDBJson fails on an omitted field (swallowed: data null, no error).
    for name, type_info in TYPES.items():
        if type_info["kind"] == "input":
            body = re.search(r"^input " + name + r" \{(.*?)^\}", SCHEMA, re.M | re.S).group(1)
            for line in body.strip().splitlines():
                field_type = line.split(":", 1)[1].strip()
                assert field_type.endswith("!") or field_type.endswith("= null"), (name, line)


def test_subscriptions_follow_the_mutations_that_feed_the_dashboard():
    fields = TYPES["Subscription"]["fields"]
    assert fields["onCreateTelemetry"]["type"] == "Telemetry"
    assert fields["onUpdateDevice"]["type"] == "Device"
    assert '@aws_subscribe(mutations: ["createTelemetry"])' in SCHEMA
    assert (
        '@aws_subscribe(mutations: ["updateDeviceStatus", "upsertDevice", "revokeDevice", "readmitDevice"])' in SCHEMA
    )


OPERATION = re.compile(r"^(query|mutation) (\w+)\((.*?)\) \{\s*(\w+)\((.*?)\) \{(.*?)\}", re.S)


@pytest.mark.parametrize(
    "document",
    [operations.GET_DEVICE, operations.CREATE_TELEMETRY, operations.UPDATE_DEVICE_STATUS, operations.MARK_NOTIFIED],
)
def test_the_functions_operations_match_the_schema(document):
    kind, _name, variables, root_field, _args, selection = OPERATION.match(document).groups()
    root = TYPES["Query" if kind == "query" else "Mutation"]["fields"][root_field]
    for variable_type in re.findall(r"\$\w+: ([\w!]+)", variables):
        assert named_type(variable_type) in TYPES or named_type(variable_type) == "ID"
    returned = TYPES[named_type(root["type"])]["fields"]
    assert set(selection.split()) <= set(returned)
    if kind == "mutation" and root_field != "markNotified":
        assert set(selection.split()) == set(returned), "subscribers only get the fields a mutation selects"


def test_presence_input_carries_what_the_functions_send():
    from common.presence import Presence

    sent = Presence(DEVICE_ID, "connected", NOW_MS, 1, "s", None).mutation_input()
    assert set(sent) == set(TYPES["PresenceInput"]["fields"])


# --- the request templates, rendered ----------------------------------------------------------------


class Raw(str):
    """Text a $util call writes into the template as is."""


def to_dynamodb(value):
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value)}
    return {"S": str(value)}


UTIL = {
    "util.dynamodb.toDynamoDBJson": lambda value: Raw(json.dumps(to_dynamodb(value))),
    "util.toJson": lambda value: Raw(json.dumps(value)),
    "util.defaultIfNull": lambda value, default: default if value is None else value,
    "util.time.nowEpochMilliSeconds": lambda: NOW_MS,
}
REFERENCE = re.compile(r"\$([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
NUMBER = re.compile(r"-?\d+")


def evaluate(text, pos, context):
    match = REFERENCE.match(text, pos)
    if match is None:
        number = NUMBER.match(text, pos)
        assert number, f"unsupported VTL at {text[pos : pos + 40]!r}"
        return int(number.group()), number.end()
    path, pos = match.group(1), match.end()
    if text.startswith("(", pos):
        args, pos = [], pos + 1
        while not text.startswith(")", pos):
            value, pos = evaluate(text, pos, context)
            args.append(value)
            pos = len(text) - len(text[pos:].lstrip(" ,"))
        return UTIL[path](*args), pos + 1
    value = context
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value, pos


def render(template, args):
    context = {"ctx": {"args": args}, "context": {"args": args}}
    out, pos = [], 0
    for match in REFERENCE.finditer(template):
        if match.start() < pos:
            continue
        out.append(template[pos : match.start()])
        value, pos = evaluate(template, match.start(), context)
        out.append(value if isinstance(value, Raw) else json.dumps(value))
    out.append(template[pos:])
    return json.loads("".join(out))


def request_template(type_name, field):
    return (GRAPHQL / "resolvers" / f"{type_name}.{field}.request.vtl").read_text()


@pytest.mark.parametrize("resolver", MANIFEST["resolvers"], ids=lambda r: f"{r['type']}.{r['field']}")
def test_templates_keep_logic_out_of_requests_and_raise_errors_in_responses(resolver):
    request = (GRAPHQL / resolver["request"]).read_text()
    response = (GRAPHQL / resolver["response"]).read_text()
    assert not re.search(r"#(if|set|foreach|return)\b", request)
    assert '"version": "2018-05-29"' in request
    assert response.startswith("#if($ctx.error)\n  $util.error($ctx.error.message, $ctx.error.type)\n#end\n")
    assert "tableName" not in request and "iotfleet" not in request


@pytest.mark.parametrize("field", ["updateDeviceStatus", "markNotified", "revokeDevice", "readmitDevice"])
def test_update_and_condition_use_separate_placeholders(field):
    args = {"input": {}, "device_id": DEVICE_ID, "timestamp": 1, "certificate_id": "c"}
    rendered = render(request_template("Mutation", field), args)
    update, condition = rendered["update"], rendered["condition"]
    assert not set(update.get("expressionNames", {})) & set(condition.get("expressionNames", {}))
    assert not set(update.get("expressionValues", {})) & set(condition.get("expressionValues", {}))


# --- ... and run against DynamoDB --------------------------------------------------------------------


def plain(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def unmarshal(item):
    if item is None:
        return None
    deserializer = TypeDeserializer()
    return {key: plain(deserializer.deserialize(value)) for key, value in item.items()}


def expression_args(*sections):
    names, values = {}, {}
    for section in sections:
        names.update(section.get("expressionNames") or {})
        values.update(section.get("expressionValues") or {})
    args = {}
    if names:
        args["ExpressionAttributeNames"] = names
    if values:
        args["ExpressionAttributeValues"] = values
    return args


def token(key):
    return base64.b64encode(json.dumps(key).encode()).decode() if key else None


class ConditionalCheckFailed(Exception):
    pass


class Api:
    """Runs a resolver's rendered request on its table the way the simulator's data source does."""

    def __init__(self, client):
        self.client = client
        self.sources = {(r["type"], r["field"]): r["data_source"] for r in MANIFEST["resolvers"]}

    def call(self, type_name, field, **args):
        request = render(request_template(type_name, field), args)
        table = TABLES[self.sources[(type_name, field)]]
        try:
            return getattr(self, request["operation"])(table, request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConditionalCheckFailed(field) from exc
            raise

    def GetItem(self, table, request):  # named after the operation it runs
        return unmarshal(self.client.get_item(TableName=table, Key=request["key"]).get("Item"))

    def PutItem(self, table, request):
        item = {**request.get("attributeValues", {}), **request["key"]}
        condition = request.get("condition")
        extra = {"ConditionExpression": condition["expression"], **expression_args(condition)} if condition else {}
        self.client.put_item(TableName=table, Item=item, **extra)
        return unmarshal(self.client.get_item(TableName=table, Key=request["key"], ConsistentRead=True)["Item"])

    def UpdateItem(self, table, request):
        update, condition = request["update"], request.get("condition") or {}
        extra = {"ConditionExpression": condition["expression"]} if condition else {}
        reply = self.client.update_item(
            TableName=table,
            Key=request["key"],
            UpdateExpression=update["expression"],
            ReturnValues="ALL_NEW",
            **extra,
            **expression_args(condition, update),
        )
        return unmarshal(reply["Attributes"])

    def Query(self, table, request):
        query = request["query"]
        extra = (
            {"ExclusiveStartKey": json.loads(base64.b64decode(request["nextToken"]))}
            if request.get("nextToken")
            else {}
        )
        reply = self.client.query(
            TableName=table,
            KeyConditionExpression=query["expression"],
            ScanIndexForward=request.get("scanIndexForward", True),
            Limit=request["limit"],
            **expression_args(query),
            **extra,
        )
        return {
            "items": [unmarshal(item) for item in reply["Items"]],
            "nextToken": token(reply.get("LastEvaluatedKey")),
        }

    def Scan(self, table, request):
        extra = (
            {"ExclusiveStartKey": json.loads(base64.b64decode(request["nextToken"]))}
            if request.get("nextToken")
            else {}
        )
        reply = self.client.scan(TableName=table, Limit=request["limit"], **extra)
        return {
            "items": [unmarshal(item) for item in reply["Items"]],
            "nextToken": token(reply.get("LastEvaluatedKey")),
        }


@pytest.fixture
def api(aws):
    import boto3

    client = boto3.client("dynamodb", region_name=aws)
    client.create_table(
        TableName=TABLES["devices"],
        KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName=TABLES["telemetry"],
        KeySchema=[
            {"AttributeName": "device_id", "KeyType": "HASH"},
            {"AttributeName": "timestamp", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "device_id", "AttributeType": "S"},
            {"AttributeName": "timestamp", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return Api(client)


def registered(api, device_id=DEVICE_ID):
    return api.call(
        "Mutation",
        "upsertDevice",
        input={"device_id": device_id, "owner": "ana@example.com", "location": "lab", "certificate_id": "c1"},
    )


def presence(status, timestamp, version, session="s1", reason=None):
    from common.presence import Presence

    return Presence(DEVICE_ID, status, timestamp, version, session, reason).mutation_input()


def test_upsert_registers_and_never_touches_presence(api):
    first = registered(api)
    assert first == {
        "device_id": DEVICE_ID,
        "owner": "ana@example.com",
        "location": "lab",
        "certificate_id": "c1",
        "registered_at": NOW_MS,
    }
    api.call("Mutation", "updateDeviceStatus", input=presence("connected", NOW_MS, 1))

    again = api.call(
        "Mutation",
        "upsertDevice",
        input={"device_id": DEVICE_ID, "owner": "bo@example.com", "location": None, "certificate_id": "c2"},
    )

    assert (again["owner"], again["location"], again["certificate_id"], again["registered_at"]) == (
        "bo@example.com",
        None,
        "c2",
        NOW_MS,
    )
    assert (again["status"], again["last_seen"]) == ("connected", NOW_MS)
    assert api.call("Query", "getDevice", device_id=DEVICE_ID) == again
    assert api.call("Query", "getDevice", device_id="000000000000") is None


def test_presence_events_apply_in_order_whatever_order_they_arrive_in(api):
    registered(api)
    t0 = NOW_MS

    def apply(event):
        try:
            return api.call("Mutation", "updateDeviceStatus", input=event)["status"]
        except ConditionalCheckFailed:
            return "refused"

    assert apply(presence("connected", t0, 3, reason=None)) == "connected"
    assert apply(presence("connected", t0, 3)) == "refused", "duplicate"
    assert apply(presence("disconnected", t0 + 60_000, 3, reason="CONNECTION_LOST")) == "disconnected"
    assert apply(presence("connected", t0, 3)) == "refused", "older, arrived late"
    # A quick reconnect whose connect is stamped earlier than the disconnect (+/- 2 min accuracy):
    # inside the window the version number decides.
    assert apply(presence("connected", t0 + 59_000, 4, session="s2")) == "connected"
    assert apply(presence("disconnected", t0 + 61_000, 3, reason="DUPLICATE_CLIENTID")) == "refused"
    device = api.call("Query", "getDevice", device_id=DEVICE_ID)
    assert (device["status"], device["session_id"], device["presence_sequence"]) == ("connected", "s2", 8)
    # After a long silence the version number restarts at 0; time decides outside the window.
    assert apply(presence("disconnected", t0 + 600_000, 4, session="s2")) == "disconnected"
    assert apply(presence("connected", t0 + 2 * 3_600_000, 0, session="s3")) == "connected"
    assert apply(presence("disconnected", t0 + 600_000 + WINDOW + 1, 9)) == "refused", "more than a window older"


def test_presence_never_overwrites_revoked_nor_creates_devices(api):
    registered(api)
    api.call("Mutation", "updateDeviceStatus", input=presence("connected", NOW_MS, 1))

    revoked = api.call("Mutation", "revokeDevice", device_id=DEVICE_ID, timestamp=NOW_MS + 5)
    again = api.call("Mutation", "revokeDevice", device_id=DEVICE_ID, timestamp=NOW_MS + 9)

    assert (revoked["status"], revoked["revoked_at"]) == ("revoked", NOW_MS + 5)
    assert again == revoked
    for event in (presence("disconnected", NOW_MS + 10, 1), presence("connected", NOW_MS + 7_200_000, 0)):
        with pytest.raises(ConditionalCheckFailed):
            api.call("Mutation", "updateDeviceStatus", input=event)
        with pytest.raises(ConditionalCheckFailed):
            api.call("Mutation", "markNotified", input=event)
    assert api.call("Query", "getDevice", device_id=DEVICE_ID)["status"] == "revoked"
    with pytest.raises(ConditionalCheckFailed):
        api.call("Mutation", "revokeDevice", device_id="000000000000", timestamp=NOW_MS)
    with pytest.raises(ConditionalCheckFailed):
        api.call(
            "Mutation", "updateDeviceStatus", input={**presence("connected", NOW_MS, 1), "device_id": "000000000000"}
        )
    assert api.call("Query", "getDevice", device_id="000000000000") is None


def test_a_revoked_device_is_readmitted_only_with_another_certificate(api):
    registered(api)
    stored = api.call("Query", "getDevice", device_id=DEVICE_ID)["certificate_id"]
    api.call("Mutation", "revokeDevice", device_id=DEVICE_ID, timestamp=NOW_MS, certificate_id="old-cert")
    api.call("Mutation", "revokeDevice", device_id=DEVICE_ID, timestamp=NOW_MS + 1, certificate_id="other")

    with pytest.raises(ConditionalCheckFailed):  # the certificate that was revoked
        api.call("Mutation", "readmitDevice", device_id=DEVICE_ID, certificate_id="old-cert")
    readmitted = api.call("Mutation", "readmitDevice", device_id=DEVICE_ID, certificate_id="new-cert")

    assert (readmitted["status"], readmitted["certificate_id"]) == ("disconnected", "new-cert")
    assert "revoked_at" not in readmitted and "revoked_certificate_id" not in readmitted
    assert readmitted["owner"] == api.call("Query", "getDevice", device_id=DEVICE_ID)["owner"]
    assert stored != "new-cert"
    # Presence events apply again; a device that is not revoked is not readmitted.
    assert api.call("Mutation", "updateDeviceStatus", input=presence("connected", NOW_MS + 5, 1))["status"] == (
        "connected"
    )
    with pytest.raises(ConditionalCheckFailed):
        api.call("Mutation", "readmitDevice", device_id=DEVICE_ID, certificate_id="newer-cert")
    with pytest.raises(ConditionalCheckFailed):
        api.call("Mutation", "readmitDevice", device_id="000000000000", certificate_id="new-cert")


def test_without_a_revoked_certificate_the_stored_one_counts_as_revoked(api):
    registered(api)
    stored = api.call("Query", "getDevice", device_id=DEVICE_ID)["certificate_id"]
    revoked = api.call("Mutation", "revokeDevice", device_id=DEVICE_ID, timestamp=NOW_MS, certificate_id=None)
    assert revoked["revoked_certificate_id"] is None

    with pytest.raises(ConditionalCheckFailed):
        api.call("Mutation", "readmitDevice", device_id=DEVICE_ID, certificate_id=stored)
    readmitted = api.call("Mutation", "readmitDevice", device_id=DEVICE_ID, certificate_id="fresh")
    assert readmitted["status"] == "disconnected"


def test_mark_notified_reports_the_status_announced_before(api):
    registered(api)

    def mark(event):
        try:
            result = api.call("Mutation", "markNotified", input=event)
        except ConditionalCheckFailed:
            return "refused"
        return (result["notified_previous_status"], result["notified_status"])

    assert mark(presence("connected", NOW_MS, 3)) == (None, "connected")
    assert mark(presence("connected", NOW_MS, 3)) == "refused"
    assert mark(presence("disconnected", NOW_MS + 1_000, 3)) == ("connected", "disconnected")
    # Quick reconnect, events in reverse order: the new session's connect first, then nothing to say.
    assert mark(presence("connected", NOW_MS + 2_000, 5)) == ("disconnected", "connected")
    assert mark(presence("disconnected", NOW_MS + 3_000, 4)) == "refused"
    assert mark(presence("connected", NOW_MS + 4_000, 6)) == ("connected", "connected")
    device = api.call("Query", "getDevice", device_id=DEVICE_ID)
    assert "status" not in device, "markNotified leaves the status to CoreStatus"


def test_telemetry_by_device_is_newest_first_within_bounds_and_pages(api):
    for offset in range(5):
        stored = api.call(
            "Mutation",
            "createTelemetry",
            input={
                "device_id": DEVICE_ID,
                "timestamp": NOW_MS - offset * 1000,
                "temperature": 20.5 + offset,
                "humidity": 40,
                "owner": "ana@example.com",
                "expires_at": (NOW_MS - offset * 1000) // 1000 + 30 * 86400,
            },
        )
        assert stored["temperature"] == 20.5 + offset
    api.call(
        "Mutation",
        "createTelemetry",
        input={"device_id": "000000000001", "timestamp": NOW_MS, "temperature": 1, "humidity": 1},
    )

    everything = api.call("Query", "telemetryByDevice", device_id=DEVICE_ID)
    assert [item["timestamp"] for item in everything["items"]] == [NOW_MS - k * 1000 for k in range(5)]
    assert everything["nextToken"] is None
    bounded = api.call(
        "Query", "telemetryByDevice", device_id=DEVICE_ID, **{"from": NOW_MS - 3000, "to": NOW_MS - 1000}
    )
    assert [item["timestamp"] for item in bounded["items"]] == [NOW_MS - 1000, NOW_MS - 2000, NOW_MS - 3000]
    page = api.call("Query", "telemetryByDevice", device_id=DEVICE_ID, limit=2)
    assert [item["timestamp"] for item in page["items"]] == [NOW_MS, NOW_MS - 1000] and page["nextToken"]
    rest = api.call("Query", "telemetryByDevice", device_id=DEVICE_ID, limit=10, nextToken=page["nextToken"])
    assert [item["timestamp"] for item in rest["items"]] == [NOW_MS - k * 1000 for k in range(2, 5)]
    item = everything["items"][0]
    assert set(item) == {"device_id", "timestamp", "temperature", "humidity", "owner", "expires_at"}


def test_list_devices_pages(api):
    for index in range(3):
        registered(api, f"00000000000{index}")

    first = api.call("Query", "listDevices", limit=2)
    rest = api.call("Query", "listDevices", nextToken=first["nextToken"])

    assert len(first["items"]) == 2 and first["nextToken"]
    assert {d["device_id"] for d in first["items"] + rest["items"]} == {f"00000000000{i}" for i in range(3)}
