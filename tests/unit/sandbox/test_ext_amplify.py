"""Amplify for moto (sandbox/ext_amplify.py), in process; the zip upload through the sandbox's routes."""

import io
import re
import sys
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError
from werkzeug.test import Client
from werkzeug.wrappers import Response

from sandbox import ext_amplify
from sandbox import moto_ext

ENDPOINT = "http://127.0.0.1:45599"


@pytest.fixture
def amplify(ext, tmp_path):
    moto_ext.apply(tmp_path / "ca", state_dir=tmp_path, endpoint=ENDPOINT)
    return boto3.client("amplify")


@pytest.fixture
def http():
    return Client(moto_ext.routes(Response("moto", status=599)))


@pytest.fixture
def app_id(amplify):
    app_id = amplify.create_app(name="dashboard")["app"]["appId"]
    amplify.create_branch(appId=app_id, branchName="main", stage="PRODUCTION")
    return app_id


def site_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def error_of(excinfo) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def deploy(amplify, http, app_id, data: bytes, branch="main") -> str:
    created = amplify.create_deployment(appId=app_id, branchName=branch)
    path = created["zipUploadUrl"][len(ENDPOINT) :]
    assert http.put(path, data=data, content_type="application/zip").status_code == 200
    summary = amplify.start_deployment(appId=app_id, branchName=branch, jobId=created["jobId"])["jobSummary"]
    assert summary["status"] == "PENDING"  # as AWS answers; GetJob tells how it ended
    return created["jobId"]


def test_app_crud(amplify):
    app = amplify.create_app(
        name="dashboard", description="fleet", environmentVariables={"STAGE": "demo"}, tags={"project": "iotfleet"}
    )["app"]
    app_id = app["appId"]
    assert re.fullmatch(r"d[a-z0-9]{13}", app_id)
    assert app["appArn"] == f"arn:aws:amplify:eu-north-1:123456789012:apps/{app_id}"
    assert app["defaultDomain"] == f"{app_id}.amplifyapp.com"
    assert (app["name"], app["description"], app["platform"]) == ("dashboard", "fleet", "WEB")
    assert app["environmentVariables"] == {"STAGE": "demo"} and app["tags"] == {"project": "iotfleet"}
    assert app["createTime"] and app["updateTime"]

    assert amplify.get_app(appId=app_id)["app"]["name"] == "dashboard"
    updated = amplify.update_app(appId=app_id, description="fleet dashboard")["app"]
    assert (updated["name"], updated["description"]) == ("dashboard", "fleet dashboard")  # partial update
    assert [a["appId"] for a in amplify.list_apps()["apps"]] == [app_id]

    assert amplify.delete_app(appId=app_id)["app"]["appId"] == app_id
    for call in (amplify.get_app, amplify.delete_app):
        with pytest.raises(ClientError) as excinfo:
            call(appId=app_id)
        assert error_of(excinfo) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        amplify.update_app(appId=app_id, name="x")
    assert error_of(excinfo) == ("NotFoundException", 404)


def test_branch_crud(amplify, app_id):
    branch = amplify.get_branch(appId=app_id, branchName="main")["branch"]
    assert branch["branchArn"] == f"arn:aws:amplify:eu-north-1:123456789012:apps/{app_id}/branches/main"
    assert (branch["stage"], branch["displayName"], branch["activeJobId"], branch["totalNumberOfJobs"]) == (
        "PRODUCTION",
        "main",
        "",
        "0",
    )
    feature = amplify.create_branch(appId=app_id, branchName="feature/x", tags={"k": "v"})["branch"]
    assert feature["displayName"] == "feature-x" and feature["tags"] == {"k": "v"}
    with pytest.raises(ClientError) as excinfo:
        amplify.create_branch(appId=app_id, branchName="main")
    assert error_of(excinfo) == ("BadRequestException", 400)

    updated = amplify.update_branch(appId=app_id, branchName="main", environmentVariables={"A": "1"})["branch"]
    assert updated["environmentVariables"] == {"A": "1"} and updated["stage"] == "PRODUCTION"
    names = [b["branchName"] for b in amplify.list_branches(appId=app_id)["branches"]]
    assert names == ["main", "feature/x"]
    assert amplify.get_branch(appId=app_id, branchName="feature/x")["branch"]["branchName"] == "feature/x"

    amplify.delete_branch(appId=app_id, branchName="feature/x")
    with pytest.raises(ClientError) as excinfo:
        amplify.get_branch(appId=app_id, branchName="feature/x")
    assert error_of(excinfo) == ("NotFoundException", 404)
    with pytest.raises(ClientError) as excinfo:
        amplify.create_branch(appId="dmissing000000", branchName="main")
    assert error_of(excinfo) == ("NotFoundException", 404)


