"""amplify_deployment against moto in process with the sandbox's Amplify stand-in; uploads go through its routes."""

import io
import json
import zipfile

import boto3
import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from ansible_collections.iotfleet.aws.plugins.modules import amplify_deployment

ENDPOINT = "http://127.0.0.1:45598"
TAG = "iotfleet:bundle-sha256"


@pytest.fixture
def amplify(aws, tmp_path):
    from sandbox import moto_ext

    moto_ext.apply(tmp_path / "ca", state_dir=tmp_path, endpoint=ENDPOINT)
    try:
        yield boto3.client("amplify", region_name=aws)
    finally:
        moto_ext.revert()


@pytest.fixture
def uploads(amplify, monkeypatch):
    """The module's PUT of the zip, sent to the sandbox's upload route; records each upload."""
    from sandbox import moto_ext

    http = Client(moto_ext.routes(Response("moto", status=599)))
    made = []

    def upload(module, url, data):
        assert url.startswith(ENDPOINT)
        answer = http.put(url[len(ENDPOINT) :], data=data, content_type="application/zip")
        assert answer.status_code == 200
        made.append(data)

    monkeypatch.setattr(amplify_deployment, "upload", upload)
    return made


@pytest.fixture
def app_id(amplify):
    app_id = amplify.create_app(name="dashboard")["app"]["appId"]
    amplify.create_branch(appId=app_id, branchName="main", stage="PRODUCTION")
    return app_id


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<h1>fleet</h1>")
    (root / "assets" / "app.js").write_text("start()")
    return root


def args(app_id, site, **overrides):
    result = {"app_id": app_id, "branch": "main", "src": str(site), "extra_files": {"config.json": {"apiKey": "k"}}}
    result.update(overrides)
    return result


def served(tmp_path, app_id, name):
    return (tmp_path / "amplify" / app_id / "main" / name).read_text()


def test_first_run_deploys_and_records_the_bundle(amplify, uploads, app_id, site, tmp_path, run_module):
    result = run_module(amplify_deployment, args(app_id, site))

    assert result["changed"] is True
    deployment = result["deployment"]
    assert deployment["files"] == ["assets/app.js", "config.json", "index.html"]
    assert (deployment["job_id"], deployment["status"], deployment["previous_sha256"]) == ("1", "SUCCEED", None)
    assert deployment["url"] == f"https://main.{app_id}.amplifyapp.com"
    assert len(uploads) == 1 and deployment["size"] == len(uploads[0])
    assert served(tmp_path, app_id, "index.html") == "<h1>fleet</h1>"
    assert json.loads(served(tmp_path, app_id, "config.json")) == {"apiKey": "k"}
    branch = amplify.get_branch(appId=app_id, branchName="main")["branch"]
    assert amplify.list_tags_for_resource(resourceArn=branch["branchArn"])["tags"] == {TAG: deployment["sha256"]}


def test_second_run_deploys_nothing(amplify, uploads, app_id, site, run_module):
    first = run_module(amplify_deployment, args(app_id, site))

    result = run_module(amplify_deployment, args(app_id, site), diff=True)

    assert result["changed"] is False
    assert len(uploads) == 1
    assert result["deployment"]["sha256"] == result["deployment"]["previous_sha256"] == first["deployment"]["sha256"]
    assert result["deployment"]["job_id"] is None
    assert result["diff"]["before"] == result["diff"]["after"]
    assert len(amplify.list_jobs(appId=app_id, branchName="main")["jobSummaries"]) == 1


def test_the_zip_is_deterministic(amplify, uploads, app_id, site, run_module):
    run_module(amplify_deployment, args(app_id, site))
    (site / "index.html").write_text("<h1>fleet</h1>")  # same content, new mtime
    assert run_module(amplify_deployment, args(app_id, site))["changed"] is False
    run_module(amplify_deployment, args(app_id, site, force=True))

    assert len(uploads) == 2 and uploads[0] == uploads[1]
    with zipfile.ZipFile(io.BytesIO(uploads[0])) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == ["assets/app.js", "config.json", "index.html"]
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_changed_file_or_config_deploys_again(amplify, uploads, app_id, site, tmp_path, run_module):
    first = run_module(amplify_deployment, args(app_id, site))["deployment"]

    changed_config = run_module(amplify_deployment, args(app_id, site, extra_files={"config.json": {"apiKey": "new"}}))
    (site / "assets" / "app.js").write_text("start(2)")
    changed_file = run_module(
        amplify_deployment, args(app_id, site, extra_files={"config.json": {"apiKey": "new"}}), diff=True
    )

    assert changed_config["changed"] is True and changed_config["deployment"]["previous_sha256"] == first["sha256"]
    assert changed_file["changed"] is True and changed_file["deployment"]["job_id"] == "3"
    assert changed_file["diff"]["before"] == {"sha256": changed_config["deployment"]["sha256"]}
    assert changed_file["diff"]["after"]["sha256"] == changed_file["deployment"]["sha256"]
    assert len({first["sha256"], changed_config["deployment"]["sha256"], changed_file["deployment"]["sha256"]}) == 3
    assert served(tmp_path, app_id, "assets/app.js") == "start(2)"


def test_check_mode_deploys_nothing_and_says_what_would(amplify, uploads, app_id, site, run_module):
    result = run_module(amplify_deployment, args(app_id, site), check_mode=True, diff=True)

    assert result["changed"] is True
    assert uploads == []
    assert amplify.list_jobs(appId=app_id, branchName="main")["jobSummaries"] == []
    assert result["diff"]["before"] == {"sha256": None}
    assert result["diff"]["after"]["files"] == ["assets/app.js", "config.json", "index.html"]

    run_module(amplify_deployment, args(app_id, site))
    again = run_module(amplify_deployment, args(app_id, site), check_mode=True)
    assert again["changed"] is False


def test_a_failed_job_fails_with_its_reason(amplify, uploads, app_id, site, monkeypatch, run_module):
    monkeypatch.setattr(amplify_deployment, "make_zip", lambda files: b"not a zip")

    result = run_module(amplify_deployment, args(app_id, site), expect_failure=True)

    assert "failed" in result["msg"] and "not a zip archive" in result["msg"]
    branch = amplify.get_branch(appId=app_id, branchName="main")["branch"]
    assert amplify.list_tags_for_resource(resourceArn=branch["branchArn"])["tags"] == {}


def test_a_tag_without_a_successful_active_job_deploys(amplify, uploads, app_id, site, run_module):
    first = run_module(amplify_deployment, args(app_id, site))["deployment"]
    branch = amplify.get_branch(appId=app_id, branchName="main")["branch"]
    amplify.delete_branch(appId=app_id, branchName="main")
    amplify.create_branch(appId=app_id, branchName="main", tags={TAG: first["sha256"]})

    result = run_module(amplify_deployment, args(app_id, site))

    assert branch["activeJobId"] == "1"
    assert result["changed"] is True and result["deployment"]["previous_sha256"] is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"branch": "missing"}, "has no branch missing"),
        ({"app_id": "dmissing0000000"}, "does not exist"),
        ({"app_id": "../x"}, "is not an Amplify app id"),
        ({"extra_files": {"../config.json": "{}"}}, "not a relative file name"),
        ({"extra_files": {"n.txt": 3}}, "give a string"),
        ({"src": "/nonexistent/dist"}, "is not a folder"),
    ],
)
def test_refusals(amplify, uploads, app_id, site, run_module, overrides, message):
    result = run_module(amplify_deployment, {**args(app_id, site), **overrides}, expect_failure=True)

    assert message in result["msg"]
    assert uploads == []
