"""amplify_app against moto in process with the sandbox's Amplify stand-in (moto has no Amplify)."""

import boto3
import pytest
from botocore.exceptions import ClientError

from ansible_collections.iotfleet.aws.plugins.modules import amplify_app
from tests.unit.conftest import ACCOUNT_ID
from tests.unit.conftest import REGION

NAME = "iotfleet-dashboard"


@pytest.fixture
def amplify(aws, tmp_path):
    from sandbox import moto_ext

    moto_ext.apply(tmp_path / "ca")
    try:
        yield boto3.client("amplify", region_name=aws)
    finally:
        moto_ext.revert()


@pytest.fixture
def calls(monkeypatch):
    """Records the module's writes while still making them."""
    made = []

    def spy(name):
        original = getattr(amplify_app, name)

        def record(*args, **kwargs):
            made.append((name, args[2] if len(args) > 2 else None))
            return original(*args, **kwargs)

        monkeypatch.setattr(amplify_app, name, record)

    for name in ("create_app", "update_app", "create_branch", "update_branch", "delete_branch", "delete_app"):
        spy(name)
    return made


def app_args(**overrides):
    args = {
        "name": NAME,
        "description": "IoT fleet dashboard",
        "environment_variables": {"GRAPHQL_REGION": REGION},
        "branches": [
            {"name": "main", "stage": "PRODUCTION"},
            {"name": "preview", "stage": "BETA", "environment_variables": {"PREVIEW": "1"}},
        ],
        "tags": {"project": "iotfleet"},
    }
    args.update(overrides)
    return args


def only_app(amplify):
    apps = amplify.list_apps()["apps"]
    assert len(apps) == 1
    return apps[0]


def branches(amplify, app_id):
    return {branch["branchName"]: branch for branch in amplify.list_branches(appId=app_id)["branches"]}


def test_creates_app_and_branches(amplify, run_module):
    result = run_module(amplify_app, app_args())

    assert result["changed"] is True
    aws_app = only_app(amplify)
    app = result["app"]
    assert app["app_id"] == aws_app["appId"]
    assert app["arn"] == f"arn:aws:amplify:{REGION}:{ACCOUNT_ID}:apps/{app['app_id']}"
    assert app["name"] == NAME
    assert app["description"] == "IoT fleet dashboard"
    assert app["platform"] == "WEB"
    assert app["default_domain"] == aws_app["defaultDomain"]
    assert app["environment_variables"] == {"GRAPHQL_REGION": REGION}
    assert app["tags"] == {"project": "iotfleet"}
    assert [branch["name"] for branch in app["branches"]] == ["main", "preview"]
    main, preview = app["branches"]
    assert main["stage"] == "PRODUCTION"
    assert main["enable_auto_build"] is False
    assert main["arn"].endswith(f"apps/{app['app_id']}/branches/main")
    assert preview["environment_variables"] == {"PREVIEW": "1"}
    live = branches(amplify, app["app_id"])
    assert live["preview"]["stage"] == "BETA"
    assert live["main"]["enableAutoBuild"] is False
    assert "custom_domain" not in app


def test_second_run_is_unchanged(amplify, run_module, calls):
    run_module(amplify_app, app_args())
    calls.clear()

    result = run_module(amplify_app, app_args(), diff=True)

    assert result["changed"] is False
    assert calls == []
    assert result["diff"]["before"] == result["diff"]["after"]


def test_check_mode_create_writes_nothing(amplify, run_module):
    result = run_module(amplify_app, app_args(), check_mode=True, diff=True)

    assert result["changed"] is True
    assert result["app"] == {}
    assert amplify.list_apps()["apps"] == []
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["app"]["environment_variables"] == {"GRAPHQL_REGION": REGION}
    assert sorted(result["diff"]["after"]["branches"]) == ["main", "preview"]


