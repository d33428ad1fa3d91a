"""Opt-in throttling: the sandbox answers ThrottlingException above AWS IoT's default API rates.

Off unless asked for (`python -m sandbox up --throttle`, or IOTFLEET_SANDBOX_THROTTLE=aws in the
server's environment). Then a WSGI middleware in front of moto keeps one token bucket per IoT
operation, as AWS does per account, and refuses a request that finds its bucket empty with the
error AWS IoT sends (HTTP 400, x-amzn-ErrorType ThrottlingException, {"message": "Rate exceeded"}),
which botocore parses as a retryable throttling error. Requests to other services pass untouched.

IoT is a REST-JSON service: the operation is found from the method and the path, matched against
the request URIs of botocore's own service model. The service comes from the SigV4 credential
scope of the Authorization header.

`GET /iotfleet-sandbox/throttle` returns the mode, the rates and the counts per operation.

Always on: IoT requests are handled one at a time (`one_iot_request_at_a_time`), because moto's IoT
backend is not thread-safe (see there).

Also opt-in, for benchmarks: IOTFLEET_SANDBOX_LATENCY_MS=N delays every IoT request by N ms, a stand-in
for the round trip to AWS that a local server does not have (a sequential client pays it per call,
a parallel one does not).
"""

import json
import os
import re
import threading
import time
import uuid

THROTTLE_ENV = "IOTFLEET_SANDBOX_THROTTLE"
LATENCY_ENV = "IOTFLEET_SANDBOX_LATENCY_MS"
STATS_PATH = "/iotfleet-sandbox/throttle"

# AWS IoT Core's default quotas, requests per second, for the IoT APIs this project calls (AWS General
# Reference "AWS IoT Core endpoints and quotas"; Service Quotas "iotcore ... API TPS"). Kept apart from
# the collection's own table (plugins/module_utils/ratelimit.py) on purpose: this side plays AWS, that
# side is the client obeying it; a test checks that they agree.
AWS_IOT_RATES = {
    "AddThingToThingGroup": 100.0,
    "AttachPolicy": 15.0,
    "AttachThingPrincipal": 100.0,
    "CreateCertificateFromCsr": 15.0,
    "CreateThing": 100.0,
    "CreateThingGroup": 25.0,
    "DeleteCertificate": 10.0,
    "DeleteThing": 100.0,
    "DescribeCertificate": 10.0,
    "DescribeThing": 350.0,
    "DescribeThingGroup": 100.0,
    "DetachPolicy": 15.0,
    "DetachThingPrincipal": 100.0,
    "ListCertificates": 10.0,
    "ListPrincipalThings": 10.0,
    "ListTargetsForPolicy": 10.0,
    "ListThingGroups": 10.0,
    "ListThingGroupsForThing": 100.0,
    "ListThingPrincipals": 10.0,
    "ListThings": 10.0,
    "ListThingsInThingGroup": 25.0,
    "RemoveThingFromThingGroup": 100.0,
    "UpdateCertificate": 10.0,
    "UpdateThing": 100.0,
    "UpdateThingGroup": 15.0,
}
MODES = {"aws": AWS_IOT_RATES}
# How much of a burst a bucket allows, in seconds of its rate (at least one request).
BURST_SECONDS = 1.0

_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")


class Bucket:
    """A server-side token bucket: take() answers at once, True if a token was there."""

    def __init__(self, rate: float, capacity: float, clock=time.monotonic):
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True


class OperationMatcher:
    """(method, path) -> operation name, from a botocore REST service model's request URIs."""

    def __init__(self, service_model):
        routes = []
        for name in service_model.operation_names:
            http = service_model.operation_model(name).http
            path = http["requestUri"].split("?", 1)[0]
            segments = path.strip("/").split("/") if path.strip("/") else []
            pattern = "".join("/" + self._segment(segment) for segment in segments) or "/"
            literals = sum(1 for segment in segments if not segment.startswith("{"))
            # Literal segments win over labels: PUT /thing-groups/addThingToThingGroup is not a group name.
            routes.append(((-literals, -len(segments)), http["method"], re.compile(f"^{pattern}/?$"), name))
        self._routes = [(method, regex, name) for _key, method, regex, name in sorted(routes, key=lambda r: r[0])]

    @staticmethod
    def _segment(segment: str) -> str:
        if segment.startswith("{") and segment.endswith("+}"):
            return ".+"
        if segment.startswith("{"):
            return "[^/]+"
        return re.escape(segment)

    def match(self, method: str, path: str) -> str | None:
        for route_method, regex, name in self._routes:
            if route_method == method and regex.match(path):
                return name
        return None


