import pytest

from ansible_collections.iotfleet.aws.plugins.modules import iot_thing
from tests.unit.conftest import ACCOUNT_ID
from tests.unit.conftest import REGION

THING = "4827E2E59190"


def thing_names(iot):
    return sorted(thing["thingName"] for thing in iot.list_things()["things"])


def groups_of(iot, name):
    return sorted(group["groupName"] for group in iot.list_thing_groups_for_thing(thingName=name)["thingGroups"])


def attach_certificate(iot, name):
    cert = iot.create_keys_and_certificate(setAsActive=True)
    iot.attach_thing_principal(thingName=name, principal=cert["certificateArn"])
    return cert["certificateArn"]


@pytest.fixture
def no_sleep(monkeypatch):
    sleeps = []
    monkeypatch.setattr(iot_thing.time, "sleep", sleeps.append)
    return sleeps


def test_creates_thing_with_attributes_type_and_groups(iot, run_module):
    iot.create_thing_type(thingTypeName="esp32")
    iot.create_thing_group(thingGroupName="fleet")

    result = run_module(
        iot_thing,
        {"name": THING, "thing_type": "esp32", "attributes": {"chip": "ESP32-S3", "rev": 3}, "thing_groups": ["fleet"]},
    )

    assert result["changed"] is True
    thing = result["thing"]
    assert thing["thing_name"] == THING
    assert thing["thing_arn"] == f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:thing/{THING}"
    assert thing["thing_id"]
    assert thing["thing_type_name"] == "esp32"
    assert thing["attributes"] == {"chip": "ESP32-S3", "rev": "3"}
    assert thing["version"] == 1
    assert thing["thing_groups"] == ["fleet"]
    assert thing["principals"] == []
    described = iot.describe_thing(thingName=THING)
    assert described["attributes"] == {"chip": "ESP32-S3", "rev": "3"}
    assert described["thingTypeName"] == "esp32"
    assert groups_of(iot, THING) == ["fleet"]