def test_settings_change_updates_the_app_only(amplify, run_module, calls):
    run_module(amplify_app, app_args())
    calls.clear()

    result = run_module(
        amplify_app, app_args(description="Dashboard", environment_variables={"GRAPHQL_REGION": "eu-west-1"}), diff=True
    )

    assert result["changed"] is True
    assert calls == [("update_app", None)]
    assert result["app"]["description"] == "Dashboard"
    assert result["app"]["environment_variables"] == {"GRAPHQL_REGION": "eu-west-1"}
    assert result["diff"]["before"]["app"]["description"] == "IoT fleet dashboard"
    assert result["diff"]["after"]["app"]["description"] == "Dashboard"


def test_omitted_settings_are_left_alone(amplify, run_module, calls):
    run_module(amplify_app, app_args())
    calls.clear()

    result = run_module(amplify_app, {"name": NAME})

    assert result["changed"] is False
    assert calls == []
    assert result["app"]["environment_variables"] == {"GRAPHQL_REGION": REGION}
    assert [branch["name"] for branch in result["app"]["branches"]] == ["main", "preview"]


def test_branch_change_updates_only_that_branch_and_only_what_changed(amplify, run_module, calls):
    run_module(amplify_app, app_args())
    calls.clear()
    args = app_args()
    args["branches"][1]["environment_variables"] = {"PREVIEW": "2"}

    result = run_module(amplify_app, args, diff=True)

    assert result["changed"] is True
    assert calls == [("update_branch", "preview")]
    live = branches(amplify, result["app"]["app_id"])
    assert live["preview"]["environmentVariables"] == {"PREVIEW": "2"}
    assert live["preview"]["stage"] == "BETA"
    assert result["diff"]["after"]["branches"]["preview"]["environment_variables"] == {"PREVIEW": "2"}
    assert result["diff"]["before"]["branches"]["main"] == result["diff"]["after"]["branches"]["main"]


def test_unlisted_branch_is_deleted_unless_purge_is_off(amplify, run_module, calls):
    run_module(amplify_app, app_args())
    calls.clear()
    main_only = app_args(branches=[{"name": "main", "stage": "PRODUCTION"}])

    kept = run_module(amplify_app, {**main_only, "purge_branches": False})
    assert kept["changed"] is False

    result = run_module(amplify_app, main_only, diff=True)

    assert result["changed"] is True
    assert calls == [("delete_branch", "preview")]
    assert list(branches(amplify, result["app"]["app_id"])) == ["main"]
    assert "preview" in result["diff"]["before"]["branches"]
    assert "preview" not in result["diff"]["after"]["branches"]


def test_tags_are_updated(amplify, run_module):
    run_module(amplify_app, app_args())

    result = run_module(amplify_app, app_args(tags={"owner": "ops"}, purge_tags=False))

    assert result["changed"] is True
    assert result["app"]["tags"] == {"project": "iotfleet", "owner": "ops"}
    assert run_module(amplify_app, app_args(tags={"owner": "ops"}))["app"]["tags"] == {"owner": "ops"}


def test_absent_deletes_the_app(amplify, run_module):
    run_module(amplify_app, app_args())

    check = run_module(amplify_app, {"name": NAME, "state": "absent"}, check_mode=True)
    assert check["changed"] is True
    assert len(amplify.list_apps()["apps"]) == 1

    result = run_module(amplify_app, {"name": NAME, "state": "absent"}, diff=True)

    assert result["changed"] is True
    assert result["app"] == {}
    assert result["diff"]["before"]["app"]["name"] == NAME
    assert amplify.list_apps()["apps"] == []
    assert run_module(amplify_app, {"name": NAME, "state": "absent"})["changed"] is False


