"""The rule SQL subset the bridge executes: parsing, errors, evaluation with AWS IoT's semantics."""

import json

import pytest

from sandbox import rules_sql
from sandbox.rules_sql import Context
from sandbox.rules_sql import NotJson
from sandbox.rules_sql import SqlError

TELEMETRY_SQL = "SELECT *, clientId() AS device_id, timestamp() AS timestamp FROM '+/telemetry'"
PRESENCE_SQL = "SELECT *, clientId() AS device_id FROM '$aws/events/presence/+/+'"


def run(sql, payload, topic="4827E2E59190/telemetry", client_id="4827E2E59190", timestamp_ms=1732665600000):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return rules_sql.run(rules_sql.parse(sql), data, Context(topic, client_id, timestamp_ms))


def where(condition, payload):
    """True if the message passes `WHERE condition`."""
    return run(f"SELECT * FROM 'a/b' WHERE {condition}", payload, topic="a/b") is not None


def test_the_telemetry_rule_adds_device_id_and_timestamp():
    out = run(TELEMETRY_SQL, {"temperature": 21.5, "humidity": 40})
    assert out == {"temperature": 21.5, "humidity": 40, "device_id": "4827E2E59190", "timestamp": 1732665600000}


def test_the_presence_rule_keeps_the_event_and_adds_device_id():
    event = {"clientId": "AB", "eventType": "connected", "timestamp": 5, "versionNumber": 1}
    out = run(PRESENCE_SQL, event, topic="$aws/events/presence/connected/AB", client_id="AB")
    assert out == {**event, "device_id": "AB"}


def test_statement_parts():
    statement = rules_sql.parse(TELEMETRY_SQL)
    assert statement.topic_filter == "+/telemetry"
    assert statement.select_all
    assert [item.name for item in statement.items] == [None, "device_id", "timestamp"]
    assert statement.where is None


def test_keywords_and_functions_are_case_insensitive():
    out = run("select Temperature as t, CLIENTID() as c, Topic(1) as thing from 'x/y' where TRUE", {"Temperature": 3})
    assert out == {"t": 3, "c": "4827E2E59190", "thing": "4827E2E59190"}


def test_selected_fields_nested_and_default_names():
    payload = {"state": {"reported": {"x": 1}}, "a": 2}
    out = run("SELECT state.reported.x, a, clientId(), topic(), 42 FROM '#'", payload, topic="p/q")
    assert out == {"x": 1, "a": 2, "clientId": "4827E2E59190", "topic": "p/q", "_5": 42}


def test_quoted_field_names():
    out = run('SELECT "my-key"."x y" AS v FROM \'#\'', {"my-key": {"x y": 7}})
    assert out == {"v": 7}


def test_missing_fields_are_left_out():
    assert run("SELECT a, b.c AS d, a.b.c AS e FROM '#'", {"a": 1, "b": 5}) == {"a": 1}


def test_literals():
    out = run("SELECT 'it''s' AS s, 1.5 AS f, -3 AS n, 2e3 AS e, true AS t, false AS no, null AS z FROM '#'", {})
    assert out == {"s": "it's", "f": 1.5, "n": -3, "e": 2000.0, "t": True, "no": False, "z": None}


def test_topic_segments():
    out = run("SELECT topic(1) AS a, topic(3) AS c, topic(9) AS missing FROM '#'", {}, topic="x/y/z")
    assert out == {"a": "x", "c": "z"}


def test_without_a_client_id_clientid_is_undefined():
    assert run("SELECT clientId() AS c, 1 AS one FROM '#'", {}, client_id=None) == {"one": 1}


def test_a_later_item_overrides_a_payload_field():
    assert run(TELEMETRY_SQL, {"device_id": "spoofed", "timestamp": 1})["device_id"] == "4827E2E59190"


