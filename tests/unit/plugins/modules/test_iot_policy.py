import json

import pytest

from ansible_collections.iotfleet.aws.plugins.modules import iot_policy
from tests.unit.conftest import ACCOUNT_ID
from tests.unit.conftest import REGION

NAME = "iotfleet_device"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT_ID}"


def device_policy(actions=("iot:Publish", "iot:Receive")):
    """The seed's device policy shape, with the policy variables AWS resolves per connection."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{ARN}:client/${{iot:Connection.Thing.ThingName}}",
            },
            {
                "Effect": "Allow",
                "Action": list(actions),
                "Resource": [
                    f"{ARN}:topic/${{iot:Connection.Thing.ThingName}}/telemetry",
                    f"{ARN}:topic/${{iot:Connection.Thing.ThingName}}/downlink",
                ],
            },
        ],
    }


def aws_document(iot, name=NAME):
    return json.loads(iot.get_policy(policyName=name)["policyDocument"])


def versions(iot, name=NAME):
    return iot.list_policy_versions(policyName=name)["policyVersions"]


def create_certificate_with(iot, name=NAME):
    cert_arn = iot.create_keys_and_certificate(setAsActive=True)["certificateArn"]
    iot.attach_policy(policyName=name, target=cert_arn)
    return cert_arn


def test_creates_policy_and_keeps_policy_variables(aws, iot, run_module):
    result = run_module(iot_policy, {"name": NAME, "policy": device_policy()})

    assert result["changed"] is True
    assert aws_document(iot) == device_policy()
    raw = iot.get_policy(policyName=NAME)["policyDocument"]
    assert "${iot:Connection.Thing.ThingName}/telemetry" in raw
    policy = result["policy"]
    assert policy == {
        "name": NAME,
        "arn": f"{ARN}:policy/{NAME}",
        "default_version_id": "1",
        "document": device_policy(),
        "version_count": 1,
    }


def test_second_run_is_unchanged_whatever_the_formatting(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})
    # Same document as a JSON string with other key order and white space.
    document = device_policy()
    text = json.dumps(dict(reversed(list(document.items()))), indent=4)

    result = run_module(iot_policy, {"name": NAME, "policy": text})

    assert result["changed"] is False
    assert len(versions(iot)) == 1
    assert result["policy"]["default_version_id"] == "1"


def test_check_mode_create_writes_nothing(aws, iot, run_module):
    result = run_module(iot_policy, {"name": NAME, "policy": device_policy()}, check_mode=True, diff=True)

    assert result["changed"] is True
    assert result["policy"] == {}
    assert result["diff"] == {"before": {}, "after": device_policy()}
    assert iot.list_policies()["policies"] == []


def test_update_creates_default_version_and_diff_shows_documents(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})
    updated = device_policy(actions=("iot:Publish",))

    result = run_module(iot_policy, {"name": NAME, "policy": updated}, diff=True)

    assert result["changed"] is True
    assert result["diff"] == {"before": device_policy(), "after": updated}
    assert aws_document(iot) == updated
    assert result["policy"]["default_version_id"] == "2"
    assert result["policy"]["version_count"] == 2
    assert result["policy"]["document"] == updated
    assert run_module(iot_policy, {"name": NAME, "policy": updated})["changed"] is False


def test_single_string_action_differs_from_list_of_one(aws, iot, run_module):
    document = device_policy()
    run_module(iot_policy, {"name": NAME, "policy": document})
    document["Statement"][0]["Action"] = ["iot:Connect"]

    result = run_module(iot_policy, {"name": NAME, "policy": document})

    assert result["changed"] is True
    assert aws_document(iot)["Statement"][0]["Action"] == ["iot:Connect"]


def test_check_mode_update_writes_nothing(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})
    updated = device_policy(actions=("iot:Receive",))

    result = run_module(iot_policy, {"name": NAME, "policy": updated}, check_mode=True, diff=True)

    assert result["changed"] is True
    assert result["diff"]["after"] == updated
    assert aws_document(iot) == device_policy()
    assert len(versions(iot)) == 1


def test_seven_updates_keep_at_most_five_versions_latest_default(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})

    for n in range(7):
        document = device_policy(actions=[f"iot:Publish{n}"])
        result = run_module(iot_policy, {"name": NAME, "policy": document})
        assert result["changed"] is True
        assert len(versions(iot)) <= 5

    remaining = versions(iot)
    assert len(remaining) == 5
    # Versions 1-3 (the oldest) were deleted; 8 is the last one and the default.
    assert sorted(int(v["versionId"]) for v in remaining) == [4, 5, 6, 7, 8]
    assert [v["versionId"] for v in remaining if v["isDefaultVersion"]] == ["8"]
    assert aws_document(iot) == device_policy(actions=["iot:Publish6"])
    assert result["policy"]["version_count"] == 5
    assert result["policy"]["default_version_id"] == "8"


def test_never_deletes_the_default_version_even_when_it_is_the_oldest(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})
    for n in range(4):
        iot.create_policy_version(
            policyName=NAME, policyDocument=json.dumps(device_policy(actions=[f"x:{n}"])), setAsDefault=False
        )
    assert len(versions(iot)) == 5  # version 1 is the oldest and the default

    result = run_module(iot_policy, {"name": NAME, "policy": device_policy(actions=["iot:New"])})

    remaining = {v["versionId"]: v["isDefaultVersion"] for v in versions(iot)}
    assert "1" in remaining and "2" not in remaining
    assert remaining["6"] is True
    assert result["policy"]["version_count"] == 5


def test_delete_unattached_policy_with_versions(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})
    run_module(iot_policy, {"name": NAME, "policy": device_policy(actions=["iot:Publish"])})

    result = run_module(iot_policy, {"name": NAME, "state": "absent"}, diff=True)

    assert result["changed"] is True
    assert result["policy"] == {}
    assert result["diff"] == {"before": device_policy(actions=["iot:Publish"]), "after": {}}
    assert iot.list_policies()["policies"] == []


def test_delete_missing_policy_is_unchanged(aws, iot, run_module):
    result = run_module(iot_policy, {"name": NAME, "state": "absent"})

    assert result["changed"] is False
    assert result["policy"] == {}


def test_delete_attached_policy_without_force_fails_and_lists_targets(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})
    cert_arn = create_certificate_with(iot)

    result = run_module(iot_policy, {"name": NAME, "state": "absent"}, expect_failure=True)

    assert cert_arn in result["msg"]
    assert "force: true" in result["msg"]
    assert result["targets"] == [cert_arn]
    assert aws_document(iot) == device_policy()
    assert iot.list_targets_for_policy(policyName=NAME)["targets"] == [cert_arn]


def test_check_mode_forced_delete_writes_nothing(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})
    cert_arn = create_certificate_with(iot)

    result = run_module(iot_policy, {"name": NAME, "state": "absent", "force": True}, check_mode=True)

    assert result["changed"] is True
    assert iot.list_targets_for_policy(policyName=NAME)["targets"] == [cert_arn]


def test_delete_attached_policy_with_force_detaches_then_deletes(aws, iot, run_module):
    run_module(iot_policy, {"name": NAME, "policy": device_policy()})
    run_module(iot_policy, {"name": NAME, "policy": device_policy(actions=["iot:Publish"])})
    cert_arn = create_certificate_with(iot)
    group_arn = iot.create_thing_group(thingGroupName="fleet")["thingGroupArn"]
    iot.attach_policy(policyName=NAME, target=group_arn)

    result = run_module(iot_policy, {"name": NAME, "state": "absent", "force": True})

    assert result["changed"] is True
    assert iot.list_policies()["policies"] == []
    assert iot.list_attached_policies(target=cert_arn)["policies"] == []
    assert iot.list_attached_policies(target=group_arn)["policies"] == []
    assert run_module(iot_policy, {"name": NAME, "state": "absent", "force": True})["changed"] is False


@pytest.mark.parametrize(
    "args, option, hint",
    [
        ({"name": "bad name!", "policy": {"Version": "2012-10-17"}}, "name", "must match"),
        ({"name": NAME, "policy": '{"Version": "2012-10-17",'}, "policy", "is not valid JSON"),
        ({"name": NAME, "policy": "[1, 2]"}, "policy", "JSON object"),
        ({"name": NAME}, "policy", "missing"),
        ({"name": NAME, "policy": None}, "policy", "missing"),
    ],
)
def test_bad_input_fails_naming_the_option_before_any_write(aws, iot, run_module, args, option, hint):
    result = run_module(iot_policy, args, expect_failure=True)

    assert option in result["msg"]
    assert hint in result["msg"]
    assert iot.list_policies()["policies"] == []


def test_invalid_json_message_says_what_to_pass(aws, run_module):
    result = run_module(iot_policy, {"name": NAME, "policy": "Version: 2012"}, expect_failure=True)

    assert result["msg"].startswith("policy: 'Version: 2012' is not valid JSON: Expecting value")
    assert result["msg"].endswith("pass a JSON document or a YAML mapping")
