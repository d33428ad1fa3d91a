"""The token buckets, against a fake clock whose time moves only when someone sleeps."""

import threading
from types import SimpleNamespace

import boto3
import pytest

from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import AWS_IOT_DEFAULT_RATES
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import RateLimiter
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import TokenBucket


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def test_first_token_is_free_then_one_every_1_over_rate(clock):
    bucket = TokenBucket(rate=5, clock=clock, sleep=clock.sleep)
    start = clock.now

    waits = [bucket.acquire() for _turn in range(11)]

    assert waits[0] == 0
    assert waits[1:] == pytest.approx([0.2] * 10)
    assert clock.now - start == pytest.approx(2.0)  # 11 requests at 5/s: 10 intervals


def test_sustained_rate_equals_the_rate(clock):
    bucket = TokenBucket(rate=15, clock=clock, sleep=clock.sleep)
    start = clock.now

    for _turn in range(1000):
        bucket.acquire()

    assert 999 / (clock.now - start) == pytest.approx(15.0)


def test_idle_time_saves_up_to_capacity_only(clock):
    bucket = TokenBucket(rate=10, capacity=3, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    clock.advance(60)

    waits = [bucket.acquire() for _turn in range(5)]

    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.1, 0.1])


def test_partial_refill_is_counted(clock):
    bucket = TokenBucket(rate=4, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    clock.advance(0.1)  # 0.4 of a token back

    assert bucket.reserve() == pytest.approx(0.15)


def test_reservations_queue_up_without_sleeping_under_the_lock(clock):
    bucket = TokenBucket(rate=2, clock=clock, sleep=clock.sleep)

    # Nobody sleeps between reservations: each one is due half a second after the previous.
    assert [bucket.reserve() for _turn in range(4)] == pytest.approx([0, 0.5, 1.0, 1.5])


def test_drain_drops_the_saved_tokens(clock):
    bucket = TokenBucket(rate=10, capacity=5, clock=clock, sleep=clock.sleep)
    clock.advance(10)

    bucket.drain()

    assert bucket.reserve() == pytest.approx(0.1)


def test_drain_keeps_reservations_already_made(clock):
    bucket = TokenBucket(rate=10, clock=clock, sleep=clock.sleep)
    bucket.reserve()
    bucket.reserve()  # due in 0.1 s

    bucket.drain()

    assert bucket.reserve() == pytest.approx(0.2)


@pytest.mark.parametrize(("rate", "capacity"), [(0, 1), (-1, 1), (5, 0.5)])
def test_bad_parameters(rate, capacity):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, capacity=capacity)


def test_threads_get_distinct_turns(clock):
    """8 threads x 50 reservations on a frozen clock: every turn k/rate is handed out exactly once."""
    bucket = TokenBucket(rate=100, clock=clock, sleep=lambda s: None)
    waits = []
    lock = threading.Lock()

    def worker():
        mine = [bucket.reserve() for _turn in range(50)]
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=worker) for _turn in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(round(w * 100) for w in waits) == list(range(400))


def test_limiter_paces_each_operation_on_its_own(clock):
    limiter = RateLimiter({"CreateThing": 100, "AttachPolicy": 15}, clock=clock, sleep=clock.sleep)

    for _turn in range(3):
        limiter.acquire("AttachPolicy")
    limiter.acquire("CreateThing")
    limiter.acquire("ListThings")  # no rate: counted, never waits

    assert clock.sleeps == pytest.approx([1 / 15, 1 / 15])
    summary = limiter.summary()
    assert summary["calls"] == {"AttachPolicy": 3, "CreateThing": 1, "ListThings": 1}
    assert summary["waited_seconds"] == {"AttachPolicy": pytest.approx(0.133, abs=1e-3)}


