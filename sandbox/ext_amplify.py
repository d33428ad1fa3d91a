"""Amplify (hosting) for moto 5.2.5, which has none: apps, branches, manual deployments, custom domains, tags.

A moto backend and response class of our own, registered where moto looks a service up: the URL
pattern of `amplify.<region>.amazonaws.com` in moto.backend_index (in server mode the SigV4
credential scope's service name `amplify` becomes that host) and the module `moto.amplify`, which
moto.backends imports for `amplify_backends`.

Manual deployment: CreateDeployment answers a zipUploadUrl on the sandbox itself
(`/iotfleet-sandbox/amplify-upload/<appId>/<branch>/<jobId>`, served by moto_ext's routes) that
takes a PUT of the zip; StartDeployment unpacks it into `<state>/amplify/<appId>/<branch>/`.

Hosting: `serve_hosting(host, port)` starts a static file server (a thread of the server process)
that serves the files of the latest successful deployment, whatever its app and branch, at `/`.
"""

import io
import posixpath
import re
import secrets
import shutil
import string
import sys
import tempfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from pathlib import PurePosixPath
from urllib.parse import quote

from moto.backend_index import backend_url_patterns
from moto.core.base_backend import BackendDict
from moto.core.base_backend import BaseBackend
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.core.responses import BaseResponse
from moto.core.responses import EmptyResult
from moto.core.utils import utcnow
from moto.utilities.utils import get_partition

SERVICE = "amplify"
MODULE = "moto.amplify"
UPLOAD_PATH = "/iotfleet-sandbox/amplify-upload/"
HOST_PATTERN = re.compile(r"https?://amplify\.(.+)\.amazonaws\.com")
APP_ID_CHARS = string.ascii_lowercase + string.digits

_config = {"state_dir": None, "endpoint": "http://127.0.0.1:4599"}
_lock = threading.RLock()


class NotFoundException(ServiceException):
    code = "NotFoundException"


class BadRequestException(ServiceException):
    code = "BadRequestException"


def configure(state_dir: Path | None, endpoint: str | None) -> None:
    _config["state_dir"] = Path(state_dir) if state_dir else None
    if endpoint:
        _config["endpoint"] = endpoint


def _site_root() -> Path:
    root = _config["state_dir"] or Path(tempfile.gettempdir()) / "iotfleet-sandbox"
    return root / "amplify"


def _branch_dir_name(branch: str) -> str:
    return quote(branch, safe="")


def site_dir(app_id: str, branch: str) -> Path:
    """Where a branch's deployed files are: `<state>/amplify/<appId>/<branch>/`."""
    return _site_root() / app_id / _branch_dir_name(branch)


def _upload_file(app_id: str, branch: str, job_id: str) -> Path:
    return _site_root() / ".uploads" / app_id / _branch_dir_name(branch) / f"{job_id}.zip"


class Job:
    def __init__(self, arn: str, job_id: str, job_type: str = "MANUAL"):
        self.arn = arn
        self.job_id = job_id
        self.job_type = job_type
        self.created = utcnow()
        self.start_time = self.created
        self.end_time = None
        self.status = "PENDING"
        self.status_reason = None
        self.source_url = None
        self.source_url_type = None

    def summary(self) -> dict:
        result = {
            "jobArn": self.arn,
            "jobId": self.job_id,
            "commitId": "HEAD",
            "commitMessage": "",
            "commitTime": self.created,
            "startTime": self.start_time,
            "status": self.status,
            "jobType": self.job_type,
        }
        if self.end_time:
            result["endTime"] = self.end_time
        if self.source_url:
            result["sourceUrl"] = self.source_url
            result["sourceUrlType"] = self.source_url_type
        return result

    def to_dict(self) -> dict:
        step = {"stepName": "DEPLOY", "startTime": self.start_time, "status": self.status}
        step["endTime"] = self.end_time or self.start_time
        if self.status_reason:
            step["statusReason"] = self.status_reason
        return {"summary": self.summary(), "steps": [step] if self.status in ("SUCCEED", "FAILED") else []}


