import json

import boto3
import pytest

from ansible_collections.iotfleet.aws.plugins.modules import amplify_secret

APP_ID = "d1x2y3z4w5v6u7"
PREFIX = f"/amplify/shared/{APP_ID}"
SECRET = "the-secret"
OTHER_SECRET = "the-other-secret"


@pytest.fixture
def ssm(aws):
    return boto3.client("ssm", region_name=aws)


def stored(ssm, name):
    parameter = ssm.get_parameter(Name=f"{PREFIX}/{name}", WithDecryption=True)["Parameter"]
    return parameter["Value"], parameter["Type"], parameter["Version"]


def present(secrets, **extra):
    return {"app_id": APP_ID, "secrets": secrets, **extra}


def test_creates_secure_strings_on_the_amplify_path_and_returns_no_value(aws, ssm, run_module):
    secrets = {"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET, "CUSTOM_DISCORD_ENDPOINT": OTHER_SECRET}

    result = run_module(amplify_secret, present(secrets), diff=True)

    assert result["changed"] is True
    assert result["changed_secrets"] == ["CUSTOM_DISCORD_ENDPOINT", "CUSTOM_LAMBDA_GRAPHQL_KEY"]
    assert stored(ssm, "CUSTOM_LAMBDA_GRAPHQL_KEY") == (SECRET, "SecureString", 1)
    assert stored(ssm, "CUSTOM_DISCORD_ENDPOINT") == (OTHER_SECRET, "SecureString", 1)
    assert result["parameters"] == [
        {
            "secret": "CUSTOM_DISCORD_ENDPOINT",
            "name": f"{PREFIX}/CUSTOM_DISCORD_ENDPOINT",
            "type": "SecureString",
            "version": 1,
            "key_id": "alias/aws/ssm",
        },
        {
            "secret": "CUSTOM_LAMBDA_GRAPHQL_KEY",
            "name": f"{PREFIX}/CUSTOM_LAMBDA_GRAPHQL_KEY",
            "type": "SecureString",
            "version": 1,
            "key_id": "alias/aws/ssm",
        },
    ]
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["CUSTOM_LAMBDA_GRAPHQL_KEY"] == {
        "value": "<hidden, changed>",
        "key_id": "alias/aws/ssm",
    }
    text = json.dumps(result)
    assert SECRET not in text and OTHER_SECRET not in text


def test_same_value_is_unchanged_and_writes_no_version(aws, ssm, run_module):
    run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET}))

    result = run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET}), diff=True)

    assert result["changed"] is False
    assert result["changed_secrets"] == []
    assert stored(ssm, "CUSTOM_LAMBDA_GRAPHQL_KEY")[2] == 1
    assert result["diff"]["before"] == result["diff"]["after"]
    assert SECRET not in json.dumps(result)


def test_changed_value_overwrites_and_diff_hides_both_values(aws, ssm, run_module):
    run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET, "CUSTOM_DISCORD_ENDPOINT": "same"}))

    result = run_module(
        amplify_secret,
        present({"CUSTOM_LAMBDA_GRAPHQL_KEY": OTHER_SECRET, "CUSTOM_DISCORD_ENDPOINT": "same"}),
        diff=True,
    )

    assert result["changed"] is True
    assert result["changed_secrets"] == ["CUSTOM_LAMBDA_GRAPHQL_KEY"]
    assert stored(ssm, "CUSTOM_LAMBDA_GRAPHQL_KEY") == (OTHER_SECRET, "SecureString", 2)
    assert stored(ssm, "CUSTOM_DISCORD_ENDPOINT")[2] == 1
    assert result["diff"]["before"]["CUSTOM_LAMBDA_GRAPHQL_KEY"]["value"] == "<hidden>"
    assert result["diff"]["after"]["CUSTOM_LAMBDA_GRAPHQL_KEY"]["value"] == "<hidden, changed>"
    assert result["diff"]["after"]["CUSTOM_DISCORD_ENDPOINT"]["value"] == "<hidden>"
    text = json.dumps(result)
    assert SECRET not in text and OTHER_SECRET not in text


def test_check_mode_writes_nothing(aws, ssm, run_module):
    run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET}))

    result = run_module(
        amplify_secret,
        present({"CUSTOM_LAMBDA_GRAPHQL_KEY": OTHER_SECRET, "CUSTOM_DISCORD_ENDPOINT": SECRET}),
        check_mode=True,
    )

    assert result["changed"] is True
    assert result["changed_secrets"] == ["CUSTOM_DISCORD_ENDPOINT", "CUSTOM_LAMBDA_GRAPHQL_KEY"]
    assert stored(ssm, "CUSTOM_LAMBDA_GRAPHQL_KEY") == (SECRET, "SecureString", 1)
    assert ssm.describe_parameters()["Parameters"][0]["Name"] == f"{PREFIX}/CUSTOM_LAMBDA_GRAPHQL_KEY"
    assert len(ssm.describe_parameters()["Parameters"]) == 1