def test_throttling_response_is_counted_and_drains_the_bucket(clock):
    limiter = RateLimiter({"CreateCertificateFromCsr": 15}, capacity=10, clock=clock, sleep=clock.sleep)
    http = SimpleNamespace(status_code=400)
    parsed = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}

    answer = limiter._needs_retry("needs-retry.iot.CreateCertificateFromCsr", response=(http, parsed))

    assert answer is None  # botocore's retry handler decides, not us
    assert limiter.summary()["throttled"] == {"CreateCertificateFromCsr": 1}
    assert limiter.acquire("CreateCertificateFromCsr") == pytest.approx(1 / 15)


def test_other_errors_and_successes_are_not_throttling(clock):
    limiter = RateLimiter({"CreateThing": 100}, clock=clock, sleep=clock.sleep)

    limiter._needs_retry("needs-retry.iot.CreateThing", response=(SimpleNamespace(status_code=200), {}))
    limiter._needs_retry(
        "needs-retry.iot.CreateThing",
        response=(SimpleNamespace(status_code=409), {"Error": {"Code": "ResourceAlreadyExistsException"}}),
    )
    limiter._needs_retry("needs-retry.iot.CreateThing", response=None)
    limiter._needs_retry("needs-retry.iot.CreateThing", response=(SimpleNamespace(status_code=429), {}))

    assert limiter.summary()["throttled"] == {"CreateThing": 1}


def test_installed_on_a_client_it_counts_every_request(aws, clock):
    client = boto3.client("iot")
    limiter = RateLimiter({"ListThings": 10}, clock=clock, sleep=clock.sleep)
    limiter.install(client)

    for _turn in range(3):
        client.list_things()
    client.list_certificates()

    assert limiter.summary()["calls"] == {"ListCertificates": 1, "ListThings": 3}
    assert clock.sleeps == pytest.approx([0.1, 0.1])


def test_defaults_are_aws_published_quotas():
    assert AWS_IOT_DEFAULT_RATES["CreateCertificateFromCsr"] == 15
    assert AWS_IOT_DEFAULT_RATES["AttachPolicy"] == 15
    assert AWS_IOT_DEFAULT_RATES["CreateThing"] == 100
    assert AWS_IOT_DEFAULT_RATES["AttachThingPrincipal"] == 100
    assert AWS_IOT_DEFAULT_RATES["UpdateCertificate"] == 10


def test_merge_rate_limits_overrides_and_names_bad_entries():
    from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import merge_rate_limits

    defaults = {"UpdateCertificate": 10.0, "DetachPolicy": 15.0}
    assert merge_rate_limits(defaults, {"UpdateCertificate": "4"}) == {"UpdateCertificate": 4.0, "DetachPolicy": 15.0}
    assert merge_rate_limits(defaults, None) == defaults
    with pytest.raises(ValueError, match=r"^rate_limits: 'CreateThing' is not an API this module calls"):
        merge_rate_limits(defaults, {"CreateThing": 5})
    with pytest.raises(ValueError, match=r"^rate_limits.DetachPolicy: 0 is not a positive number"):
        merge_rate_limits(defaults, {"DetachPolicy": 0})


def test_burst_seconds_start_full_with_one_seconds_worth_then_pace(clock):
    """Like AWS's own buckets: a second's worth at once, then the rate (100 at 10/s: 9 s, not 9.9 s)."""
    rates = {"UpdateCertificate": 10, "DescribeThing": 350}
    limiter = RateLimiter(rates, clock=clock, sleep=clock.sleep, burst_seconds=1)
    start = clock.now

    waits = [limiter.acquire("UpdateCertificate") for _turn in range(100)]

    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1] * 90)
    assert clock.now - start == pytest.approx(9.0)
    assert [limiter.acquire("DescribeThing") for _turn in range(350)] == [0.0] * 350
    assert limiter.acquire("DescribeThing") > 0


def test_without_burst_seconds_a_bucket_holds_one_token(clock):
    limiter = RateLimiter({"UpdateCertificate": 10}, clock=clock, sleep=clock.sleep)

    assert [limiter.acquire("UpdateCertificate") for _turn in range(3)] == pytest.approx([0.0, 0.1, 0.1])