@pytest.mark.parametrize(
    ("condition", "payload", "passes"),
    [
        ("temperature > 30", {"temperature": 31}, True),
        ("temperature > 30", {"temperature": 30}, False),
        ("temperature >= 30", {"temperature": 30}, True),
        ("temperature < 30.5", {"temperature": 30}, True),
        ("temperature <= 29", {"temperature": 30}, False),
        ("temperature = 30", {"temperature": 30.0}, True),
        ("temperature <> 30", {"temperature": 30}, False),
        ("temperature != 31", {"temperature": 30}, True),
        ("name = 'a'", {"name": "a"}, True),
        ("name < 'b'", {"name": "a"}, True),
        ("temperature > 30", {"temperature": "31"}, True),  # a numeric string compares as a number
        ("temperature > 30", {"temperature": "hot"}, False),  # not a number: Undefined
        ("temperature > 30", {}, False),  # missing: Undefined
        ("NOT temperature > 30", {}, False),  # NOT Undefined is Undefined
        ("NOT temperature > 30", {"temperature": 3}, True),
        ("ok = true", {"ok": True}, True),
        ("ok = 1", {"ok": True}, False),  # different types: Undefined
        ("ok > false", {"ok": True}, False),  # booleans have no order
        ("a = 1 AND b = 2", {"a": 1, "b": 2}, True),
        ("a = 1 AND b = 2", {"a": 1, "b": 3}, False),
        ("a = 1 OR b = 2", {"a": 0, "b": 2}, True),
        ("a = 1 OR b = 2", {"b": 2}, False),  # Undefined OR true is Undefined in AWS IoT SQL
        ("a = 1 OR b = 2 AND c = 3", {"a": 1, "b": 0, "c": 0}, True),  # AND binds tighter
        ("(a = 1 OR b = 2) AND c = 3", {"a": 1, "b": 0, "c": 0}, False),
        ("NOT (a = 1 OR a = 2)", {"a": 3}, True),
        ("state.reported.x = -1", {"state": {"reported": {"x": -1}}}, True),
        ("topic(1) = 'a' AND clientId() = '4827E2E59190'", {}, True),
        ("flag", {"flag": True}, True),
        ("flag", {"flag": "yes"}, False),
        ("n = null", {"n": None}, True),
    ],
)
def test_where(condition, payload, passes):
    assert where(condition, payload) is passes


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("", "empty"),
        ("SELECT * FROM", "quoted topic filter"),
        ("SELECT * FROM topic", "quoted topic filter"),
        ("SELECT FROM 'a'", "a field, a literal or a function"),
        ("SELECT * 'a'", "expected FROM at character 10"),
        ("SELECT a FROM 'a' WHERE", "at the end of the statement"),
        ("SELECT a FROM 'a' WHERE a >", "at the end of the statement"),
        ("SELECT upper(a) FROM 'a'", "unsupported function upper() at character 8"),
        ("SELECT get(a, 0) FROM 'a'", "unsupported function get()"),
        ("SELECT a + 1 FROM 'a'", "unexpected character '+' at character 10"),
        ("SELECT a FROM 'a' GROUP BY a", "the end of the statement"),
        ("SELECT a FROM 'a' WHERE 1 < a < 3", "cannot be chained"),
        ("SELECT topic(0) FROM 'a'", "topic(n) needs a whole number"),
        ("SELECT topic('x') FROM 'a'", "topic(n) needs a whole number"),
        ("SELECT topic(1, 2) FROM 'a'", "at most one argument"),
        ("SELECT clientId(1) FROM 'a'", "takes no arguments"),
        ("SELECT a AS 'b' FROM 'a'", "a name after AS"),
        ("SELECT a, b AS a FROM 'x'", "'a' is used more than once"),
        ("SELECT 'abc FROM 'a'", "unterminated quoted text at character 20"),
        ("SELECT a FROM 'a/#/b'", "'#' must be a whole last level"),
        ("SELECT a FROM 'a/b+'", "'+' must be a whole level"),
        ("SELECT a FROM ''", "topic filter is empty"),
        ("SELECT a.* FROM 'x'", "a field name after '.'"),
        ("SELECT a, * AS b FROM 'x'", "expected FROM"),
        ("SELECT a FROM 'x' WHERE * = 1", "only supported alone"),
        ("SELECT [a] FROM 'x'", "unexpected character '['"),
        ("SELECT (a FROM 'x'", "expected ')'"),
        ("DELETE FROM 'x'", "expected SELECT"),
    ],
)
def test_errors_say_what_and_where(sql, message):
    with pytest.raises(SqlError) as caught:
        rules_sql.parse(sql)
    assert message in str(caught.value)


def test_select_star_needs_a_json_object():
    statement = rules_sql.parse(TELEMETRY_SQL)
    for payload, kind in ((b"\xff\x00binary", "not JSON"), (b"[1, 2]", "JSON array"), (b"17", "JSON number")):
        with pytest.raises(NotJson, match=kind):
            rules_sql.run(statement, payload, Context("a/telemetry", "a", 1))


def test_selected_items_on_a_non_json_payload_only_keep_what_does_not_need_it():
    out = run("SELECT temperature, topic() AS t FROM '#'", b"not json", topic="x/y")
    assert out == {"t": "x/y"}


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("+/telemetry", "4827E2E59190/telemetry", True),
        ("+/telemetry", "a/b/telemetry", False),
        ("+/telemetry", "a/downlink", False),
        ("$aws/events/presence/+/+", "$aws/events/presence/connected/AB", True),
        ("$aws/events/presence/+/+", "$aws/events/presence/connected", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("#", "$aws/things/x/shadow/get", False),
        ("+/shadow", "$aws/shadow", False),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
    ],
)
def test_topic_matches(topic_filter, topic, matches):
    assert rules_sql.topic_matches(topic_filter, topic) is matches
