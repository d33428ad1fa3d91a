"""Patches that close the gaps of moto 5.2.5 this collection runs into (README.md lists them).

Each patch replaces one method on a moto class and keeps moto's own models and state, so every
other operation (describe, list, attach, delete) sees the result. `apply()` installs them before
the server starts; tests call `revert()` so other tests in the same process get stock moto.

The IoT and DynamoDB patches are here; Lambda invoke, AppSync and Amplify have a module each
(ext_lambda, ext_appsync, ext_amplify), installed by `apply()` too. `routes()` wraps moto's WSGI
app with the sandbox's own endpoints under /iotfleet-sandbox/ (the AppSync simulator's config,
Amplify's zip upload).
"""

import json
import os
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from moto.core.responses import ActionResult
from moto.dynamodb.models.table import Table
from moto.iot.exceptions import CertificateStateException
from moto.iot.exceptions import InvalidRequestException
from moto.iot.exceptions import IoTClientError
from moto.iot.exceptions import ResourceNotFoundException
from moto.iot.models import FakeCertificate
from moto.iot.models import FakeRule
from moto.iot.models import IoTBackend
from moto.iot.responses import IoTResponse
from moto.settings import iot_use_valid_cert

from sandbox import broker_hook
from sandbox import ext_amplify
from sandbox import ext_appsync
from sandbox import ext_lambda
from sandbox import shadow_ext
from sandbox.broker import BROKER_DIR_ENV
from sandbox.broker import BROKER_REGION_ENV
from sandbox.ca import CA
from sandbox.ca import ensure_ca
from sandbox.ca import issue_certificate
from sandbox.ca import load_csr

MOTO_VERSION = "5.2.5"
# DescribeEndpoint's answer for the data plane: the sandbox's MQTT broker listens there (sandbox/broker.py).
BROKER_ADDRESS = "127.0.0.1"
DATA_ENDPOINT_TYPES = ("iot:Data-ATS", "iot:Data")
# The sandbox's own endpoints (see routes()).
APPSYNC_PATH = "/iotfleet-sandbox/appsync/"

_MISSING = object()
# (class, attribute, the attribute as the class resolved it before, the class's own value or _MISSING)
_originals: list[tuple[type, str, object, object]] = []
_undo: list = []
_ca: CA | None = None


class CertificateValidationException(IoTClientError):
    """What AWS answers when a certificate to register is not a certificate."""

    def __init__(self, msg: str):
        super().__init__("CertificateValidationException", msg)


def _patch(owner: type, name: str, replacement):
    """Set `owner.name` (which may be new, or inherited) to `replacement`; return what it was."""
    original = getattr(owner, name, None)
    _originals.append((owner, name, original, owner.__dict__.get(name, _MISSING)))
    setattr(owner, name, replacement)
    return original


def _original(owner: type, name: str):
    return next(func for cls, attr, func, _own in _originals if cls is owner and attr == name)


# IoT CreateCertificateFromCsr: moto signs a fresh RSA key of its own and drops the CSR's key.
def create_certificate_from_csr(self: IoTBackend, csr: str, set_as_active: bool) -> FakeCertificate:
    try:
        request = load_csr(csr or "")
    except ValueError as exc:
        raise InvalidRequestException(str(exc)) from None
    pem = issue_certificate(request, _ca).public_bytes(serialization.Encoding.PEM).decode()
    return self.register_certificate(pem, ca_certificate_pem=None, set_as_active=set_as_active, status="INACTIVE")


# moto reads setAsActive as a raw string, so "false" counted as true.
def create_certificate_from_csr_response(self: IoTResponse) -> ActionResult:
    cert = self.iot_backend.create_certificate_from_csr(
        self._get_param("certificateSigningRequest"), set_as_active=self._get_bool_param("setAsActive", False)
    )
    return ActionResult(
        {"certificateId": cert.certificate_id, "certificateArn": cert.arn, "certificatePem": cert.certificate_pem}
    )