BRANCH_DEFAULTS = {
    "description": "",
    "stage": "NONE",
    "framework": "",
    "enableNotification": False,
    "enableAutoBuild": True,
    "environmentVariables": {},
    "enableBasicAuth": False,
    "ttl": "5",
    "enablePullRequestPreview": False,
    "customDomains": [],
}
BRANCH_KEYS = (
    "description",
    "stage",
    "framework",
    "enableNotification",
    "enableAutoBuild",
    "enableSkewProtection",
    "environmentVariables",
    "basicAuthCredentials",
    "enableBasicAuth",
    "enablePerformanceMode",
    "buildSpec",
    "ttl",
    "displayName",
    "enablePullRequestPreview",
    "pullRequestEnvironmentName",
    "backendEnvironmentArn",
    "backend",
    "computeRoleArn",
)
APP_DEFAULTS = {
    "description": "",
    "repository": "",
    "platform": "WEB",
    "environmentVariables": {},
    "enableBranchAutoBuild": False,
    "enableBranchAutoDeletion": False,
    "enableBasicAuth": False,
    "customRules": [],
    "enableAutoBranchCreation": False,
}
APP_KEYS = (
    "name",
    "description",
    "repository",
    "platform",
    "computeRoleArn",
    "iamServiceRoleArn",
    "environmentVariables",
    "enableBranchAutoBuild",
    "enableBranchAutoDeletion",
    "enableBasicAuth",
    "basicAuthCredentials",
    "customRules",
    "buildSpec",
    "customHeaders",
    "enableAutoBranchCreation",
    "autoBranchCreationPatterns",
    "autoBranchCreationConfig",
    "jobConfig",
    "cacheConfig",
)


class Branch:
    def __init__(self, app: "App", name: str, params: dict):
        self.app = app
        self.name = name
        self.arn = f"{app.arn}/branches/{quote(name, safe='')}"
        self.created = self.updated = utcnow()
        self.attributes = dict(BRANCH_DEFAULTS, displayName=name.replace("/", "-"))
        self.attributes.update(params)
        self.jobs: dict[str, Job] = {}
        self.job_counter = 0
        self.active_job_id = ""

    def update(self, params: dict) -> None:
        self.attributes.update(params)
        self.updated = utcnow()

    def new_job(self, job_type: str = "MANUAL") -> Job:
        self.job_counter += 1
        job_id = str(self.job_counter)
        job = Job(f"{self.arn}/jobs/{job_id}", job_id, job_type)
        self.jobs[job_id] = job
        return job

    def get_job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise NotFoundException(f"Job {job_id} of branch {self.name} not found.")
        return self.jobs[job_id]

    def to_dict(self, tags: dict) -> dict:
        return {
            **self.attributes,
            "branchArn": self.arn,
            "branchName": self.name,
            "createTime": self.created,
            "updateTime": self.updated,
            "activeJobId": self.active_job_id,
            "totalNumberOfJobs": str(len(self.jobs)),
            "tags": tags,
        }


class App:
    def __init__(self, account_id: str, region: str, params: dict):
        self.app_id = "d" + "".join(secrets.choice(APP_ID_CHARS) for _index in range(13))
        self.arn = f"arn:{get_partition(region)}:amplify:{region}:{account_id}:apps/{self.app_id}"
        self.created = self.updated = utcnow()
        self.attributes = dict(APP_DEFAULTS)
        self.attributes.update(params)
        self.branches: dict[str, Branch] = {}
        self.domains: dict[str, dict] = {}
        self.production_branch: dict | None = None

    def update(self, params: dict) -> None:
        self.attributes.update(params)
        self.updated = utcnow()

    def get_branch(self, name: str) -> Branch:
        if name not in self.branches:
            raise NotFoundException(f"Branch {name} not found.")
        return self.branches[name]

    def to_dict(self, tags: dict) -> dict:
        result = {
            **self.attributes,
            "appId": self.app_id,
            "appArn": self.arn,
            "defaultDomain": f"{self.app_id}.amplifyapp.com",
            "createTime": self.created,
            "updateTime": self.updated,
            "tags": tags,
        }
        if self.production_branch:
            result["productionBranch"] = self.production_branch
        return result


