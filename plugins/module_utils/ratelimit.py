# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client-side rate limiting per AWS API operation, shared by the threads of one module run.

AWS IoT throttles each control-plane API on its own (a token bucket per operation and account), so
one limit for the whole client would either waste the fast APIs or break the slow ones. Each
operation gets its own bucket here; botocore event hooks take a token before every HTTP attempt
(retries included) and empty the bucket when AWS answers with a throttling error anyway.

Standard library only: the sandbox and the benchmark import it without Ansible.
"""

import threading
import time

# AWS IoT Core's default quotas, requests per second (AWS General Reference, "AWS IoT Core endpoints
# and quotas", and Service Quotas, "iotcore ... API TPS"), for the IoT APIs this collection calls.
AWS_IOT_DEFAULT_RATES = {
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

# Error codes by which AWS says "too fast" (botocore's own list for the standard retry mode, short).
THROTTLING_ERROR_CODES = frozenset(
    ("ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown")
)


class TokenBucket:
    """`rate` tokens a second, at most `capacity` of them saved up; thread-safe.

    A caller reserves its token under the lock and sleeps outside it: the balance may go negative,
    and each reservation waits for its own turn (virtual scheduling), so N threads waiting on a
    bucket leave it at exactly `rate` a second, in the order they arrived, without polling.
    """

    def __init__(self, rate, capacity=1.0, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._stamp = clock()

    def _refill(self):
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self):
        """Take one token; return the seconds until it is due (0.0 when one was there)."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self):
        """Take one token, sleeping until it is due; return the seconds slept."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def drain(self):
        """Forget the tokens saved up: the server just said we were faster than it allows."""
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0)


class RateLimiter:
    """One TokenBucket per operation name, and counters of what happened to each operation.

    Operations without a rate are not limited (only counted).

    Each bucket starts full. By default it holds one token (no burst: requests are spread evenly from
    the first one). With `burst_seconds`, it holds that many seconds' worth of its rate (at least one
    token), as AWS's own per-API token buckets do (a burst of about one second); a run then starts with
    a burst, and is paced at `rate` after it.
    """

    def __init__(self, rates, capacity=1.0, clock=time.monotonic, sleep=time.sleep, burst_seconds=None):
        self.rates = dict(rates)
        self._buckets = {
            op: TokenBucket(rate, max(1.0, rate * burst_seconds) if burst_seconds else capacity, clock, sleep)
            for op, rate in self.rates.items()
        }
        self._lock = threading.Lock()
        self.calls = {}
        self.waited = {}
        self.throttled = {}

    def _count(self, counter, op, amount=1):
        with self._lock:
            counter[op] = counter.get(op, 0) + amount

    def acquire(self, op):
        """Count one request of `op` and wait for its turn; return the seconds waited."""
        self._count(self.calls, op)
        bucket = self._buckets.get(op)
        if bucket is None:
            return 0.0
        wait = bucket.acquire()
        if wait:
            self._count(self.waited, op, wait)
        return wait

    def on_throttled(self, op):
        self._count(self.throttled, op)
        bucket = self._buckets.get(op)
        if bucket is not None:
            bucket.drain()

    def install(self, client, service="iot"):
        """Pace every HTTP attempt `client` makes to `service` (a boto3 client, or Ansible's retrying wrapper).

        Registered first, so the token is taken before anything sends the request (moto's
        in-process stub included).
        """
        events = client.meta.events
        events.register_first(f"before-send.{service}", self._before_send)
        events.register(f"needs-retry.{service}", self._needs_retry)

    def _before_send(self, event_name, **kwargs):
        self.acquire(event_name.rsplit(".", 1)[-1])

    def _needs_retry(self, event_name, response=None, **kwargs):
        # Only watches; returns None so botocore's own retry handler decides about retrying.
        if response is None:
            return
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code")
        if code in THROTTLING_ERROR_CODES or getattr(http, "status_code", None) == 429:
            self.on_throttled(event_name.rsplit(".", 1)[-1])

    def summary(self):
        """Counters per operation, for results and benchmarks."""
        with self._lock:
            return dict(
                calls=dict(sorted(self.calls.items())),
                throttled=dict(sorted(self.throttled.items())),
                waited_seconds={op: round(seconds, 3) for op, seconds in sorted(self.waited.items())},
            )


def merge_rate_limits(defaults, overrides):
    """The module's rates: `defaults` with the user's `overrides` (API name -> requests per second).

    Raises ValueError naming the option when an API is not one the module calls or a rate is not a
    positive number.
    """
    rates = dict(defaults)
    for api, value in (overrides or {}).items():
        if api not in rates:
            raise ValueError(f"rate_limits: {api!r} is not an API this module calls; use one of {sorted(rates)}.")
        try:
            rate = float(value)
        except (TypeError, ValueError):
            rate = 0.0
        if rate <= 0:
            raise ValueError(f"rate_limits.{api}: {value!r} is not a positive number.")
        rates[api] = rate
    return rates