def test_plain_string_with_the_same_value_becomes_a_secure_string(aws, ssm, run_module):
    ssm.put_parameter(Name=f"{PREFIX}/CUSTOM_LAMBDA_GRAPHQL_KEY", Value=SECRET, Type="String")

    result = run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET}), diff=True)

    assert result["changed"] is True
    assert stored(ssm, "CUSTOM_LAMBDA_GRAPHQL_KEY") == (SECRET, "SecureString", 2)
    assert result["diff"]["after"]["CUSTOM_LAMBDA_GRAPHQL_KEY"]["value"] == "<hidden>"


def test_other_kms_key_rewrites_the_secret(aws, ssm, run_module):
    key_id = boto3.client("kms", region_name=aws).create_key()["KeyMetadata"]["KeyId"]
    run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET}))

    result = run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET}, key_id=key_id))

    assert result["changed"] is True
    assert result["parameters"][0]["key_id"] == key_id
    assert run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET}, key_id=key_id))["changed"] is False


def test_numbers_become_strings(aws, ssm, run_module):
    run_module(amplify_secret, present({"CUSTOM_PORT": 8443}))

    assert stored(ssm, "CUSTOM_PORT")[0] == "8443"
    assert run_module(amplify_secret, present({"CUSTOM_PORT": "8443"}))["changed"] is False


def test_absent_deletes_listed_secrets_only(aws, ssm, run_module):
    run_module(amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET, "CUSTOM_DISCORD_ENDPOINT": SECRET}))
    args = {"app_id": APP_ID, "names": ["CUSTOM_DISCORD_ENDPOINT", "CUSTOM_UNKNOWN"], "state": "absent"}

    check = run_module(amplify_secret, args, check_mode=True)
    assert check["changed"] is True
    assert len(ssm.describe_parameters()["Parameters"]) == 2

    result = run_module(amplify_secret, args, diff=True)

    assert result["changed"] is True
    assert result["changed_secrets"] == ["CUSTOM_DISCORD_ENDPOINT"]
    assert result["parameters"] == []
    assert result["diff"] == {
        "before": {"CUSTOM_DISCORD_ENDPOINT": {"value": "<hidden>", "key_id": "alias/aws/ssm"}},
        "after": {},
    }
    assert [p["Name"] for p in ssm.describe_parameters()["Parameters"]] == [f"{PREFIX}/CUSTOM_LAMBDA_GRAPHQL_KEY"]
    assert run_module(amplify_secret, args)["changed"] is False


@pytest.mark.parametrize(
    "args, message",
    [
        (present({"custom_key": SECRET}), "secrets: 'custom_key' is not a valid secret name"),
        (present({"CUSTOM/../KEY": SECRET}), "secrets: 'CUSTOM/../KEY' is not a valid secret name"),
        (present({"CUSTOM_KEY": ""}), "secrets.CUSTOM_KEY: the value is empty"),
        (present({"CUSTOM_KEY": ["a"]}), "secrets.CUSTOM_KEY: the value is a list, not a string"),
        (present({"CUSTOM_KEY": "x" * 4097}), "secrets.CUSTOM_KEY: the value is 4097 bytes"),
        ({"app_id": "d1/../x", "secrets": {"CUSTOM_KEY": SECRET}}, "app_id: 'd1/../x' is not an Amplify app id"),
        ({"app_id": APP_ID}, "secrets: required with state=present"),
        ({"app_id": APP_ID, "state": "absent"}, "names: required with state=absent"),
        ({"app_id": APP_ID, "names": ["lower"], "state": "absent"}, "names: 'lower' is not a valid secret name"),
        (present({"CUSTOM_KEY": SECRET}, state="absent", names=["CUSTOM_KEY"]), "secrets: not used with state=absent"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(aws, ssm, run_module, args, message):
    result = run_module(amplify_secret, args, expect_failure=True)

    assert message in result["msg"]
    assert SECRET not in json.dumps(result)
    assert ssm.describe_parameters()["Parameters"] == []


def test_bad_name_among_good_ones_writes_none_of_them(aws, ssm, run_module):
    result = run_module(
        amplify_secret, present({"CUSTOM_LAMBDA_GRAPHQL_KEY": SECRET, "bad-name": SECRET}), expect_failure=True
    )

    assert "'bad-name' is not a valid secret name" in result["msg"]
    assert ssm.describe_parameters()["Parameters"] == []