class AmplifyBackend(BaseBackend):
    """Apps, branches, manual deployments and tags; no builds, domains, webhooks or backend environments."""

    def __init__(self, region_name: str, account_id: str):
        super().__init__(region_name, account_id)
        self.apps: dict[str, App] = {}
        self.tags: dict[str, dict[str, str]] = {}

    @property
    def _url_module(self):
        return sys.modules[__name__]

    def create_app(self, params: dict, tags: dict | None) -> App:
        app = App(self.account_id, self.region_name, params)
        self.apps[app.app_id] = app
        self.tags[app.arn] = dict(tags or {})
        return app

    def get_app(self, app_id: str) -> App:
        if app_id not in self.apps:
            raise NotFoundException(f"App {app_id} not found.")
        return self.apps[app_id]

    def delete_app(self, app_id: str) -> App:
        app = self.get_app(app_id)
        for branch in list(app.branches.values()):
            self.tags.pop(branch.arn, None)
        self.tags.pop(app.arn, None)
        del self.apps[app_id]
        shutil.rmtree(_site_root() / app_id, ignore_errors=True)
        shutil.rmtree(_site_root() / ".uploads" / app_id, ignore_errors=True)
        return app

    def create_branch(self, app_id: str, name: str, params: dict, tags: dict | None) -> Branch:
        app = self.get_app(app_id)
        if name in app.branches:
            raise BadRequestException(f"Branch {name} already exists for app {app_id}.")
        branch = Branch(app, name, params)
        app.branches[name] = branch
        self.tags[branch.arn] = dict(tags or {})
        return branch

    def delete_branch(self, app_id: str, name: str) -> Branch:
        app = self.get_app(app_id)
        branch = app.get_branch(name)
        del app.branches[name]
        self.tags.pop(branch.arn, None)
        shutil.rmtree(site_dir(app_id, name), ignore_errors=True)
        shutil.rmtree(_upload_file(app_id, name, "x").parent, ignore_errors=True)
        if app.production_branch and app.production_branch.get("branchName") == name:
            app.production_branch = None
        return branch

    def create_deployment(self, app_id: str, branch_name: str, file_map) -> Job:
        if file_map:
            raise BadRequestException("The sandbox takes zip deployments only: call CreateDeployment without fileMap.")
        return self.get_app(app_id).get_branch(branch_name).new_job()

    def start_deployment(self, app_id: str, branch_name: str, job_id, source_url, source_url_type) -> Job:
        app = self.get_app(app_id)
        branch = app.get_branch(branch_name)
        with _lock:
            if job_id:
                job = branch.get_job(job_id)
                if job.status != "PENDING":
                    raise BadRequestException(f"Job {job_id} has already been started.")
                upload = _upload_file(app_id, branch_name, job_id)
                if not upload.is_file():
                    raise BadRequestException(f"No zip file has been uploaded for job {job_id}.")
                data = upload.read_bytes()
            elif source_url:
                data = self._read_source(source_url, source_url_type or "ZIP")
                job = branch.new_job()
                job.source_url, job.source_url_type = source_url, source_url_type or "ZIP"
            else:
                raise BadRequestException("Either jobId or sourceUrl is required.")
            job.status_reason = _unpack(data, site_dir(app_id, branch_name))
            job.status = "FAILED" if job.status_reason else "SUCCEED"
            job.end_time = utcnow()
            _upload_file(app_id, branch_name, job.job_id).unlink(missing_ok=True)
            if job.status == "SUCCEED":
                branch.active_job_id = job.job_id
                if branch.attributes.get("stage") == "PRODUCTION":
                    app.production_branch = {
                        "branchName": branch_name,
                        "lastDeployTime": job.end_time,
                        "status": "SUCCEED",
                    }
        return job

    def _read_source(self, source_url: str, source_url_type: str) -> bytes:
        """A zip named by an `s3://bucket/key` URL, read from moto's S3."""
        match = re.match(r"^s3://([^/]+)/(.+)$", source_url)
        if source_url_type != "ZIP" or not match:
            raise BadRequestException("The sandbox deploys from a zip at s3://bucket/key (sourceUrlType ZIP) only.")
        from moto.s3.exceptions import MissingBucket
        from moto.s3.exceptions import MissingKey
        from moto.s3.models import s3_backends

        try:
            key = s3_backends[self.account_id][self.partition].get_object(match.group(1), match.group(2))
        except (MissingBucket, MissingKey):
            raise BadRequestException(f"Cannot read {source_url}.") from None
        if key is None:
            raise BadRequestException(f"Cannot read {source_url}.")
        return key.value

    def put_domain(self, app_id: str, domain_name: str, params: dict, create: bool) -> dict:
        """A custom domain: stored as asked, PENDING_VERIFICATION for ever (the sandbox has no DNS)."""
        app = self.get_app(app_id)
        if create and domain_name in app.domains:
            raise BadRequestException(f"Domain {domain_name} is already associated with app {app_id}.")
        if not create and domain_name not in app.domains:
            raise NotFoundException(f"Domain {domain_name} not found.")
        domain = app.domains.get(domain_name) or {
            "domainAssociationArn": f"{app.arn}/domains/{domain_name}",
            "domainName": domain_name,
            "enableAutoSubDomain": False,
            "domainStatus": "PENDING_VERIFICATION",
            "statusReason": "",
            "certificateVerificationDNSRecord": f"_{secrets.token_hex(16)}.{domain_name}. CNAME "
            f"_{secrets.token_hex(16)}.acm-validations.aws.",
            "subDomains": [],
        }
        settings = params.pop("subDomainSettings", None)
        if settings is not None:
            for setting in settings:
                app.get_branch(setting["branchName"])
            cloudfront = f"d{secrets.token_hex(7)}.cloudfront.net"
            domain["subDomains"] = [
                {
                    "subDomainSetting": dict(setting),
                    "verified": False,
                    "dnsRecord": f"{setting['prefix']} CNAME {cloudfront}",
                }
                for setting in settings
            ]
        domain.update(params)
        app.domains[domain_name] = domain
        return domain

    def get_domain(self, app_id: str, domain_name: str) -> dict:
        app = self.get_app(app_id)
        if domain_name not in app.domains:
            raise NotFoundException(f"Domain {domain_name} not found.")
        return app.domains[domain_name]

    def find_resource_tags(self, arn: str) -> dict:
        if arn not in self.tags:
            raise ResourceNotFoundException(f"Resource {arn} not found.")
        return self.tags[arn]