def test_second_run_changes_nothing(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")
    args = {"name": THING, "attributes": {"chip": "ESP32-S3"}, "thing_groups": ["fleet"]}
    run_module(iot_thing, args)

    result = run_module(iot_thing, args)

    assert result["changed"] is False


def test_check_mode_creates_nothing_and_diff_shows_the_thing(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")

    result = run_module(
        iot_thing,
        {"name": THING, "attributes": {"chip": "ESP32"}, "thing_groups": ["fleet"]},
        check_mode=True,
        diff=True,
    )

    assert result["changed"] is True
    assert thing_names(iot) == []
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["thing_name"] == THING
    assert result["diff"]["after"]["attributes"] == {"chip": "ESP32"}
    assert result["diff"]["after"]["thing_groups"] == ["fleet"]


def test_attributes_merge_by_default(iot, run_module):
    run_module(iot_thing, {"name": THING, "attributes": {"a": "1", "b": "2"}})

    result = run_module(iot_thing, {"name": THING, "attributes": {"b": "3"}}, diff=True)

    assert result["changed"] is True
    assert result["thing"]["attributes"] == {"a": "1", "b": "3"}
    assert iot.describe_thing(thingName=THING)["attributes"] == {"a": "1", "b": "3"}
    assert result["diff"]["before"]["attributes"] == {"a": "1", "b": "2"}
    assert result["diff"]["after"]["attributes"] == {"a": "1", "b": "3"}


def test_purge_attributes_removes_unlisted_ones(iot, run_module):
    run_module(iot_thing, {"name": THING, "attributes": {"a": "1", "b": "2"}})
    args = {"name": THING, "attributes": {"a": "1"}, "purge_attributes": True}

    result = run_module(iot_thing, args)
    again = run_module(iot_thing, args)

    assert result["changed"] is True
    assert iot.describe_thing(thingName=THING)["attributes"] == {"a": "1"}
    assert again["changed"] is False


def test_check_mode_update_writes_nothing(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")
    run_module(iot_thing, {"name": THING, "attributes": {"a": "1"}})

    result = run_module(
        iot_thing, {"name": THING, "attributes": {"a": "2"}, "thing_groups": ["fleet"]}, check_mode=True
    )

    assert result["changed"] is True
    assert result["thing"]["attributes"] == {"a": "2"}
    assert iot.describe_thing(thingName=THING)["attributes"] == {"a": "1"}
    assert groups_of(iot, THING) == []


def test_thing_groups_are_set_exactly(iot, run_module):
    for group in ("fleet", "lab", "field"):
        iot.create_thing_group(thingGroupName=group)
    run_module(iot_thing, {"name": THING, "thing_groups": ["fleet", "lab"]})

    result = run_module(iot_thing, {"name": THING, "thing_groups": ["fleet", "field"]})

    assert result["changed"] is True
    assert result["thing"]["thing_groups"] == ["field", "fleet"]
    assert groups_of(iot, THING) == ["field", "fleet"]

    emptied = run_module(iot_thing, {"name": THING, "thing_groups": []})
    assert emptied["changed"] is True
    assert groups_of(iot, THING) == []


def test_omitting_thing_groups_leaves_membership_alone(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")
    run_module(iot_thing, {"name": THING, "thing_groups": ["fleet"]})

    result = run_module(iot_thing, {"name": THING})

    assert result["changed"] is False
    assert groups_of(iot, THING) == ["fleet"]


def test_changes_thing_type(iot, run_module):
    iot.create_thing_type(thingTypeName="esp32")
    iot.create_thing_type(thingTypeName="esp32s3")
    run_module(iot_thing, {"name": THING, "thing_type": "esp32"})

    result = run_module(iot_thing, {"name": THING, "thing_type": "esp32s3"})

    assert result["changed"] is True
    assert iot.describe_thing(thingName=THING)["thingTypeName"] == "esp32s3"


def test_bad_thing_name_names_the_option_and_pattern(iot, run_module):
    result = run_module(iot_thing, {"name": "48:27 E2"}, expect_failure=True)

    assert result["msg"].startswith("name:")
    assert "^[a-zA-Z0-9:_-]{1,128}$" in result["msg"]


def test_missing_thing_type_fails_before_creating_the_thing(iot, run_module):
    result = run_module(iot_thing, {"name": THING, "thing_type": "nope"}, expect_failure=True)

    assert result["msg"].startswith("thing_type:")
    assert "'nope'" in result["msg"]
    assert thing_names(iot) == []


def test_deprecated_thing_type_is_refused(iot, run_module):
    iot.create_thing_type(thingTypeName="old")
    iot.deprecate_thing_type(thingTypeName="old")

    result = run_module(iot_thing, {"name": THING, "thing_type": "old"}, expect_failure=True)

    assert result["msg"].startswith("thing_type:")
    assert "deprecated" in result["msg"]


def test_missing_group_fails_before_any_write(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")

    result = run_module(
        iot_thing, {"name": THING, "attributes": {"a": "1"}, "thing_groups": ["fleet", "nope"]}, expect_failure=True
    )

    assert result["msg"].startswith("thing_groups:")
    assert "'nope'" in result["msg"]
    assert thing_names(iot) == []


def test_missing_group_leaves_an_existing_thing_untouched(iot, run_module):
    run_module(iot_thing, {"name": THING, "attributes": {"a": "1"}})

    run_module(iot_thing, {"name": THING, "attributes": {"a": "2"}, "thing_groups": ["nope"]}, expect_failure=True)

    assert iot.describe_thing(thingName=THING)["attributes"] == {"a": "1"}


def test_two_groups_of_one_hierarchy_are_refused(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")
    iot.create_thing_group(thingGroupName="quarantine", parentGroupName="fleet")

    result = run_module(iot_thing, {"name": THING, "thing_groups": ["fleet", "quarantine"]}, expect_failure=True)

    assert result["msg"].startswith("thing_groups:")
    assert "same hierarchy" in result["msg"]
    assert thing_names(iot) == []


def test_bad_attribute_value_names_the_key(iot, run_module):
    result = run_module(iot_thing, {"name": THING, "attributes": {"room": "Room 1"}}, expect_failure=True)

    assert result["msg"].startswith("attributes.room:")
    assert thing_names(iot) == []


def test_returns_attached_principals(iot, run_module):
    run_module(iot_thing, {"name": THING})
    arn = attach_certificate(iot, THING)

    result = run_module(iot_thing, {"name": THING})

    assert result["thing"]["principals"] == [arn]


def test_delete_detaches_principals_then_deletes(iot, run_module, no_sleep):
    run_module(iot_thing, {"name": THING})
    arn = attach_certificate(iot, THING)

    result = run_module(iot_thing, {"name": THING, "state": "absent"}, diff=True)

    assert result["changed"] is True
    assert result["thing"] == {}
    assert result["diff"]["before"]["principals"] == [arn]
    assert result["diff"]["after"] == {}
    assert thing_names(iot) == []
    assert iot.list_principal_things(principal=arn)["things"] == []
    # The certificate itself stays; only the attachment goes.
    assert iot.describe_certificate(certificateId=arn.split("/")[-1])["certificateDescription"]["status"] == "ACTIVE"


def test_delete_waits_for_the_asynchronous_detach(iot, run_module, monkeypatch, no_sleep):
    run_module(iot_thing, {"name": THING})
    arn = attach_certificate(iot, THING)
    real_list = iot_thing.list_thing_principals
    calls = []

    def slow_detach(client, name):
        # AWS still lists the principal for a while after DetachThingPrincipal returns.
        calls.append(name)
        return [arn] if len(calls) <= 3 else real_list(client, name)

    monkeypatch.setattr(iot_thing, "list_thing_principals", slow_detach)

    result = run_module(iot_thing, {"name": THING, "state": "absent"})

    assert result["changed"] is True
    assert len(no_sleep) == 2
    assert thing_names(iot) == []


def test_delete_gives_up_after_wait_timeout_without_deleting(iot, run_module, monkeypatch, no_sleep):
    run_module(iot_thing, {"name": THING})
    arn = attach_certificate(iot, THING)
    monkeypatch.setattr(iot_thing, "list_thing_principals", lambda client, name: [arn])

    result = run_module(iot_thing, {"name": THING, "state": "absent", "wait_timeout": 0}, expect_failure=True)

    assert result["msg"].startswith("wait_timeout:")
    assert arn in result["msg"]
    assert thing_names(iot) == [THING]


def test_check_mode_delete_writes_nothing(iot, run_module):
    run_module(iot_thing, {"name": THING})
    arn = attach_certificate(iot, THING)

    result = run_module(iot_thing, {"name": THING, "state": "absent"}, check_mode=True)

    assert result["changed"] is True
    assert thing_names(iot) == [THING]
    assert iot.list_thing_principals(thingName=THING)["principals"] == [arn]


def test_deleting_a_missing_thing_is_unchanged(iot, run_module):
    result = run_module(iot_thing, {"name": THING, "state": "absent"})

    assert result["changed"] is False
    assert result["thing"] == {}