def test_manual_deployment(amplify, http, app_id, tmp_path):
    created = amplify.create_deployment(appId=app_id, branchName="main")
    assert created["jobId"] == "1" and created["fileUploadUrls"] == {}
    assert created["zipUploadUrl"] == f"{ENDPOINT}/iotfleet-sandbox/amplify-upload/{app_id}/main/1"
    assert amplify.get_job(appId=app_id, branchName="main", jobId="1")["job"]["summary"]["status"] == "PENDING"

    with pytest.raises(ClientError) as excinfo:  # nothing uploaded yet
        amplify.start_deployment(appId=app_id, branchName="main", jobId="1")
    assert error_of(excinfo) == ("BadRequestException", 400)

    data = site_zip({"index.html": "<h1>fleet</h1>", "assets/app.js": "console.log(1)"})
    assert http.put(created["zipUploadUrl"][len(ENDPOINT) :], data=data).status_code == 200
    amplify.start_deployment(appId=app_id, branchName="main", jobId="1")
    job = amplify.get_job(appId=app_id, branchName="main", jobId="1")["job"]
    assert job["summary"]["status"] == "SUCCEED" and job["summary"]["jobType"] == "MANUAL"
    assert job["summary"]["jobArn"].endswith(f"apps/{app_id}/branches/main/jobs/1")
    assert [step["status"] for step in job["steps"]] == ["SUCCEED"]
    site = tmp_path / "amplify" / app_id / "main"
    assert (site / "index.html").read_text() == "<h1>fleet</h1>"
    assert (site / "assets" / "app.js").is_file()

    branch = amplify.get_branch(appId=app_id, branchName="main")["branch"]
    assert (branch["activeJobId"], branch["totalNumberOfJobs"]) == ("1", "1")
    assert amplify.get_app(appId=app_id)["app"]["productionBranch"]["branchName"] == "main"

    with pytest.raises(ClientError) as excinfo:  # a job runs once
        amplify.start_deployment(appId=app_id, branchName="main", jobId="1")
    assert error_of(excinfo) == ("BadRequestException", 400)

    # The next deployment replaces the site.
    assert deploy(amplify, http, app_id, site_zip({"index.html": "v2"})) == "2"
    assert (site / "index.html").read_text() == "v2" and not (site / "assets").exists()
    summaries = amplify.list_jobs(appId=app_id, branchName="main")["jobSummaries"]
    assert [(s["jobId"], s["status"]) for s in summaries] == [("2", "SUCCEED"), ("1", "SUCCEED")]
    assert not list((tmp_path / "amplify").glob(".*/**/*.zip"))  # uploads are removed once deployed


def test_bad_zips_fail_the_job_and_keep_the_site(amplify, http, app_id, tmp_path):
    deploy(amplify, http, app_id, site_zip({"index.html": "good"}))
    site = tmp_path / "amplify" / app_id / "main"
    for data in (b"not a zip", site_zip({"../escape.html": "x"}), site_zip({"/etc/absolute": "x"})):
        job_id = deploy(amplify, http, app_id, data)
        job = amplify.get_job(appId=app_id, branchName="main", jobId=job_id)["job"]
        assert job["summary"]["status"] == "FAILED" and job["steps"][0]["statusReason"]
    assert (site / "index.html").read_text() == "good"
    assert not (tmp_path / "amplify" / app_id / "escape.html").exists()
    assert amplify.get_branch(appId=app_id, branchName="main")["branch"]["activeJobId"] == "1"