class ResourceNotFoundException(ServiceException):
    code = "ResourceNotFoundException"


def _unpack(data: bytes, target: Path) -> str | None:
    """Replace `target` with the zip's files; None, or why the zip was refused (then nothing changes)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return "The uploaded file is not a zip archive."
    with archive:
        for name in archive.namelist():
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts:
                return f"The zip holds a file outside its root: {name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new.", dir=target.parent))
        archive.extractall(staging)
    old = target.with_name(f".{target.name}.old.{secrets.token_hex(4)}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return None


amplify_backends = BackendDict(AmplifyBackend, SERVICE)


class AmplifyResponse(BaseResponse):
    def __init__(self) -> None:
        super().__init__(service_name=SERVICE)
        self.automated_parameter_parsing = True

    @property
    def backend(self) -> AmplifyBackend:
        return amplify_backends[self.current_account][self.region]

    def _params(self, keys) -> dict:
        return {key: self._get_param(key) for key in keys if self._get_param(key) is not None}

    def _app_dict(self, app: App) -> dict:
        return app.to_dict(self.backend.tags.get(app.arn, {}))

    def _branch_dict(self, branch: Branch) -> dict:
        return branch.to_dict(self.backend.tags.get(branch.arn, {}))

    def create_app(self) -> ActionResult:
        app = self.backend.create_app(self._params(APP_KEYS), self._get_param("tags"))
        return ActionResult({"app": self._app_dict(app)})

    def get_app(self) -> ActionResult:
        return ActionResult({"app": self._app_dict(self.backend.get_app(self._get_param("appId")))})

    def list_apps(self) -> ActionResult:
        return ActionResult({"apps": [self._app_dict(app) for app in self.backend.apps.values()]})

    def update_app(self) -> ActionResult:
        app = self.backend.get_app(self._get_param("appId"))
        app.update(self._params(APP_KEYS))
        return ActionResult({"app": self._app_dict(app)})

    def delete_app(self) -> ActionResult:
        app = self.backend.get_app(self._get_param("appId"))
        result = self._app_dict(app)
        self.backend.delete_app(app.app_id)
        return ActionResult({"app": result})

    def create_branch(self) -> ActionResult:
        branch = self.backend.create_branch(
            self._get_param("appId"), self._get_param("branchName"), self._params(BRANCH_KEYS), self._get_param("tags")
        )
        return ActionResult({"branch": self._branch_dict(branch)})

    def get_branch(self) -> ActionResult:
        branch = self.backend.get_app(self._get_param("appId")).get_branch(self._get_param("branchName"))
        return ActionResult({"branch": self._branch_dict(branch)})

    def list_branches(self) -> ActionResult:
        app = self.backend.get_app(self._get_param("appId"))
        return ActionResult({"branches": [self._branch_dict(branch) for branch in app.branches.values()]})

    def update_branch(self) -> ActionResult:
        branch = self.backend.get_app(self._get_param("appId")).get_branch(self._get_param("branchName"))
        branch.update(self._params(BRANCH_KEYS))
        return ActionResult({"branch": self._branch_dict(branch)})

    def delete_branch(self) -> ActionResult:
        app_id, name = self._get_param("appId"), self._get_param("branchName")
        result = self._branch_dict(self.backend.get_app(app_id).get_branch(name))
        self.backend.delete_branch(app_id, name)
        return ActionResult({"branch": result})

    def create_deployment(self) -> ActionResult:
        app_id, name = self._get_param("appId"), self._get_param("branchName")
        job = self.backend.create_deployment(app_id, name, self._get_param("fileMap"))
        url = f"{_config['endpoint']}{UPLOAD_PATH}{app_id}/{quote(name, safe='')}/{job.job_id}"
        return ActionResult({"jobId": job.job_id, "fileUploadUrls": {}, "zipUploadUrl": url})

    def start_deployment(self) -> ActionResult:
        job = self.backend.start_deployment(
            self._get_param("appId"),
            self._get_param("branchName"),
            self._get_param("jobId"),
            self._get_param("sourceUrl"),
            self._get_param("sourceUrlType"),
        )
        # AWS answers while the job is still pending; the sandbox has finished it already (GetJob shows it).
        return ActionResult({"jobSummary": dict(job.summary(), status="PENDING")})

    def get_job(self) -> ActionResult:
        branch = self.backend.get_app(self._get_param("appId")).get_branch(self._get_param("branchName"))
        return ActionResult({"job": branch.get_job(self._get_param("jobId")).to_dict()})

    def list_jobs(self) -> ActionResult:
        branch = self.backend.get_app(self._get_param("appId")).get_branch(self._get_param("branchName"))
        jobs = sorted(branch.jobs.values(), key=lambda job: int(job.job_id), reverse=True)
        return ActionResult({"jobSummaries": [job.summary() for job in jobs]})

    def _domain_params(self) -> dict:
        keys = ("enableAutoSubDomain", "subDomainSettings", "autoSubDomainCreationPatterns", "autoSubDomainIAMRole")
        return self._params(keys)

    def create_domain_association(self) -> ActionResult:
        app_id, name = self._get_param("appId"), self._get_param("domainName")
        return ActionResult({"domainAssociation": self.backend.put_domain(app_id, name, self._domain_params(), True)})

    def update_domain_association(self) -> ActionResult:
        app_id, name = self._get_param("appId"), self._get_param("domainName")
        return ActionResult({"domainAssociation": self.backend.put_domain(app_id, name, self._domain_params(), False)})

    def get_domain_association(self) -> ActionResult:
        domain = self.backend.get_domain(self._get_param("appId"), self._get_param("domainName"))
        return ActionResult({"domainAssociation": domain})

    def list_domain_associations(self) -> ActionResult:
        return ActionResult(
            {"domainAssociations": list(self.backend.get_app(self._get_param("appId")).domains.values())}
        )

    def delete_domain_association(self) -> ActionResult:
        app_id, name = self._get_param("appId"), self._get_param("domainName")
        domain = self.backend.get_domain(app_id, name)
        del self.backend.get_app(app_id).domains[name]
        return ActionResult({"domainAssociation": domain})

    def tag_resource(self) -> ActionResult:
        self.backend.find_resource_tags(self._get_param("resourceArn")).update(self._get_param("tags") or {})
        return EmptyResult()

    def untag_resource(self) -> ActionResult:
        tags = self.backend.find_resource_tags(self._get_param("resourceArn"))
        for key in self._get_param("tagKeys") or []:
            tags.pop(key, None)
        return EmptyResult()

    def list_tags_for_resource(self) -> ActionResult:
        return ActionResult({"tags": dict(self.backend.find_resource_tags(self._get_param("resourceArn")))})


# What moto reads from a service's urls module (here: this module, see AmplifyBackend._url_module).
url_bases = [HOST_PATTERN.pattern]
url_paths = {
    "{0}/apps$": AmplifyResponse.dispatch,
    "{0}/apps/(?P<app_id>[^/]+)$": AmplifyResponse.dispatch,
    "{0}/apps/(?P<app_id>[^/]+)/branches$": AmplifyResponse.dispatch,
    "{0}/apps/(?P<app_id>[^/]+)/branches/(?P<branch>.+)$": AmplifyResponse.dispatch,
    "{0}/apps/(?P<app_id>[^/]+)/domains$": AmplifyResponse.dispatch,
    "{0}/apps/(?P<app_id>[^/]+)/domains/(?P<domain>[^/]+)$": AmplifyResponse.dispatch,
    "{0}/tags/(?P<arn>.+)$": AmplifyResponse.dispatch,
}


def handle_upload(method: str, path: str, body: bytes) -> tuple[int, dict]:
    """The zipUploadUrl: PUT <UPLOAD_PATH><appId>/<branch>/<jobId> stores the zip for StartDeployment."""
    from urllib.parse import unquote

    # App and job ids have no '/'; the branch name may (the server may hand us %2F decoded).
    parts = path[len(UPLOAD_PATH) :].split("/")
    if method != "PUT" or len(parts) < 3:
        return 405, {"message": f"PUT {UPLOAD_PATH}<appId>/<branch>/<jobId>"}
    app_id, branch_name, job_id = parts[0], unquote("/".join(parts[1:-1])), parts[-1]
    with _lock:
        for regions in list(amplify_backends.values()):
            for backend in list(regions.values()):
                app = backend.apps.get(app_id)
                branch = app.branches.get(branch_name) if app else None
                job = branch.jobs.get(job_id) if branch else None
                if job is None:
                    continue
                if job.status != "PENDING":
                    return 409, {"message": f"Job {job_id} has already been started."}
                target = _upload_file(app_id, branch_name, job_id)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(body)
                return 200, {"size": len(body)}
    return 404, {"message": f"No pending deployment {app_id}/{branch_name}/{job_id}."}


def latest_site() -> Path | None:
    """The folder of the latest successful deployment of any app's branch that still exists, or None."""
    best, best_time = None, None
    with _lock:
        for regions in list(amplify_backends.values()):
            for backend in list(regions.values()):
                for app in list(backend.apps.values()):
                    for branch in list(app.branches.values()):
                        job = branch.jobs.get(branch.active_job_id)
                        if job is None or job.end_time is None:
                            continue
                        if best_time is None or job.end_time >= best_time:
                            best, best_time = site_dir(app.app_id, branch.name), job.end_time
    return best if best is not None and best.is_dir() else None