# FakeCertificate: validity was "now ± 1 day" whatever the PEM said, a certificate registered without
# a status had none, and with ids computed from the DER (as AWS does) a non-certificate was a 500.
def certificate_init(self: FakeCertificate, certificate_pem, status, account_id, region_name, ca_certificate_id=None):
    try:
        parsed = x509.load_pem_x509_certificate(certificate_pem.encode())
    except (ValueError, TypeError, AttributeError):
        if iot_use_valid_cert():
            raise CertificateValidationException("The certificate is not a valid PEM X.509 certificate") from None
        parsed = None
    status = status or "INACTIVE"
    _original(FakeCertificate, "__init__")(self, certificate_pem, status, account_id, region_name, ca_certificate_id)
    if parsed is not None:
        self.validity_not_before = parsed.not_valid_before_utc.replace(tzinfo=None)
        self.validity_not_after = parsed.not_valid_after_utc.replace(tzinfo=None)


# AWS: once a certificate is REVOKED its status can't be changed (moto allowed REVOKED -> ACTIVE).
def update_certificate(self: IoTBackend, certificate_id: str, new_status: str) -> None:
    cert = self.describe_certificate(certificate_id)
    if cert.status == "REVOKED" and new_status != "REVOKED":
        raise CertificateStateException("A revoked certificate's status cannot be changed.", certificate_id)
    _original(IoTBackend, "update_certificate")(self, certificate_id, new_status)


# moto accepted an unknown version id and left the policy with no default version at all.
def set_default_policy_version(self: IoTBackend, policy_name: str, version_id: str) -> None:
    policy = self.get_policy(policy_name)
    if not any(version.version_id == str(version_id) for version in policy.versions):
        raise ResourceNotFoundException(f"Policy version {version_id} of policy {policy_name} does not exist")
    _original(IoTBackend, "set_default_policy_version")(self, policy_name, str(version_id))


# GetTopicRule returned "errorAction": {} for a rule without one; AWS leaves the key out.
def topic_rule_get_dict(self: FakeRule) -> dict:
    result = _original(FakeRule, "to_get_dict")(self)
    if not result["rule"]["errorAction"]:
        del result["rule"]["errorAction"]
    return result


# DescribeEndpoint made up a new random host on every call; AWS keeps one per account and region.
# The data endpoints (iot:Data-ATS, iot:Data) are the sandbox's MQTT broker (sandbox/broker.py).
def describe_endpoint(self: IoTBackend, endpoint_type: str):
    endpoints = self.__dict__.setdefault("_sandbox_endpoints", {})
    if endpoint_type not in endpoints:
        endpoint = _original(IoTBackend, "describe_endpoint")(self, endpoint_type)
        if endpoint_type in DATA_ENDPOINT_TYPES:
            endpoint.endpoint = BROKER_ADDRESS
        endpoints[endpoint_type] = endpoint
    return endpoints[endpoint_type]


# DynamoDB: no TableId in table descriptions; community.aws.dynamodb_table reads it unconditionally.
def table_describe(self: Table, base_key: str = "TableDescription") -> dict:
    result = _original(Table, "describe")(self, base_key=base_key)
    result[base_key]["TableId"] = self.__dict__.setdefault("_sandbox_table_id", str(uuid.uuid4()))
    return result