def test_two_apps_with_the_name_fail_naming_their_ids(amplify, run_module):
    ids = [amplify.create_app(name=NAME)["app"]["appId"] for _copy in "ab"]

    result = run_module(amplify_app, app_args(), expect_failure=True)

    assert "2 Amplify apps are named 'iotfleet-dashboard'" in result["msg"]
    assert all(app_id in result["msg"] for app_id in ids)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda args: args.update(name="iotfleet dashboard"), "name: 'iotfleet dashboard' is not a valid app name"),
        (lambda args: args["branches"].append({"name": "main"}), "branches[2]: branch 'main' is listed twice"),
        (lambda args: args["branches"].append({"name": "a b"}), "branches[2]: 'a b' is not a valid branch name"),
        (
            lambda args: args.update(environment_variables={"DEBUG": True}),
            "environment_variables.DEBUG: True is not a string",
        ),
        (
            lambda args: args["branches"][1].update(environment_variables={"LIST": [1]}),
            "branches[1].environment_variables.LIST: [1] is not a string",
        ),
        (
            lambda args: args.update(
                custom_domain={"domain_name": "example.com", "sub_domains": [{"prefix": "x", "branch": "dev"}]}
            ),
            "custom_domain.sub_domains[0]: branch 'dev' is not a branch of the app",
        ),
    ],
)
def test_bad_input_is_named_before_any_write(amplify, run_module, change, message):
    args = app_args()
    change(args)

    result = run_module(amplify_app, args, expect_failure=True)

    assert message in result["msg"]
    assert amplify.list_apps()["apps"] == []


def test_custom_domain(amplify, run_module):
    app_id = amplify.create_app(name="probe")["app"]["appId"]
    amplify.create_branch(appId=app_id, branchName="main")
    try:
        amplify.create_domain_association(
            appId=app_id, domainName="probe.example", subDomainSettings=[{"prefix": "", "branchName": "main"}]
        )
    except ClientError as e:
        pytest.skip(f"the Amplify stand-in has no custom domains: {e}")
    domain = {"domain_name": "example.com", "sub_domains": [{"prefix": "dashboard", "branch": "main"}]}

    result = run_module(amplify_app, app_args(custom_domain=domain))

    assert result["changed"] is True
    assert result["app"]["custom_domain"]["domain_name"] == "example.com"
    assert result["app"]["custom_domain"]["sub_domains"][0]["branch"] == "main"
    assert run_module(amplify_app, app_args(custom_domain=domain))["changed"] is False


@pytest.fixture
def domains(monkeypatch):
    """Custom domains kept in a dict in place of Amplify's domain calls, which the stand-in lacks."""
    store = {}

    def get(client, app_id, domain_name):
        return store.get((app_id, domain_name))

    def put(client, app_id, domain_name, enableAutoSubDomain, subDomainSettings):
        store[(app_id, domain_name)] = {
            "domainName": domain_name,
            "enableAutoSubDomain": enableAutoSubDomain,
            "domainStatus": "PENDING_VERIFICATION",
            "subDomains": [{"subDomainSetting": setting, "verified": False} for setting in subDomainSettings],
        }
        return store[(app_id, domain_name)]

    monkeypatch.setattr(amplify_app, "get_domain_association", get)
    monkeypatch.setattr(amplify_app, "create_domain_association", put)
    monkeypatch.setattr(amplify_app, "update_domain_association", put)
    return store


def test_custom_domain_logic_against_a_fake(amplify, run_module, domains):
    domain = {"domain_name": "example.com", "sub_domains": [{"prefix": "dashboard", "branch": "main"}]}

    check = run_module(amplify_app, app_args(custom_domain=domain), check_mode=True)
    assert check["changed"] is True and domains == {}

    result = run_module(amplify_app, app_args(custom_domain=domain))

    assert result["changed"] is True
    assert result["app"]["custom_domain"] == {
        "domain_name": "example.com",
        "status": "PENDING_VERIFICATION",
        "enable_auto_sub_domain": False,
        "sub_domains": [{"prefix": "dashboard", "branch": "main", "verified": False}],
    }
    assert run_module(amplify_app, app_args(custom_domain=domain))["changed"] is False

    domain["sub_domains"].append({"prefix": "", "branch": "preview"})
    updated = run_module(amplify_app, app_args(custom_domain=domain), diff=True)

    assert updated["changed"] is True
    assert [sub["prefix"] for sub in updated["app"]["custom_domain"]["sub_domains"]] == ["", "dashboard"]
    assert updated["diff"]["before"]["custom_domain"]["sub_domains"] == [{"prefix": "dashboard", "branch": "main"}]
    assert len(updated["diff"]["after"]["custom_domain"]["sub_domains"]) == 2