def test_upload_refusals(amplify, http, app_id):
    assert http.put(f"/iotfleet-sandbox/amplify-upload/{app_id}/main/9", data=b"x").status_code == 404
    assert http.put("/iotfleet-sandbox/amplify-upload/too/few", data=b"x").status_code == 405
    created = amplify.create_deployment(appId=app_id, branchName="main")
    path = created["zipUploadUrl"][len(ENDPOINT) :]
    assert http.get(path).status_code == 405
    http.put(path, data=site_zip({"index.html": "x"}))
    amplify.start_deployment(appId=app_id, branchName="main", jobId=created["jobId"])
    assert http.put(path, data=b"again").status_code == 409


def test_branch_names_with_a_slash(amplify, http, app_id, tmp_path):
    amplify.create_branch(appId=app_id, branchName="feature/ui")
    created = amplify.create_deployment(appId=app_id, branchName="feature/ui")
    assert created["zipUploadUrl"].endswith(f"/{app_id}/feature%2Fui/1")
    assert http.put(created["zipUploadUrl"][len(ENDPOINT) :], data=site_zip({"index.html": "ui"})).status_code == 200
    amplify.start_deployment(appId=app_id, branchName="feature/ui", jobId=created["jobId"])
    assert (tmp_path / "amplify" / app_id / "feature%2Fui" / "index.html").read_text() == "ui"


