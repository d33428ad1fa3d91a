#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: amplify_deployment
version_added: 0.1.0
short_description: Deploy a folder of static files to an AWS Amplify Hosting branch, only when it changed
description:
  - Packs the files of O(src), plus O(extra_files), into a deterministic zip (entries sorted by name,
    fixed timestamps and permissions) and deploys it to a branch of an Amplify app without a
    connected repository by manual deployment; C(CreateDeployment), an HTTP PUT of the zip to the
    C(zipUploadUrl) it returns, C(StartDeployment), then C(GetJob) until the job ends.
  - The bundle is identified by the SHA-256 of its content (each file's name and SHA-256). After a
    successful deployment the module records it as a tag of the branch (O(hash_tag)); when that tag
    already names the same bundle and the branch's active job succeeded, nothing is deployed.
  - Fails with the job's reason when the deployment does not succeed, and when it has not ended
    within O(wait_timeout) seconds.
options:
  app_id:
    description: The id of the Amplify app.
    type: str
    required: true
  branch:
    description: The name of the branch to deploy to; it must exist (see M(iotfleet.aws.amplify_app)).
    type: str
    required: true
  src:
    description:
      - A folder of built static files (such as a C(dist) folder) on the host that runs the module.
        Every regular file under it is deployed, with its path relative to O(src).
    type: path
    required: true
  extra_files:
    description:
      - More files to put in the bundle, names (relative paths) to content. A string is stored as
        UTF-8; a dict or list is stored as JSON (sorted keys). They replace files of O(src) with the
        same name.
      - Use it for settings known only at deploy time, such as the C(config.json) of a single page app.
      - Their values are kept out of logs and results (they may hold an API key).
    type: dict
    default: {}
  hash_tag:
    description: The tag of the branch that records the SHA-256 of the deployed bundle.
    type: str
    default: "iotfleet:bundle-sha256"
  force:
    description: Deploy even when the branch already has this bundle.
    type: bool
    default: false
  wait_timeout:
    description: How many seconds to wait for the deployment job to end.
    type: int
    default: 600
notes:
  - In check mode nothing is uploaded; the result says whether a deployment would happen.
  - With O(extra_files) holding an API key, the key is as public as the site that serves it.
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: Deploy the dashboard with its settings
  iotfleet.aws.amplify_deployment:
    app_id: "{{ amplify_app_id }}"
    branch: main
    src: "{{ playbook_dir }}/.build/dashboard"
    extra_files:
      config.json:
        graphqlUrl: "{{ appsync_graphql.url }}"
        region: eu-north-1
  register: dashboard

- name: Deploy again even if the files did not change
  iotfleet.aws.amplify_deployment:
    app_id: "{{ amplify_app_id }}"
    branch: main
    src: "{{ playbook_dir }}/.build/dashboard"
    force: true
"""

RETURN = r"""
deployment:
  description: The bundle and the deployment job.
  returned: always
  type: dict
  contains:
    sha256:
      description: The SHA-256 of the bundle's content (what O(hash_tag) records).
      type: str
      returned: always
      sample: 3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b
    previous_sha256:
      description: The bundle the branch had before the task, per O(hash_tag); null when unknown.
      type: str
      returned: always
      sample: null
    files:
      description: The names of the files in the bundle, sorted.
      type: list
      elements: str
      returned: always
      sample: ["assets/index.js", "config.json", "index.html"]
    size:
      description: The size of the zip in bytes.
      type: int
      returned: always
      sample: 20480
    job_id:
      description: The id of the deployment job; null when nothing was deployed.
      type: str
      returned: always
      sample: "3"
    status:
      description: The status of that job (C(SUCCEED)); null when nothing was deployed.
      type: str
      returned: always
      sample: SUCCEED
    url:
      description: Where the branch is served, C(https://<branch>.<app default domain>).
      type: str
      returned: always
      sample: https://main.d1x2y3z4w5v6u7.amplifyapp.com
diff:
  description: The bundle before and after the task.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: The recorded SHA-256 of the branch's bundle.
      type: dict
      returned: when diff mode is on
    after:
      description: The SHA-256 and files of the bundle to deploy.
      type: dict
      returned: when diff mode is on
"""

import hashlib
import io
import json
import os
import time
import zipfile

from ansible.module_utils.urls import open_url

from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import APP_ID_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import BRANCH_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import AnsibleAmplifyError
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import amplify_client
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import create_deployment
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import get_app
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import get_branch
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import get_job
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import job_failure_reason
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import list_tags
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import start_deployment
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import tag_resource
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule

# Every entry gets the same time and mode, so the same files make the same zip.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o100644 << 16
DONE = ("SUCCEED", "FAILED", "CANCELLED")
UPLOAD_TRIES = 3


def read_bundle(module, src, extra_files):
    """{name: bytes}: the files under src (relative POSIX paths) and the extra files."""
    if not os.path.isdir(src):
        module.fail_json(msg=f"src: {src} is not a folder; build the site first")
    files = {}
    for folder, dirs, names in os.walk(src):
        dirs.sort()
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            relative = os.path.relpath(path, src).replace(os.sep, "/")
            with open(path, "rb") as handle:
                files[relative] = handle.read()
    for name, content in extra_files.items():
        parts = name.replace("\\", "/").split("/")
        if not name or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            module.fail_json(msg=f"extra_files: {name!r} is not a relative file name inside the site")
        if isinstance(content, (dict, list)):
            data = json.dumps(content, sort_keys=True, indent=2).encode() + b"\n"
        elif isinstance(content, str):
            data = content.encode()
        else:
            module.fail_json(msg=f"extra_files.{name}: give a string, a dict or a list")
        files[name] = data
    if not files:
        module.fail_json(msg=f"src: {src} has no files to deploy")
    return files


def bundle_sha256(files):
    """SHA-256 of the content: each file's name and SHA-256, in name order (independent of zlib)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return digest.hexdigest()


def make_zip(files):
    """A deterministic zip of the files: sorted entries, fixed times and modes, deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.external_attr = ZIP_MODE
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name], compresslevel=9)
    return buffer.getvalue()


def upload(module, url, data):
    """PUT the zip to the upload URL (pre-signed: no AWS credentials); retries connection failures."""
    for attempt in range(1, UPLOAD_TRIES + 1):
        try:
            response = open_url(
                url,
                data=data,
                method="PUT",
                headers={"Content-Type": "application/zip"},
                timeout=120,
                validate_certs=module.params["validate_certs"],
            )
            response.read()
            return
        except Exception as e:  # urllib's HTTPError/URLError and socket errors alike
            code = getattr(e, "code", None)
            if (code is not None and code < 500) or attempt == UPLOAD_TRIES:
                module.fail_json(msg=f"Could not upload the zip for the deployment (HTTP {code or 'error'}): {e}")
            time.sleep(2**attempt)


def wait_for_job(module, client, app_id, branch, job_id):
    deadline = time.monotonic() + module.params["wait_timeout"]
    delay = 1
    while True:
        job = get_job(client, app_id, branch, job_id)
        status = job["summary"]["status"]
        if status in DONE:
            return job
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=f"Deployment job {job_id} of {app_id}/{branch} has not ended after "
                f"{module.params['wait_timeout']} s (status {status})",
                job_id=job_id,
            )
        time.sleep(delay)
        delay = min(delay * 2, 10)


def deployed_sha256(client, app_id, branch):
    """The bundle the branch serves, per its tag, when its active job succeeded; else None."""
    tags = list_tags(client, branch["branchArn"])
    recorded = tags.get(branch["_hash_tag"])
    active = branch.get("activeJobId")
    if not recorded or not active:
        return None
    job = get_job(client, app_id, branch["branchName"], active)
    return recorded if job["summary"]["status"] == "SUCCEED" else None


def run(module, client):
    params = module.params
    app_id, branch_name = params["app_id"], params["branch"]
    files = read_bundle(module, params["src"], params["extra_files"])
    sha256 = bundle_sha256(files)
    data = make_zip(files)
    app = get_app(client, app_id)
    if app is None:
        module.fail_json(msg=f"app_id: Amplify app {app_id} does not exist")
    branch = get_branch(client, app_id, branch_name)
    if branch is None:
        module.fail_json(msg=f"branch: app {app_id} has no branch {branch_name}; create it with amplify_app")
    branch["_hash_tag"] = params["hash_tag"]
    previous = deployed_sha256(client, app_id, branch)
    display = branch.get("displayName") or branch_name.replace("/", "-")
    result = dict(
        sha256=sha256,
        previous_sha256=previous,
        files=sorted(files),
        size=len(data),
        job_id=None,
        status=None,
        url=f"https://{display}.{app['defaultDomain']}",
    )
    changed = params["force"] or previous != sha256
    if changed and not module.check_mode:
        job_id, upload_url = create_deployment(client, app_id, branch_name)
        upload(module, upload_url, data)
        start_deployment(client, app_id, branch_name, job_id)
        job = wait_for_job(module, client, app_id, branch_name, job_id)
        result.update(job_id=job_id, status=job["summary"]["status"])
        if result["status"] != "SUCCEED":
            module.fail_json(
                msg=f"Deployment job {job_id} of {app_id}/{branch_name} failed: {job_failure_reason(job)}",
                changed=True,
                deployment=result,
            )
        tag_resource(client, branch["branchArn"], {params["hash_tag"]: sha256})
    return changed, result


def main():
    argument_spec = dict(
        app_id=dict(type="str", required=True),
        branch=dict(type="str", required=True),
        src=dict(type="path", required=True),
        extra_files=dict(type="dict", default={}, no_log=True),
        hash_tag=dict(type="str", default="iotfleet:bundle-sha256"),
        force=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=600),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    if not APP_ID_RE.match(module.params["app_id"]):
        module.fail_json(msg=f"app_id: {module.params['app_id']!r} is not an Amplify app id")
    if not BRANCH_NAME_RE.match(module.params["branch"]):
        module.fail_json(msg=f"branch: {module.params['branch']!r} is not a valid branch name")
    if module.params["wait_timeout"] < 1:
        module.fail_json(msg="wait_timeout: give at least 1 second")
    client = amplify_client(module)
    try:
        changed, deployment = run(module, client)
    except AnsibleAmplifyError as e:
        module.fail_json_aws_error(e)
    result = dict(changed=changed, deployment=deployment)
    if module._diff:
        before = dict(sha256=deployment["previous_sha256"])
        result["diff"] = dict(
            before=before,
            after=dict(sha256=deployment["sha256"], files=deployment["files"]) if changed else dict(before),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
