from ansible_collections.iotfleet.aws.plugins.modules import iot_thing_group
from tests.unit.conftest import ACCOUNT_ID
from tests.unit.conftest import REGION


def group_names(iot):
    return sorted(group["groupName"] for group in iot.list_thing_groups()["thingGroups"])


def attributes_of(iot, name):
    properties = iot.describe_thing_group(thingGroupName=name)["thingGroupProperties"]
    attributes = properties.get("attributePayload", {}).get("attributes", {})
    return {key: value for key, value in attributes.items() if value != ""}


def test_creates_group_with_description_and_attributes(iot, run_module):
    result = run_module(
        iot_thing_group, {"name": "fleet", "description": "All boards", "attributes": {"owner": "me", "floor": 3}}
    )

    assert result["changed"] is True
    group = result["thing_group"]
    assert group["thing_group_name"] == "fleet"
    assert group["thing_group_arn"] == f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:thinggroup/fleet"
    assert group["thing_group_id"]
    assert group["description"] == "All boards"
    assert group["attributes"] == {"owner": "me", "floor": "3"}
    assert group["parent_group_name"] is None
    assert group["version"] == 1
    assert attributes_of(iot, "fleet") == {"owner": "me", "floor": "3"}


def test_second_run_changes_nothing(iot, run_module):
    args = {"name": "fleet", "description": "All boards", "attributes": {"owner": "me"}}
    run_module(iot_thing_group, args)

    result = run_module(iot_thing_group, args)

    assert result["changed"] is False
    assert result["thing_group"]["version"] == 1


def test_check_mode_creates_nothing_and_diff_shows_the_new_group(iot, run_module):
    result = run_module(iot_thing_group, {"name": "fleet", "attributes": {"owner": "me"}}, check_mode=True, diff=True)

    assert result["changed"] is True
    assert group_names(iot) == []
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["thing_group_name"] == "fleet"
    assert result["diff"]["after"]["attributes"] == {"owner": "me"}


def test_updates_description_and_merges_attributes(iot, run_module):
    run_module(iot_thing_group, {"name": "fleet", "description": "old", "attributes": {"a": "1", "b": "2"}})

    result = run_module(iot_thing_group, {"name": "fleet", "description": "new", "attributes": {"b": "3"}}, diff=True)

    assert result["changed"] is True
    assert result["thing_group"]["description"] == "new"
    assert result["thing_group"]["attributes"] == {"a": "1", "b": "3"}
    assert result["thing_group"]["version"] == 3
    assert result["diff"]["before"]["description"] == "old"
    assert result["diff"]["before"]["attributes"] == {"a": "1", "b": "2"}
    assert result["diff"]["after"]["attributes"] == {"a": "1", "b": "3"}
    assert iot.describe_thing_group(thingGroupName="fleet")["thingGroupProperties"]["thingGroupDescription"] == "new"


def test_purge_attributes_removes_unlisted_ones_and_is_then_idempotent(iot, run_module):
    run_module(iot_thing_group, {"name": "fleet", "attributes": {"a": "1", "b": "2"}})
    args = {"name": "fleet", "attributes": {"a": "1"}, "purge_attributes": True}

    result = run_module(iot_thing_group, args)
    again = run_module(iot_thing_group, args)

    assert result["changed"] is True
    assert result["thing_group"]["attributes"] == {"a": "1"}
    assert attributes_of(iot, "fleet") == {"a": "1"}
    assert again["changed"] is False


def test_check_mode_update_writes_nothing(iot, run_module):
    run_module(iot_thing_group, {"name": "fleet", "description": "old"})

    result = run_module(iot_thing_group, {"name": "fleet", "description": "new"}, check_mode=True)

    assert result["changed"] is True
    assert result["thing_group"]["description"] == "new"
    described = iot.describe_thing_group(thingGroupName="fleet")
    assert described["thingGroupProperties"]["thingGroupDescription"] == "old"
    assert described["version"] == 1


def test_creates_child_group_under_parent(iot, run_module):
    run_module(iot_thing_group, {"name": "fleet"})

    result = run_module(iot_thing_group, {"name": "quarantine", "parent_group": "fleet"})
    again = run_module(iot_thing_group, {"name": "quarantine", "parent_group": "fleet"})

    assert result["thing_group"]["parent_group_name"] == "fleet"
    assert iot.describe_thing_group(thingGroupName="quarantine")["thingGroupMetadata"]["parentGroupName"] == "fleet"
    assert again["changed"] is False


