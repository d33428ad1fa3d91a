import pytest

from ansible_collections.iotfleet.aws.plugins.modules import iot_topic_rule
from tests.unit.conftest import ACCOUNT_ID
from tests.unit.conftest import REGION

NAME = "iotfleet_telemetry"
SQL = "SELECT *, clientId() AS device_id, timestamp() AS timestamp FROM '+/telemetry'"
LAMBDA = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:CoreTelemetry"
OTHER_LAMBDA = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:DiscordWebhook"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/iot-rule-errors"
ERROR_ACTION = {"cloudwatchLogs": {"logGroupName": "/iot/rule-errors", "roleArn": ROLE}}


def rule_args(**overrides):
    args = {
        "name": NAME,
        "sql": SQL,
        "description": "telemetry to CoreTelemetry",
        "actions": [{"lambda": {"functionArn": LAMBDA}}],
        "error_action": ERROR_ACTION,
    }
    args.update(overrides)
    return args


def aws_rule(iot, name=NAME):
    return iot.get_topic_rule(ruleName=name)["rule"]


def rule_names(iot):
    return [r["ruleName"] for r in iot.list_topic_rules()["rules"]]


def test_creates_rule_and_returns_it(aws, iot, run_module):
    result = run_module(iot_topic_rule, rule_args())

    assert result["changed"] is True
    rule = aws_rule(iot)
    assert rule["sql"] == SQL
    assert rule["awsIotSqlVersion"] == "2016-03-23"
    assert rule["actions"] == [{"lambda": {"functionArn": LAMBDA}}]
    assert rule["errorAction"] == ERROR_ACTION
    assert rule["ruleDisabled"] is False
    assert result["rule"] == {
        "rule_name": NAME,
        "rule_arn": f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:rule/{NAME}",
        "sql": SQL,
        "aws_iot_sql_version": "2016-03-23",
        "description": "telemetry to CoreTelemetry",
        "actions": [{"lambda": {"functionArn": LAMBDA}}],
        "error_action": ERROR_ACTION,
        "rule_disabled": False,
    }


def test_second_run_is_unchanged(aws, iot, run_module):
    run_module(iot_topic_rule, rule_args())
    created_at = aws_rule(iot)["createdAt"]

    result = run_module(iot_topic_rule, rule_args(sql=f"  {SQL}\n"), diff=True)

    assert result["changed"] is False
    assert result["diff"]["before"] == result["diff"]["after"]
    assert aws_rule(iot)["createdAt"] == created_at  # moto's replace recreates the rule


def test_rule_without_error_action_or_description_is_idempotent(aws, iot, run_module):
    args = {"name": NAME, "sql": SQL, "actions": [{"lambda": {"functionArn": LAMBDA}}]}
    assert run_module(iot_topic_rule, args)["changed"] is True

    result = run_module(iot_topic_rule, args)

    assert result["changed"] is False
    assert result["rule"]["error_action"] == {}
    assert result["rule"]["description"] == ""


def test_check_mode_create_writes_nothing(aws, iot, run_module):
    result = run_module(iot_topic_rule, rule_args(), check_mode=True, diff=True)

    assert result["changed"] is True
    assert result["rule"] == {}
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["sql"] == SQL
    assert rule_names(iot) == []


@pytest.mark.parametrize(
    "change, aws_key, aws_value",
    [
        ({"sql": "SELECT * FROM '+/telemetry'"}, "sql", "SELECT * FROM '+/telemetry'"),
        ({"aws_iot_sql_version": "2015-10-08"}, "awsIotSqlVersion", "2015-10-08"),
        ({"description": "changed"}, "description", "changed"),
        (
            {"actions": [{"lambda": {"functionArn": LAMBDA}}, {"lambda": {"functionArn": OTHER_LAMBDA}}]},
            "actions",
            [{"lambda": {"functionArn": LAMBDA}}, {"lambda": {"functionArn": OTHER_LAMBDA}}],
        ),
        (
            {"actions": [{"lambda": {"functionArn": OTHER_LAMBDA}}]},
            "actions",
            [{"lambda": {"functionArn": OTHER_LAMBDA}}],
        ),
        (
            {"error_action": {"lambda": {"functionArn": OTHER_LAMBDA}}},
            "errorAction",
            {"lambda": {"functionArn": OTHER_LAMBDA}},
        ),
        ({"error_action": None}, "errorAction", {}),
    ],
)
def test_payload_change_replaces_rule(aws, iot, run_module, change, aws_key, aws_value):
    run_module(iot_topic_rule, rule_args())

    result = run_module(iot_topic_rule, rule_args(**change), diff=True)

    assert result["changed"] is True
    rule = aws_rule(iot)
    assert rule[aws_key] == aws_value
    assert result["diff"]["before"] != result["diff"]["after"]
    # Everything else is kept.
    untouched = {"sql": SQL, "description": "telemetry to CoreTelemetry", "ruleDisabled": False}
    for key, value in untouched.items():
        if key != aws_key:
            assert rule[key] == value
    assert run_module(iot_topic_rule, rule_args(**change))["changed"] is False


def test_check_mode_replace_writes_nothing(aws, iot, run_module):
    run_module(iot_topic_rule, rule_args())

    result = run_module(iot_topic_rule, rule_args(description="changed"), check_mode=True, diff=True)

    assert result["changed"] is True
    assert result["diff"]["before"]["description"] == "telemetry to CoreTelemetry"
    assert result["diff"]["after"]["description"] == "changed"
    assert aws_rule(iot)["description"] == "telemetry to CoreTelemetry"