NOTHING_DEPLOYED = b"""<!doctype html><title>Nothing deployed</title>
<p>The Amplify hosting stand-in has no successful deployment yet: run site.yml.</p>
"""


class HostingHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of the latest deployment's files; `/` is index.html; no listings, nothing outside the site."""

    server_version = "iotfleet-sandbox-amplify-hosting"
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".json": "application/json"}

    def _serve(self, head: bool) -> None:
        root = latest_site()
        if root is None:
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(NOTHING_DEPLOYED)))
            self.end_headers()
            if not head:
                self.wfile.write(NOTHING_DEPLOYED)
            return
        self.directory = str(root)
        path = posixpath.normpath(self.path.split("?", 1)[0].split("#", 1)[0])
        if path.endswith("/") or path in ("/", "."):
            self.path = "/index.html"
        target = Path(self.translate_path(self.path))
        if target.is_dir():
            self.send_error(404)
            return
        if head:
            super().do_HEAD()
        else:
            super().do_GET()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def end_headers(self) -> None:
        # A new deployment shows on the next load (Amplify invalidates its CDN on deploy).
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's signature
        pass


def serve_hosting(host: str, port: int) -> ThreadingHTTPServer:
    """Serve the latest deployment on host:port from a daemon thread; `.shutdown()` stops it."""
    server = ThreadingHTTPServer((host, port), HostingHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="amplify-hosting", daemon=True).start()
    return server


def install(patch, on_revert) -> None:
    """Register the service with moto's URL index and backend lookup (undone by on_revert)."""
    del patch  # nothing of moto's is replaced
    # The apps are in memory: sites left by an earlier server belong to apps that no longer exist.
    shutil.rmtree(_site_root(), ignore_errors=True)
    if not any(service == SERVICE for service, _pattern in backend_url_patterns):
        backend_url_patterns.insert(0, (SERVICE, HOST_PATTERN))
        on_revert(lambda: backend_url_patterns.remove((SERVICE, HOST_PATTERN)))
    if MODULE not in sys.modules:
        sys.modules[MODULE] = sys.modules[__name__]
        on_revert(lambda: sys.modules.pop(MODULE, None))
