"""The helpers every function zip carries: settings cache, GraphQL client, logger, presence parsing."""

import io
import json

import pytest
from common import presence
from common.graphql import AUTH_API_KEY
from common.graphql import AUTH_IAM
from common.graphql import ConditionFailed
from common.graphql import GraphQLClient
from common.graphql import GraphQLError
from common.graphql import auth_mode_from_environment
from common.logs import JsonLogger
from common.logs import describe
from common.settings import SettingsCache
from common.settings import SettingsError
from common.validation import BadEvent

from .conftest import SETTINGS_PATH
from .conftest import load_event


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_settings_are_read_decrypted_once_and_refreshed_after_the_ttl(ssm):
    name = SETTINGS_PATH + "CUSTOM_DISCORD_ENDPOINT"
    ssm.put_parameter(Name=name, Value="https://discord.com/api/webhooks/1/a", Type="SecureString")
    ssm.put_parameter(Name=SETTINGS_PATH + "nested/IGNORED", Value="x", Type="String")
    clock = Clock()
    settings = SettingsCache(ssm, SETTINGS_PATH.rstrip("/"), ttl_seconds=300, clock=clock)

    assert settings.get("CUSTOM_DISCORD_ENDPOINT") == "https://discord.com/api/webhooks/1/a"
    assert settings.get("IGNORED") is None
    ssm.put_parameter(Name=name, Value="https://discord.com/api/webhooks/1/b", Type="SecureString", Overwrite=True)
    clock.now += 299
    assert settings.get("CUSTOM_DISCORD_ENDPOINT").endswith("/a")
    clock.now += 1
    assert settings.get("CUSTOM_DISCORD_ENDPOINT").endswith("/b")


def test_settings_read_every_page(ssm):
    for index in range(23):
        ssm.put_parameter(Name=f"{SETTINGS_PATH}SETTING_{index:02d}", Value=str(index), Type="SecureString")

    values = SettingsCache(ssm, SETTINGS_PATH).all()

    assert len(values) == 23 and values["SETTING_22"] == "22"


def test_a_required_setting_that_is_missing_is_an_error(ssm):
    with pytest.raises(SettingsError, match=f"{SETTINGS_PATH}CUSTOM_LAMBDA_GRAPHQL_ENDPOINT"):
        SettingsCache(ssm, SETTINGS_PATH).require("CUSTOM_LAMBDA_GRAPHQL_ENDPOINT")


@pytest.mark.parametrize("path", ["", "amplify/shared/x/"])
def test_the_settings_path_must_be_absolute(ssm, path):
    with pytest.raises(SettingsError, match="IOTFLEET_SETTINGS_PATH"):
        SettingsCache.from_environment(ssm, {"IOTFLEET_SETTINGS_PATH": path})


@pytest.mark.parametrize(
    "value, mode",
    [(None, AUTH_IAM), ("", AUTH_IAM), ("iam", AUTH_IAM), ("AWS_IAM", AUTH_IAM), ("api_key", AUTH_API_KEY)],
)
def test_auth_mode(value, mode):
    environ = {} if value is None else {"IOTFLEET_GRAPHQL_AUTH": value}
    assert auth_mode_from_environment(environ) == mode


def test_an_unknown_auth_mode_is_refused():
    with pytest.raises(ValueError, match="IOTFLEET_GRAPHQL_AUTH"):
        auth_mode_from_environment({"IOTFLEET_GRAPHQL_AUTH": "OPENID_CONNECT"})


class StaticSettings:
    def __init__(self, values):
        self.values = values

    def require(self, name):
        return self.values[name]


@pytest.mark.parametrize(
    "errors, error_type",
    [
        ([{"errorType": "DynamoDB:ConditionalCheckFailedException", "message": "failed"}], ConditionFailed),
        ([{"errorType": "MappingTemplate", "message": "bad template"}], GraphQLError),
        ([{"message": "Validation error of type FieldUndefined"}], GraphQLError),
    ],
)
def test_graphql_errors_are_classified(appsync, errors, error_type):
    appsync.answers["GetDevice"] = {"data": None, "errors": errors}
    settings = StaticSettings({"CUSTOM_LAMBDA_GRAPHQL_ENDPOINT": appsync.url, "CUSTOM_LAMBDA_GRAPHQL_KEY": "k"})
    client = GraphQLClient(settings, AUTH_API_KEY)

    with pytest.raises(error_type) as raised:
        client.execute(
            "query GetDevice($device_id: ID!) { getDevice(device_id: $device_id) { device_id } }", {}, "GetDevice"
        )
    assert raised.value.errors == errors
    assert not isinstance(raised.value, ConditionFailed) or error_type is ConditionFailed


def test_log_lines_are_valid_json_whatever_the_fields():
    stream = io.StringIO()
    logger = JsonLogger("CoreTelemetry", stream=stream)

    logger.warning("telemetry_rejected", value=float("nan"), nested={"x": float("-inf")}, level="spoofed")

    line = json.loads(stream.getvalue())
    assert (line["level"], line["event_level"]) == ("WARNING", "spoofed")
    assert (line["value"], line["nested"]) == ("nan", {"x": "-inf"})


def test_describe_is_short_and_typed():
    assert describe("4827E2E59190") == "str:'4827E2E59190'"
    assert describe(True) == "bool:True"
    assert len(describe("x" * 10_000)) < 140


def test_presence_order_values():
    event = presence.parse_presence(load_event("presence_disconnected"), now_ms=1_733_400_000_000)

    assert (event.status, event.version_number, event.sequence) == ("disconnected", 3, 7)
    values = event.mutation_input()
    assert values["window_end"] - values["window_start"] == 2 * presence.ORDER_WINDOW_MS


def test_presence_of_an_unknown_type_is_a_bad_event():
    with pytest.raises(BadEvent, match="eventType"):
        presence.parse_presence({**load_event("presence_connected"), "eventType": "unsubscribed"}, 1_733_400_000_000)
