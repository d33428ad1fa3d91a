"""The sandbox's opt-in throttling: operation matching, the middleware, and a throttling server."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import AWS_IOT_DEFAULT_RATES
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import RateLimiter
from sandbox import throttle
from tests.unit.sandbox.conftest import Instance
from tests.unit.sandbox.helpers import make_csr

IOT_AUTH = "AWS4-HMAC-SHA256 Credential=testing/20250131/eu-north-1/iot/aws4_request, SignedHeaders=host, Signature=x"
DYNAMODB_AUTH = IOT_AUTH.replace("/iot/", "/dynamodb/")


@pytest.fixture(scope="module")
def matcher():
    return throttle.OperationMatcher(botocore.session.get_session().get_service_model("iot"))


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/things/4827E2E59190", "CreateThing"),
        ("GET", "/things/4827E2E59190", "DescribeThing"),
        ("PATCH", "/things/4827E2E59190", "UpdateThing"),
        ("GET", "/things", "ListThings"),
        ("PUT", "/things/4827E2E59190/principals", "AttachThingPrincipal"),
        ("GET", "/things/4827E2E59190/principals", "ListThingPrincipals"),
        ("PUT", "/thing-groups/addThingToThingGroup", "AddThingToThingGroup"),
        ("POST", "/thing-groups/addThingToThingGroup", "CreateThingGroup"),
        ("GET", "/thing-groups/fleet/things", "ListThingsInThingGroup"),
        ("POST", "/certificates", "CreateCertificateFromCsr"),
        ("GET", "/certificates", "ListCertificates"),
        ("GET", "/certificates/ab12", "DescribeCertificate"),
        ("PUT", "/certificates/ab12", "UpdateCertificate"),
        ("PUT", "/target-policies/device", "AttachPolicy"),
        ("POST", "/target-policies/device", "DetachPolicy"),
        ("POST", "/policy-targets/device", "ListTargetsForPolicy"),
        ("GET", "/destinations/arn:aws:iot:eu-north-1:1:ruledestination/x", "GetTopicRuleDestination"),
        ("GET", "/nothing-here", None),
    ],
)
def test_operation_from_method_and_path(matcher, method, path, operation):
    assert matcher.match(method, path) == operation


def test_the_sandbox_plays_the_quotas_the_collection_obeys():
    assert throttle.AWS_IOT_RATES == AWS_IOT_DEFAULT_RATES


class Clock:
    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


def call(app, method, path, auth=IOT_AUTH):
    answer = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_AUTHORIZATION": auth}, start_response))
    return answer["status"], answer["headers"], body


def backend(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]


def test_middleware_refuses_above_the_rate_with_the_iot_error_shape():
    clock = Clock()
    app = throttle.Throttle("aws", {"CreateCertificateFromCsr": 15.0}, clock=clock).wrap(backend)

    statuses = [call(app, "POST", "/certificates")[0] for _turn in range(16)]

    assert statuses == ["200 OK"] * 15 + ["400 Bad Request"]  # one second of burst, then empty
    status, headers, body = call(app, "POST", "/certificates")
    assert status == "400 Bad Request"
    assert headers["x-amzn-ErrorType"] == "ThrottlingException"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"message": "Rate exceeded"}
    clock.now += 1 / 15
    assert call(app, "POST", "/certificates")[0] == "200 OK"


def test_middleware_leaves_other_services_operations_and_paths_alone():
    app = throttle.Throttle("aws", {"ListThings": 1.0}, clock=Clock()).wrap(backend)
    call(app, "GET", "/things")

    assert call(app, "GET", "/things", auth=DYNAMODB_AUTH)[0] == "200 OK"
    assert call(app, "GET", "/things", auth="")[0] == "200 OK"
    assert call(app, "GET", "/certificates")[0] == "200 OK"  # no rate for it here
    assert call(app, "GET", "/things")[0] == "400 Bad Request"


def test_stats_endpoint():
    app = throttle.Throttle("aws", {"ListThings": 1.0}, clock=Clock()).wrap(backend)
    call(app, "GET", "/things")
    call(app, "GET", "/things")

    status, _headers, body = call(app, "GET", throttle.STATS_PATH)

    assert status == "200 OK"
    assert json.loads(body) == {
        "mode": "aws",
        "rates": {"ListThings": 1.0},
        "allowed": {"ListThings": 1},
        "throttled": {"ListThings": 1},
    }


@pytest.mark.parametrize(("value", "mode"), [("", None), ("off", None), ("aws", "aws"), (" AWS ", "aws")])
def test_from_env(value, mode):
    found = throttle.from_env({throttle.THROTTLE_ENV: value})
    assert (found.mode if found else None) == mode


def test_from_env_refuses_unknown_modes():
    with pytest.raises(SystemExit, match="use one of"):
        throttle.from_env({throttle.THROTTLE_ENV: "fast"})


@pytest.fixture(scope="module")
def throttled(tmp_path_factory):
    sandbox = Instance(tmp_path_factory.mktemp("throttled") / "state")
    try:
        result = sandbox.run("up", "--throttle")
        assert result.returncode == 0, result.stdout + result.stderr
        yield sandbox
    finally:
        sandbox.cleanup()


def iot_client(sandbox, **config):
    return boto3.client(
        "iot",
        endpoint_url=sandbox.settings.endpoint,
        region_name=sandbox.settings.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config),
    )


def stats(sandbox):
    import urllib.request

    with urllib.request.urlopen(sandbox.settings.endpoint + throttle.STATS_PATH, timeout=5) as response:
        return json.loads(response.read())


def test_server_throttles_a_client_that_goes_too_fast(throttled):
    from sandbox import control

    assert control.health(throttled.settings)["throttle"] == "aws"
    client = iot_client(throttled, retries={"total_max_attempts": 1}, max_pool_connections=4)
    csrs = [make_csr()[1] for _turn in range(60)]
    errors = []

    def create(csr):
        try:
            client.create_certificate_from_csr(certificateSigningRequest=csr)
        except ClientError as e:
            errors.append(e.response)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, csrs))

    assert errors, "60 requests from 4 threads at once should exceed 15/s"
    assert {e["Error"]["Code"] for e in errors} == {"ThrottlingException"}
    assert {e["ResponseMetadata"]["HTTPStatusCode"] for e in errors} == {400}
    assert errors[0]["Error"]["Message"] == "Rate exceeded"
    assert stats(throttled)["throttled"]["CreateCertificateFromCsr"] == len(errors)


def test_client_side_limiter_keeps_below_the_server_rate(throttled):
    time.sleep(1.5)  # let the server's bucket refill after the previous test
    before = stats(throttled)["throttled"].get("ListCertificates", 0)
    client = iot_client(throttled, retries={"total_max_attempts": 1})
    limiter = RateLimiter(AWS_IOT_DEFAULT_RATES)
    limiter.install(client)
    started = time.monotonic()

    for _turn in range(25):
        client.list_certificates()

    assert time.monotonic() - started >= 24 / 10 * 0.95  # ListCertificates: 10 a second
    assert stats(throttled)["throttled"].get("ListCertificates", 0) == before
    assert limiter.summary()["throttled"] == {}


def test_up_throttle_on_a_sandbox_that_does_not_throttle_says_so(server):
    result = server.run("up", "--throttle")

    assert result.returncode == 1
    assert "does not throttle" in result.stdout


def test_registration_with_limits_above_the_quota_is_throttled_retried_and_completes(throttled):
    """The limiter set too high on purpose: the server throttles, the retries absorb it, nothing fails."""
    from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper

    from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import FleetRegistration
    from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import build_specs
    from ansible_collections.iotfleet.aws.plugins.module_utils.iot import iot_retry_decorator

    setup = iot_client(throttled)
    setup.create_policy(policyName="throttled_device", policyDocument='{"Version": "2012-10-17", "Statement": []}')
    setup.create_thing_group(thingGroupName="throttled_fleet")
    names = [f"7777{n:08X}" for n in range(40)]
    specs = build_specs([{"thing_name": name, "csr": make_csr(common_name=name)[1]} for name in names])
    limiter = RateLimiter({**AWS_IOT_DEFAULT_RATES, "CreateCertificateFromCsr": 200.0, "AttachPolicy": 200.0})
    client = RetryingBotoClientWrapper(iot_client(throttled, max_pool_connections=12), iot_retry_decorator())
    limiter.install(client)

    results, _seconds = FleetRegistration(client, "throttled_device", "throttled_fleet", max_workers=8).run(specs)

    assert [r.error for r in results] == [None] * 40
    assert all(r.issued_certificate for r in results)
    assert sum(limiter.summary()["throttled"].values()) > 0
    assert len(setup.list_targets_for_policy(policyName="throttled_device")["targets"]) == 40


@pytest.mark.parametrize(("value", "seconds"), [(None, 0.0), ("", 0.0), ("50", 0.05), ("2.5", 0.0025)])
def test_latency_from_env(value, seconds):
    environ = {} if value is None else {throttle.LATENCY_ENV: value}
    assert throttle.latency_from_env(environ) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["fast", "-1"])
def test_latency_from_env_refuses_nonsense(value):
    with pytest.raises(SystemExit, match=throttle.LATENCY_ENV):
        throttle.latency_from_env({throttle.LATENCY_ENV: value})


def test_delay_applies_to_iot_requests_only():
    sleeps = []
    app = throttle.delayed(backend, 0.05, sleep=sleeps.append)

    call(app, "GET", "/things")
    call(app, "GET", "/things", auth=DYNAMODB_AUTH)

    assert sleeps == [0.05]


def test_iot_requests_are_handled_one_at_a_time():
    inside, most = [0], [0]
    guard = threading.Lock()

    def slow(environ, start_response):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.01)
        with guard:
            inside[0] -= 1
        start_response("200 OK", [])
        return [b"{}"]

    app = throttle.one_iot_request_at_a_time(slow)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _n: call(app, "GET", "/things"), range(16)))
    assert most[0] == 1

    most[0] = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _n: call(app, "GET", "/things", auth=DYNAMODB_AUTH), range(16)))
    assert most[0] > 1