def apply(
    ca_dir: Path,
    state_dir: Path | None = None,
    endpoint: str | None = None,
    appsync_url: str | None = None,
    broker_dir: Path | None = None,
    region: str | None = None,
) -> CA:
    """Install the patches (idempotent); certificates from CSRs are signed by the CA in `ca_dir`.

    `state_dir` (default: the CA dir's parent) holds unpacked Lambda code and Amplify sites;
    `endpoint` is the sandbox's own URL (for Lambda handlers and Amplify upload URLs);
    `appsync_url` is the simulator's GraphQL URL, returned as the APIs' uris;
    `broker_dir` (default: $IOTFLEET_SANDBOX_BROKER_DIR, else none) is where the MQTT broker reads the
    access rules of `region`'s registry (default: $IOTFLEET_SANDBOX_BROKER_REGION) (see broker_hook).
    """
    global _ca
    _ca = ensure_ca(Path(ca_dir))
    state_dir = Path(state_dir) if state_dir else Path(ca_dir).parent
    ext_lambda.configure(state_dir, endpoint)
    ext_amplify.configure(state_dir, endpoint)
    ext_appsync.configure(appsync_url)
    broker_hook.configure(
        broker_dir or os.environ.get(BROKER_DIR_ENV) or None, region or os.environ.get(BROKER_REGION_ENV) or None
    )
    if _originals:
        return _ca
    _patch(IoTBackend, "create_certificate_from_csr", create_certificate_from_csr)
    _patch(IoTResponse, "create_certificate_from_csr", create_certificate_from_csr_response)
    _patch(FakeCertificate, "__init__", certificate_init)
    _patch(IoTBackend, "update_certificate", update_certificate)
    _patch(IoTBackend, "set_default_policy_version", set_default_policy_version)
    _patch(FakeRule, "to_get_dict", topic_rule_get_dict)
    _patch(IoTBackend, "describe_endpoint", describe_endpoint)
    _patch(Table, "describe", table_describe)
    # iot-data DeleteConnection (not in moto 5.2.5) and the broker's access rules written after registry changes.
    broker_hook.install(_patch)
    ext_lambda.install(_patch)
    ext_appsync.install(_patch, _undo.append)
    ext_amplify.install(_patch, _undo.append)
    return _ca


def revert() -> None:
    """Put moto's own methods back."""
    global _ca
    while _originals:
        owner, name, _func, own = _originals.pop()
        if own is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, own)
    while _undo:
        _undo.pop()()
    broker_hook.reset()
    _ca = None


def _json(start_response, status: int, body, headers=()) -> list[bytes]:
    data = json.dumps(body, default=str).encode()
    reason = {200: "OK", 304: "Not Modified", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict"}
    start_response(
        f"{status} {reason.get(status, 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


def _appsync_route(environ, start_response) -> list[bytes]:
    """GET .../appsync/apis: every API and the one the simulator serves; GET .../appsync/<apiId>/config: that API."""
    rest = environ.get("PATH_INFO", "")[len(APPSYNC_PATH) :]
    if environ.get("REQUEST_METHOD") != "GET":
        return _json(start_response, 405, {"message": "GET only"})
    if rest == "apis":
        return _json(start_response, 200, ext_appsync.apis())
    api_id, _slash, leaf = rest.partition("/")
    config = ext_appsync.find_config(api_id) if leaf == "config" else None
    if config is None:
        return _json(start_response, 404, {"message": f"No GraphQL API {api_id}"})
    etag = f'"{config["etag"]}"'
    if environ.get("HTTP_IF_NONE_MATCH") == etag:
        start_response("304 Not Modified", [("ETag", etag)])
        return [b""]
    return _json(start_response, 200, config, [("ETag", etag)])


def routes(app):
    """moto's WSGI app with the sandbox's endpoints in front (server mode only; see the module docstring)."""

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(APPSYNC_PATH):
            return _appsync_route(environ, start_response)
        if path == shadow_ext.SHADOWS_PATH:  # shadow versions, polled by the rules bridge
            return shadow_ext.route(environ, start_response)
        if path.startswith(ext_amplify.UPLOAD_PATH):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length:
                body = environ["wsgi.input"].read(length)
            else:  # chunked: werkzeug marks the stream as ending where the body does
                body = environ["wsgi.input"].read() if environ.get("wsgi.input_terminated") else b""
            status, answer = ext_amplify.handle_upload(environ.get("REQUEST_METHOD", ""), path, body)
            return _json(start_response, status, answer)
        return app(environ, start_response)

    return wsgi
