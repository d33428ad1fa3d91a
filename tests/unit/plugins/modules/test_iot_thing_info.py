from ansible_collections.iotfleet.aws.plugins.modules import iot_thing_info


def make_thing(iot, name, groups=(), certificates=0):
    iot.create_thing(thingName=name)
    for group in groups:
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
    arns = []
    for _index in range(certificates):
        arn = iot.create_keys_and_certificate(setAsActive=True)["certificateArn"]
        iot.attach_thing_principal(thingName=name, principal=arn)
        arns.append(arn)
    return sorted(arns)


def test_lists_the_things_of_the_groups_once_with_their_principals(iot, run_module):
    for group in ("fleet", "quarantine", "other"):
        iot.create_thing_group(thingGroupName=group)
    first = make_thing(iot, "4827E2E59190", ["fleet"], certificates=2)
    make_thing(iot, "240AC4123456", ["quarantine", "fleet"])
    make_thing(iot, "240AC4000000", ["other"], certificates=1)
    make_thing(iot, "240AC4FFFFFF")

    result = run_module(iot_thing_info, {"thing_groups": ["quarantine", "fleet", "fleet"]})

    assert result["changed"] is False
    assert result["missing_thing_groups"] == []
    assert result["things"] == [
        {"thing_name": "240AC4123456", "thing_groups": ["fleet", "quarantine"], "principals": []},
        {"thing_name": "4827E2E59190", "thing_groups": ["fleet"], "principals": first},
    ]


def test_a_missing_group_is_reported_not_an_error(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")
    make_thing(iot, "4827E2E59190", ["fleet"])

    result = run_module(iot_thing_info, {"thing_groups": ["fleet", "gone_quarantine"], "principals": False})

    assert result["missing_thing_groups"] == ["gone_quarantine"]
    assert result["things"] == [{"thing_name": "4827E2E59190", "thing_groups": ["fleet"]}]


def test_name_prefix_alone_lists_every_matching_thing(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")
    make_thing(iot, "240AC4123456", ["fleet"])
    make_thing(iot, "240AC4000000")
    make_thing(iot, "4827E2E59190")

    result = run_module(iot_thing_info, {"name_prefix": "240AC4", "principals": False})

    assert [thing["thing_name"] for thing in result["things"]] == ["240AC4000000", "240AC4123456"]
    assert all(thing["thing_groups"] == [] for thing in result["things"])


def test_name_prefix_and_groups_both_apply(iot, run_module):
    iot.create_thing_group(thingGroupName="fleet")
    make_thing(iot, "240AC4123456", ["fleet"])
    make_thing(iot, "4827E2E59190", ["fleet"])
    make_thing(iot, "240AC4000000")

    result = run_module(iot_thing_info, {"thing_groups": ["fleet"], "name_prefix": "240AC4"}, check_mode=True)

    assert [thing["thing_name"] for thing in result["things"]] == ["240AC4123456"]


def test_no_filter_lists_every_thing_and_an_empty_account_nothing(iot, run_module):
    assert run_module(iot_thing_info, {})["things"] == []
    make_thing(iot, "4827E2E59190")
    assert run_module(iot_thing_info, {})["things"] == [
        {"thing_name": "4827E2E59190", "thing_groups": [], "principals": []}
    ]


def test_a_bad_group_name_fails_before_any_call(iot, run_module):
    result = run_module(iot_thing_info, {"thing_groups": ["bad group"]}, expect_failure=True)
    assert "thing_groups" in result["msg"]