def test_deployment_from_s3(amplify, app_id, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="sites", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    s3.put_object(Bucket="sites", Key="dashboard.zip", Body=site_zip({"index.html": "from s3"}))
    summary = amplify.start_deployment(appId=app_id, branchName="main", sourceUrl="s3://sites/dashboard.zip")[
        "jobSummary"
    ]
    job = amplify.get_job(appId=app_id, branchName="main", jobId=summary["jobId"])["job"]["summary"]
    assert job["status"] == "SUCCEED" and job["sourceUrl"] == "s3://sites/dashboard.zip"
    assert (tmp_path / "amplify" / app_id / "main" / "index.html").read_text() == "from s3"
    with pytest.raises(ClientError) as excinfo:
        amplify.start_deployment(appId=app_id, branchName="main", sourceUrl="s3://sites/missing.zip")
    assert error_of(excinfo) == ("BadRequestException", 400)


def test_delete_removes_the_files(amplify, http, app_id, tmp_path):
    amplify.create_branch(appId=app_id, branchName="dev")
    deploy(amplify, http, app_id, site_zip({"index.html": "main"}))
    deploy(amplify, http, app_id, site_zip({"index.html": "dev"}), branch="dev")
    amplify.delete_branch(appId=app_id, branchName="dev")
    assert not (tmp_path / "amplify" / app_id / "dev").exists()
    assert (tmp_path / "amplify" / app_id / "main" / "index.html").exists()
    amplify.delete_app(appId=app_id)
    assert not (tmp_path / "amplify" / app_id).exists()


def test_tags(amplify, app_id):
    app_arn = amplify.get_app(appId=app_id)["app"]["appArn"]
    branch_arn = amplify.get_branch(appId=app_id, branchName="main")["branch"]["branchArn"]
    amplify.tag_resource(resourceArn=app_arn, tags={"project": "iotfleet", "owner": "ops"})
    amplify.tag_resource(resourceArn=branch_arn, tags={"stage": "prod"})
    amplify.untag_resource(resourceArn=app_arn, tagKeys=["owner"])
    assert amplify.list_tags_for_resource(resourceArn=app_arn)["tags"] == {"project": "iotfleet"}
    assert amplify.list_tags_for_resource(resourceArn=branch_arn)["tags"] == {"stage": "prod"}
    assert amplify.get_app(appId=app_id)["app"]["tags"] == {"project": "iotfleet"}
    with pytest.raises(ClientError) as excinfo:
        amplify.list_tags_for_resource(resourceArn="arn:aws:amplify:eu-north-1:123456789012:apps/dnope")
    assert error_of(excinfo) == ("ResourceNotFoundException", 404)


def test_revert_unregisters_the_service(amplify):
    from moto.backend_index import backend_url_patterns

    assert sys.modules["moto.amplify"] is ext_amplify
    moto_ext.revert()
    assert "moto.amplify" not in sys.modules
    assert not any(service == "amplify" for service, _pattern in backend_url_patterns)


def test_sites_of_an_earlier_server_are_removed_at_start(amplify, tmp_path):
    stale = tmp_path / "amplify" / "dold0000000000" / "main" / "index.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("from before a restart")
    moto_ext.revert()
    moto_ext.apply(tmp_path / "ca", state_dir=tmp_path, endpoint=ENDPOINT)
    assert not (tmp_path / "amplify").exists()


def test_custom_domains(amplify, app_id):
    created = amplify.create_domain_association(
        appId=app_id, domainName="example.com", subDomainSettings=[{"prefix": "dashboard", "branchName": "main"}]
    )["domainAssociation"]
    assert created["domainAssociationArn"].endswith(f"apps/{app_id}/domains/example.com")
    assert (created["domainStatus"], created["enableAutoSubDomain"]) == ("PENDING_VERIFICATION", False)
    assert created["subDomains"][0]["subDomainSetting"] == {"prefix": "dashboard", "branchName": "main"}
    assert created["subDomains"][0]["verified"] is False
    assert created["subDomains"][0]["dnsRecord"].startswith("dashboard CNAME ")
    assert amplify.get_domain_association(appId=app_id, domainName="example.com")["domainAssociation"] == created
    with pytest.raises(ClientError) as excinfo:
        amplify.create_domain_association(appId=app_id, domainName="example.com", subDomainSettings=[])
    assert error_of(excinfo) == ("BadRequestException", 400)
    with pytest.raises(ClientError) as excinfo:
        amplify.create_domain_association(
            appId=app_id, domainName="other.example", subDomainSettings=[{"prefix": "", "branchName": "nope"}]
        )
    assert error_of(excinfo) == ("NotFoundException", 404)

    updated = amplify.update_domain_association(
        appId=app_id,
        domainName="example.com",
        enableAutoSubDomain=True,
        subDomainSettings=[{"prefix": "", "branchName": "main"}, {"prefix": "www", "branchName": "main"}],
    )["domainAssociation"]
    assert updated["enableAutoSubDomain"] is True
    assert [d["subDomainSetting"]["prefix"] for d in updated["subDomains"]] == ["", "www"]
    listed = amplify.list_domain_associations(appId=app_id)["domainAssociations"]
    assert [d["domainName"] for d in listed] == ["example.com"]

    amplify.delete_domain_association(appId=app_id, domainName="example.com")
    for call in (amplify.get_domain_association, amplify.delete_domain_association):
        with pytest.raises(ClientError) as excinfo:
            call(appId=app_id, domainName="example.com")
        assert error_of(excinfo) == ("NotFoundException", 404)


@pytest.fixture
def hosting():
    server = ext_amplify.serve_hosting("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def fetch(url: str) -> tuple[int, str, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def test_hosting_serves_the_latest_successful_deployment(amplify, http, app_id, hosting):
    status, _type, body = fetch(f"{hosting}/")
    assert status == 404 and b"no successful deployment" in body

    deploy(amplify, http, app_id, site_zip({"index.html": "<h1>v1</h1>", "assets/app.js": "go()", "config.json": "{}"}))
    assert fetch(f"{hosting}/") == (200, "text/html", b"<h1>v1</h1>")
    assert fetch(f"{hosting}/assets/app.js?x=1") == (200, "text/javascript", b"go()")
    assert fetch(f"{hosting}/config.json")[:2] == (200, "application/json")
    assert fetch(f"{hosting}/missing.js")[0] == 404
    assert fetch(f"{hosting}/assets/")[0] == 404  # no directory listings
    assert fetch(f"{hosting}/../../etc/passwd")[0] == 404

    deploy(amplify, http, app_id, b"not a zip")  # a failed job leaves the site as it was
    assert fetch(f"{hosting}/")[2] == b"<h1>v1</h1>"

    other = amplify.create_app(name="other")["app"]["appId"]
    amplify.create_branch(appId=other, branchName="dev")
    deploy(amplify, http, other, site_zip({"index.html": "other"}), branch="dev")
    assert fetch(f"{hosting}/")[2] == b"other"

    amplify.delete_app(appId=other)  # then the latest deployment left is served again
    assert fetch(f"{hosting}/")[2] == b"<h1>v1</h1>"
    amplify.delete_app(appId=app_id)
    assert fetch(f"{hosting}/")[0] == 404