def signing_service(environ) -> str | None:
    """The service named in the SigV4 credential scope of the request, or None."""
    found = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return found.group(1) if found else None


class Throttle:
    """The middleware's state: a bucket per operation and what it let through or refused."""

    def __init__(self, mode: str, rates: dict, burst_seconds: float = BURST_SECONDS, clock=time.monotonic):
        import botocore.session

        self.mode = mode
        self.rates = dict(rates)
        self._matcher = OperationMatcher(botocore.session.get_session().get_service_model("iot"))
        self._buckets = {op: Bucket(rate, max(1.0, rate * burst_seconds), clock) for op, rate in self.rates.items()}
        self._lock = threading.Lock()
        self.allowed: dict[str, int] = {}
        self.throttled: dict[str, int] = {}

    def _count(self, counter: dict, op: str) -> None:
        with self._lock:
            counter[op] = counter.get(op, 0) + 1

    def admit(self, environ) -> str | None:
        """None to let the request through, else the IoT operation it is refused for."""
        if signing_service(environ) != "iot":
            return None
        op = self._matcher.match(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
        bucket = self._buckets.get(op)
        if bucket is None:
            return None
        if bucket.take():
            self._count(self.allowed, op)
            return None
        self._count(self.throttled, op)
        return op

    def stats(self) -> dict:
        with self._lock:
            return dict(mode=self.mode, rates=self.rates, allowed=dict(self.allowed), throttled=dict(self.throttled))

    def wrap(self, app):
        def wsgi(environ, start_response):
            if environ.get("PATH_INFO") == STATS_PATH:
                return _json(start_response, "200 OK", self.stats())
            if self.admit(environ) is not None:
                return _json(
                    start_response,
                    "400 Bad Request",
                    {"message": "Rate exceeded"},
                    [("x-amzn-ErrorType", "ThrottlingException"), ("x-amzn-RequestId", str(uuid.uuid4()))],
                )
            return app(environ, start_response)

        return wsgi


def _json(start_response, status: str, payload: dict, headers=()):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]


def from_env(environ=None) -> Throttle | None:
    """The Throttle that IOTFLEET_SANDBOX_THROTTLE asks for, or None when it is unset, empty or "off"."""
    mode = (os.environ if environ is None else environ).get(THROTTLE_ENV, "").strip().lower()
    if mode in ("", "off"):
        return None
    if mode not in MODES:
        raise SystemExit(f"{THROTTLE_ENV}={mode!r}: use one of {sorted(MODES)} or 'off'")
    return Throttle(mode, MODES[mode])


def latency_from_env(environ=None) -> float:
    """The delay IOTFLEET_SANDBOX_LATENCY_MS asks for, in seconds (0.0 when unset)."""
    value = (os.environ if environ is None else environ).get(LATENCY_ENV, "").strip()
    try:
        milliseconds = float(value or 0)
    except ValueError:
        raise SystemExit(f"{LATENCY_ENV}={value!r}: give a number of milliseconds") from None
    if milliseconds < 0:
        raise SystemExit(f"{LATENCY_ENV}={value!r}: give 0 or more milliseconds")
    return milliseconds / 1000


def delayed(app, seconds: float, sleep=time.sleep):
    """`app`, answering IoT requests `seconds` later (a sleeping request thread costs no CPU)."""

    def wsgi(environ, start_response):
        if signing_service(environ) == "iot":
            sleep(seconds)
        return app(environ, start_response)

    return wsgi


def one_iot_request_at_a_time(app):
    """`app`, handling IoT requests under one lock.

    moto 5.2.5's IoT backend iterates its dicts without a lock (e.g. `_get_principal` over every
    certificate): under concurrent requests, a CreateCertificateFromCsr in one thread makes an
    AttachPolicy in another fail with "OrderedDict mutated during iteration" (HTTP 500; seen 5 times
    in 5,000 requests from 16 threads). Its work is CPU-bound under the GIL anyway, so the lock costs
    little; requests to other services are not serialized.
    """
    lock = threading.Lock()

    def wsgi(environ, start_response):
        if signing_service(environ) != "iot":
            return app(environ, start_response)
        with lock:
            answer = app(environ, start_response)
            try:
                return list(answer)
            finally:
                if hasattr(answer, "close"):
                    answer.close()

    return wsgi