def test_replace_keeps_the_rule_disabled(aws, iot, run_module):
    run_module(iot_topic_rule, rule_args(enabled=False))
    assert aws_rule(iot)["ruleDisabled"] is True

    result = run_module(iot_topic_rule, rule_args(enabled=False, description="changed"))

    assert result["changed"] is True
    assert aws_rule(iot)["ruleDisabled"] is True
    assert aws_rule(iot)["description"] == "changed"
    assert result["rule"]["rule_disabled"] is True


def test_disable_then_enable(aws, iot, run_module):
    run_module(iot_topic_rule, rule_args())
    created_at = aws_rule(iot)["createdAt"]

    result = run_module(iot_topic_rule, rule_args(enabled=False), diff=True)

    assert result["changed"] is True
    assert aws_rule(iot)["ruleDisabled"] is True
    assert result["rule"]["rule_disabled"] is True
    assert result["diff"]["before"]["enabled"] is True
    assert result["diff"]["after"]["enabled"] is False
    # Enabling and disabling do not go through ReplaceTopicRule (moto's replace recreates the rule).
    assert aws_rule(iot)["createdAt"] == created_at
    assert run_module(iot_topic_rule, rule_args(enabled=False))["changed"] is False

    result = run_module(iot_topic_rule, rule_args(enabled=True))

    assert result["changed"] is True
    assert aws_rule(iot)["ruleDisabled"] is False
    assert aws_rule(iot)["createdAt"] == created_at


def test_check_mode_disable_writes_nothing(aws, iot, run_module):
    run_module(iot_topic_rule, rule_args())

    result = run_module(iot_topic_rule, rule_args(enabled=False), check_mode=True)

    assert result["changed"] is True
    assert aws_rule(iot)["ruleDisabled"] is False


def test_keys_aws_adds_to_an_action_do_not_cause_a_change(aws, iot, run_module):
    republish = {"republish": {"topic": "alerts", "roleArn": ROLE}}
    iot.create_topic_rule(
        ruleName=NAME,
        topicRulePayload={
            "sql": SQL,
            "awsIotSqlVersion": "2016-03-23",
            # As AWS returns a republish action: with its default qos filled in.
            "actions": [{"republish": {"topic": "alerts", "roleArn": ROLE, "qos": 0}}],
        },
    )

    result = run_module(iot_topic_rule, {"name": NAME, "sql": SQL, "actions": [republish]})

    assert result["changed"] is False
    assert result["rule"]["actions"] == [{"republish": {"topic": "alerts", "roleArn": ROLE, "qos": 0}}]
    assert run_module(iot_topic_rule, {"name": NAME, "sql": SQL, "actions": [republish] * 2})["changed"] is True


def test_delete(aws, iot, run_module):
    run_module(iot_topic_rule, rule_args())

    result = run_module(iot_topic_rule, {"name": NAME, "state": "absent"}, diff=True)

    assert result["changed"] is True
    assert result["rule"] == {}
    assert result["diff"]["after"] == {}
    assert result["diff"]["before"]["sql"] == SQL
    assert rule_names(iot) == []


def test_check_mode_delete_writes_nothing(aws, iot, run_module):
    run_module(iot_topic_rule, rule_args())

    result = run_module(iot_topic_rule, {"name": NAME, "state": "absent"}, check_mode=True)

    assert result["changed"] is True
    assert rule_names(iot) == [NAME]


def test_delete_missing_rule_is_unchanged(aws, iot, run_module):
    iot.create_topic_rule(ruleName="other_rule", topicRulePayload={"sql": SQL, "actions": []})

    result = run_module(iot_topic_rule, {"name": NAME, "state": "absent"})

    assert result["changed"] is False
    assert result["rule"] == {}
    assert rule_names(iot) == ["other_rule"]


@pytest.mark.parametrize(
    "change, option, hint",
    [
        ({"name": "iotfleet-telemetry"}, "name", "must match"),
        ({"aws_iot_sql_version": "2020-01-01"}, "aws_iot_sql_version", "2015-10-08, 2016-03-23, beta"),
        ({"sql": "   "}, "sql", "must not be empty"),
        ({"sql": None}, "sql", "missing"),
        ({"actions": None}, "actions", "missing"),
        ({"actions": [{"lambda": {"functionarn": LAMBDA}}]}, "actions[0].lambda", "functionArn"),
        ({"actions": [{"nope": {}}]}, "actions[0]", "must be one of"),
        ({"actions": [{}]}, "actions[0]", "exactly one action type"),
        (
            {"actions": [{"lambda": {"functionArn": LAMBDA}, "sns": {"targetArn": "x", "roleArn": ROLE}}]},
            "actions[0]",
            "exactly one action type",
        ),
        (
            {"actions": [{"republish": {"topic": "t", "roleArn": ROLE, "qos": "high"}}]},
            "actions[0].republish.qos",
            "int",
        ),
        ({"error_action": {"lambda": {}}}, "error_action.lambda", "functionArn"),
    ],
)
def test_bad_input_fails_naming_the_option_before_any_write(aws, iot, run_module, change, option, hint):
    result = run_module(iot_topic_rule, rule_args(**change), expect_failure=True)

    assert option in result["msg"]
    assert hint in result["msg"]
    assert rule_names(iot) == []


def test_bad_update_leaves_the_rule_as_it_was(aws, iot, run_module):
    run_module(iot_topic_rule, rule_args())

    run_module(
        iot_topic_rule,
        rule_args(description="changed", actions=[{"lambda": {"arn": OTHER_LAMBDA}}]),
        expect_failure=True,
    )

    assert aws_rule(iot)["description"] == "telemetry to CoreTelemetry"
    assert aws_rule(iot)["actions"] == [{"lambda": {"functionArn": LAMBDA}}]
