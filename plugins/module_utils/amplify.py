# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Helpers for the Amplify modules: amplify_app and amplify_deployment (Amplify Hosting), amplify_secret (SSM).

One error handler per service (amazon.aws's AWSErrorHandler pattern): "not found" becomes None
(or False for deletions), anything else raises AnsibleAmplifyError, which main() turns into
module.fail_json_aws_error(e).
"""

import re

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.errors import AWSErrorHandler
from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# CreateApp: 1-255 characters; the fleet keeps to a plain set so names stay usable in URLs and paths.
APP_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
BRANCH_NAME_RE = re.compile(r"^[A-Za-z0-9_./-]{1,255}$")
# Amplify app ids ("d1x2y3z4w5v6u7") go into SSM paths: letters and digits only, so no path tricks.
APP_ID_RE = re.compile(r"^[A-Za-z0-9]{1,20}$")
# The Amplify Gen 2 convention for secret names (DESIGN §2): CUSTOM_LAMBDA_GRAPHQL_KEY.
SECRET_NAME_RE = re.compile(r"^[A-Z0-9_]{1,128}$")
# Where Amplify Gen 2 keeps the secrets shared by all branches of an app.
SECRET_PATH = "/amplify/shared/{app_id}/{name}"


class AnsibleAmplifyError(AnsibleAWSError):
    pass


class AmplifyErrorHandler(AWSErrorHandler):
    _CUSTOM_EXCEPTION = AnsibleAmplifyError

    @classmethod
    def _is_missing(cls):
        return is_boto3_error_code("NotFoundException")


class SSMErrorHandler(AWSErrorHandler):
    _CUSTOM_EXCEPTION = AnsibleAmplifyError

    @classmethod
    def _is_missing(cls):
        return is_boto3_error_code("ParameterNotFound")


def amplify_client(module):
    """An Amplify client whose calls retry throttling when given aws_retry=True."""
    codes = ["ThrottlingException"]
    retry = AWSRetry.jittered_backoff(retries=10, delay=1, max_delay=30, catch_extra_error_codes=codes)
    return module.client("amplify", retry_decorator=retry)


def ssm_client(module):
    """An SSM client whose calls retry throttling, and PutParameter's TooManyUpdates, when given aws_retry=True."""
    codes = ["ThrottlingException", "TooManyUpdates"]
    retry = AWSRetry.jittered_backoff(retries=10, delay=1, max_delay=30, catch_extra_error_codes=codes)
    return module.client("ssm", retry_decorator=retry)


def secret_path(app_id, name):
    return SECRET_PATH.format(app_id=app_id, name=name)


# Apps.


@AmplifyErrorHandler.common_error_handler("list the Amplify apps")
@AWSRetry.jittered_backoff()
def list_apps(client):
    paginator = client.get_paginator("list_apps")
    return paginator.paginate().build_full_result().get("apps", [])


@AmplifyErrorHandler.list_error_handler("get the Amplify app")
def get_app(client, app_id):
    return client.get_app(appId=app_id, aws_retry=True)["app"]


@AmplifyErrorHandler.common_error_handler("create the Amplify app")
def create_app(client, **params):
    return client.create_app(aws_retry=True, **params)["app"]


@AmplifyErrorHandler.common_error_handler("update the Amplify app")
def update_app(client, app_id, **params):
    return client.update_app(appId=app_id, aws_retry=True, **params)["app"]


@AmplifyErrorHandler.deletion_error_handler("delete the Amplify app")
def delete_app(client, app_id):
    client.delete_app(appId=app_id, aws_retry=True)
    return True


@AmplifyErrorHandler.list_error_handler("list the tags of the Amplify app", {})
def list_tags(client, arn):
    return client.list_tags_for_resource(resourceArn=arn, aws_retry=True).get("tags") or {}


@AmplifyErrorHandler.common_error_handler("tag the Amplify app")
def tag_resource(client, arn, tags):
    client.tag_resource(resourceArn=arn, tags=tags, aws_retry=True)


@AmplifyErrorHandler.common_error_handler("untag the Amplify app")
def untag_resource(client, arn, keys):
    client.untag_resource(resourceArn=arn, tagKeys=keys, aws_retry=True)


# Branches.


@AmplifyErrorHandler.list_error_handler("list the branches of the Amplify app", [])
@AWSRetry.jittered_backoff()
def list_branches(client, app_id):
    paginator = client.get_paginator("list_branches")
    return paginator.paginate(appId=app_id).build_full_result().get("branches", [])


@AmplifyErrorHandler.common_error_handler("create the Amplify branch")
def create_branch(client, app_id, name, **params):
    return client.create_branch(appId=app_id, branchName=name, aws_retry=True, **params)["branch"]


@AmplifyErrorHandler.common_error_handler("update the Amplify branch")
def update_branch(client, app_id, name, **params):
    return client.update_branch(appId=app_id, branchName=name, aws_retry=True, **params)["branch"]


@AmplifyErrorHandler.deletion_error_handler("delete the Amplify branch")
def delete_branch(client, app_id, name):
    client.delete_branch(appId=app_id, branchName=name, aws_retry=True)
    return True


@AmplifyErrorHandler.list_error_handler("get the Amplify branch")
def get_branch(client, app_id, name):
    return client.get_branch(appId=app_id, branchName=name, aws_retry=True)["branch"]


# Manual deployments (amplify_deployment).


@AmplifyErrorHandler.common_error_handler("create a deployment of the Amplify branch")
def create_deployment(client, app_id, branch):
    """(jobId, zipUploadUrl) of a new manual deployment, waiting for its zip."""
    answer = client.create_deployment(appId=app_id, branchName=branch, aws_retry=True)
    return answer["jobId"], answer["zipUploadUrl"]


@AmplifyErrorHandler.common_error_handler("start the deployment of the Amplify branch")
def start_deployment(client, app_id, branch, job_id):
    return client.start_deployment(appId=app_id, branchName=branch, jobId=job_id, aws_retry=True)["jobSummary"]


@AmplifyErrorHandler.common_error_handler("get the deployment job of the Amplify branch")
def get_job(client, app_id, branch, job_id):
    return client.get_job(appId=app_id, branchName=branch, jobId=job_id, aws_retry=True)["job"]


def job_failure_reason(job):
    """Why a job did not succeed, from its failed step(s), else its status."""
    reasons = [
        f"{step.get('stepName', 'step')}: {step['statusReason']}"
        for step in job.get("steps") or []
        if step.get("statusReason")
    ]
    return "; ".join(reasons) or f"the job ended with status {job['summary']['status']}"


# Custom domains.


@AmplifyErrorHandler.list_error_handler("get the domain association of the Amplify app")
def get_domain_association(client, app_id, domain_name):
    return client.get_domain_association(appId=app_id, domainName=domain_name, aws_retry=True)["domainAssociation"]


@AmplifyErrorHandler.common_error_handler("associate the custom domain with the Amplify app")
def create_domain_association(client, app_id, domain_name, **params):
    return client.create_domain_association(appId=app_id, domainName=domain_name, aws_retry=True, **params)[
        "domainAssociation"
    ]


@AmplifyErrorHandler.common_error_handler("update the custom domain of the Amplify app")
def update_domain_association(client, app_id, domain_name, **params):
    return client.update_domain_association(appId=app_id, domainName=domain_name, aws_retry=True, **params)[
        "domainAssociation"
    ]


# Secrets: SSM SecureString parameters on the Amplify Gen 2 path.


@SSMErrorHandler.list_error_handler("read the secret")
def get_secret_parameter(client, path):
    """The parameter with its decrypted value, or None when it does not exist. Never return the value to the user."""
    return client.get_parameter(Name=path, WithDecryption=True, aws_retry=True)["Parameter"]


@SSMErrorHandler.common_error_handler("describe the secrets")
@AWSRetry.jittered_backoff()
def describe_secret_parameters(client, paths):
    """{path: metadata (Type, KeyId, Version, LastModifiedDate...)} for the paths that exist; no values."""
    if not paths:
        return {}
    paginator = client.get_paginator("describe_parameters")
    found = {}
    # DescribeParameters takes at most 50 values per filter.
    for start in range(0, len(paths), 50):
        filters = [dict(Key="Name", Option="Equals", Values=paths[start : start + 50])]
        for parameter in paginator.paginate(ParameterFilters=filters).build_full_result().get("Parameters", []):
            found[parameter["Name"]] = parameter
    return found


@SSMErrorHandler.common_error_handler("write the secret")
def put_secret_parameter(client, path, value, key_id=None, overwrite=False):
    params = dict(Name=path, Value=value, Type="SecureString", Overwrite=overwrite)
    if key_id:
        params["KeyId"] = key_id
    return client.put_parameter(aws_retry=True, **params)["Version"]


@SSMErrorHandler.deletion_error_handler("delete the secret")
def delete_secret_parameter(client, path):
    client.delete_parameter(Name=path, aws_retry=True)
    return True
