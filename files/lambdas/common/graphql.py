"""A small AppSync GraphQL client: urllib, variables only, IAM (SigV4) or API key.

Every operation is a constant document; event data travels only in `variables`, so nothing a
device sends can change the shape of a query.
"""

import json
import os
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError

from common.settings import GRAPHQL_ENDPOINT
from common.settings import GRAPHQL_KEY
from common.settings import SettingsError

AUTH_ENV = "IOTFLEET_GRAPHQL_AUTH"
AUTH_IAM = "AWS_IAM"
AUTH_API_KEY = "API_KEY"
CONDITION_FAILED = "ConditionalCheckFailedException"
DEFAULT_TIMEOUT_SECONDS = 10
MAX_ERROR_CHARS = 300


class GraphQLError(Exception):
    """The API answered with errors: a deployment or data-source problem, not bad input."""

    def __init__(self, message, errors=None):
        super().__init__(message)
        self.errors = errors or []


class GraphQLUnavailable(GraphQLError):
    """The API could not be reached or answered with an HTTP error (5xx, 4xx such as 401/403)."""


class ConditionFailed(GraphQLError):
    """A conditional write was refused (`DynamoDB:ConditionalCheckFailedException`)."""


# Failures of the platform rather than of the event: the handler logs them once and raises, so
# Lambda's asynchronous retries (and the function's failure destination) take over.
INFRA_ERRORS = (GraphQLError, SettingsError, BotoCoreError, ClientError)


def error_summary(errors):
    text = "; ".join(f"{error.get('errorType', 'Error')}: {error.get('message', '')}" for error in errors)
    return text[:MAX_ERROR_CHARS]


def auth_mode_from_environment(environ=None):
    environ = os.environ if environ is None else environ
    mode = environ.get(AUTH_ENV, AUTH_IAM).strip().upper() or AUTH_IAM
    if mode in ("IAM", AUTH_IAM):
        return AUTH_IAM
    if mode == AUTH_API_KEY:
        return AUTH_API_KEY
    raise ValueError(f"{AUTH_ENV} must be AWS_IAM or API_KEY, got {mode!r}")


class GraphQLClient:
    """POSTs `{query, variables, operationName}` to the endpoint named in the settings."""

    def __init__(
        self, settings, auth_mode, credentials=None, region=None, timeout=DEFAULT_TIMEOUT_SECONDS, opener=None
    ):
        self.settings = settings
        self.auth_mode = auth_mode
        self.credentials = credentials
        self.region = region
        self.timeout = timeout
        self.opener = opener or urllib.request.urlopen

    @classmethod
    def from_environment(cls, settings, session, environ=None):
        """`session` is a boto3 Session: its credentials sign requests in IAM mode."""
        environ = os.environ if environ is None else environ
        mode = auth_mode_from_environment(environ)
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or session.region_name
        credentials = session.get_credentials() if mode == AUTH_IAM else None
        return cls(settings, mode, credentials=credentials, region=region)

    def headers(self, url, body):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.auth_mode == AUTH_API_KEY:
            headers["x-api-key"] = self.settings.require(GRAPHQL_KEY)
            return headers
        if self.credentials is None:
            raise GraphQLUnavailable("no AWS credentials to sign the AppSync request")
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), "appsync", self.region).add_auth(request)
        return dict(request.headers.items())

    def post(self, url, body, headers):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self.opener(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:MAX_ERROR_CHARS].decode("utf-8", "replace")
            raise GraphQLUnavailable(f"AppSync answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise GraphQLUnavailable(f"AppSync unreachable: {exc}") from exc

    def execute(self, query, variables, operation_name):
        """Run one operation and return its `data`; raise on any GraphQL error."""
        url = self.settings.require(GRAPHQL_ENDPOINT)
        body = json.dumps(
            {"query": query, "variables": variables, "operationName": operation_name}, allow_nan=False
        ).encode("utf-8")
        raw = self.post(url, body, self.headers(url, body))
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise GraphQLUnavailable(f"AppSync answered with a body that is not JSON: {raw[:100]!r}") from exc
        errors = payload.get("errors") or []
        if errors:
            if any(str(error.get("errorType", "")).endswith(CONDITION_FAILED) for error in errors):
                raise ConditionFailed(error_summary(errors), errors)
            raise GraphQLError(error_summary(errors), errors)
        return payload.get("data") or {}