def test_missing_parent_fails_before_creating_anything(iot, run_module):
    result = run_module(iot_thing_group, {"name": "quarantine", "parent_group": "nope"}, expect_failure=True)

    assert result["msg"].startswith("parent_group:")
    assert "'nope'" in result["msg"]
    assert group_names(iot) == []


def test_changing_parent_is_refused_and_nothing_changes(iot, run_module):
    run_module(iot_thing_group, {"name": "fleet"})
    run_module(iot_thing_group, {"name": "other"})
    run_module(iot_thing_group, {"name": "quarantine", "parent_group": "fleet", "description": "old"})

    result = run_module(
        iot_thing_group,
        {"name": "quarantine", "parent_group": "other", "description": "new"},
        expect_failure=True,
    )

    assert result["msg"].startswith("parent_group:")
    assert "cannot move" in result["msg"]
    described = iot.describe_thing_group(thingGroupName="quarantine")
    assert described["thingGroupProperties"]["thingGroupDescription"] == "old"
    assert described["thingGroupMetadata"]["parentGroupName"] == "fleet"


def test_adding_a_parent_to_a_root_group_is_refused(iot, run_module):
    run_module(iot_thing_group, {"name": "fleet"})
    run_module(iot_thing_group, {"name": "loose"})

    result = run_module(iot_thing_group, {"name": "loose", "parent_group": "fleet"}, expect_failure=True)

    assert "no parent" in result["msg"]


def test_bad_name_names_the_option(iot, run_module):
    result = run_module(iot_thing_group, {"name": "has space"}, expect_failure=True)

    assert result["msg"].startswith("name:")
    assert "[a-zA-Z0-9:_-]" in result["msg"]


def test_bad_attribute_value_fails_before_any_write(iot, run_module):
    result = run_module(iot_thing_group, {"name": "fleet", "attributes": {"room": "Room 1"}}, expect_failure=True)

    assert result["msg"].startswith("attributes.room:")
    assert group_names(iot) == []


def test_non_string_attribute_value_is_refused(iot, run_module):
    result = run_module(iot_thing_group, {"name": "fleet", "attributes": {"flag": True}}, expect_failure=True)

    assert result["msg"].startswith("attributes.flag:")


def test_deletes_group_then_absent_is_unchanged(iot, run_module):
    run_module(iot_thing_group, {"name": "fleet"})

    check = run_module(iot_thing_group, {"name": "fleet", "state": "absent"}, check_mode=True, diff=True)
    assert check["changed"] is True
    assert group_names(iot) == ["fleet"]
    assert check["diff"]["before"]["thing_group_name"] == "fleet"
    assert check["diff"]["after"] == {}

    result = run_module(iot_thing_group, {"name": "fleet", "state": "absent"})
    again = run_module(iot_thing_group, {"name": "fleet", "state": "absent"})

    assert result["changed"] is True
    assert result["thing_group"] == {}
    assert group_names(iot) == []
    assert again["changed"] is False


def test_group_with_children_is_not_deleted(iot, run_module):
    run_module(iot_thing_group, {"name": "fleet"})
    run_module(iot_thing_group, {"name": "quarantine", "parent_group": "fleet"})

    result = run_module(iot_thing_group, {"name": "fleet", "state": "absent"}, expect_failure=True)

    assert "quarantine" in result["msg"]
    assert group_names(iot) == ["fleet", "quarantine"]


def test_update_carries_the_version_so_a_concurrent_change_is_not_overwritten(iot, run_module, monkeypatch):
    run_module(iot_thing_group, {"name": "fleet", "description": "old"})
    iot.update_thing_group(thingGroupName="fleet", thingGroupProperties={"thingGroupDescription": "theirs"})
    real_describe = iot_thing_group.describe_thing_group

    def stale_describe(client, name):
        described = real_describe(client, name)
        return dict(described, version=described["version"] - 1)

    monkeypatch.setattr(iot_thing_group, "describe_thing_group", stale_describe)

    result = run_module(iot_thing_group, {"name": "fleet", "description": "mine"}, expect_failure=True)

    assert "update the thing group" in result["msg"]
    assert iot.describe_thing_group(thingGroupName="fleet")["thingGroupProperties"]["thingGroupDescription"] == "theirs"
