"""DiscordWebhook: one Discord message per real change of a device's connection status.

Invoked by the presence rule in parallel with CoreStatus, on the same events. It does not read
what CoreStatus wrote (that would race); it keeps its own marker in the device item instead:
`markNotified` records the event as the last one notified only if DynamoDB agrees, atomically,
that the device is registered, not revoked, and the event is newer than the last one notified
(the same ordering as CoreStatus, common.presence). The mutation returns the status notified
before; a message goes out only when that differs. So duplicates, stale events and two
parallel invocations produce no second message, and after a quick reconnect whose events
arrive out of order the channel is not left saying "disconnected".

The marker is written before posting: at most one message per change. If Discord still fails
after the retries the time budget allows, the failure is logged and not raised, because a
retried invocation would find the marker set and post nothing anyway.
"""

import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
from common import validation
from common.graphql import INFRA_ERRORS
from common.graphql import ConditionFailed
from common.graphql import GraphQLClient
from common.logs import JsonLogger
from common.logs import describe
from common.operations import MARK_NOTIFIED
from common.operations import refusal_reason
from common.presence import parse_presence
from common.settings import DISCORD_ENDPOINT
from common.settings import SettingsCache

USERNAME = "AWS-Webhook"
USER_AGENT = "iotfleet-aws-DiscordWebhook/0.1"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_ATTEMPTS = 4
REQUEST_TIMEOUT_SECONDS = 5.0
SERVER_ERROR_BACKOFF_SECONDS = 0.5
DEFAULT_RETRY_AFTER_SECONDS = 1.0
# Time kept back from the Lambda timeout for the last log line.
SAFETY_MARGIN_SECONDS = 1.0

LOGGER = JsonLogger("DiscordWebhook")
SESSION = boto3.Session()
SETTINGS = SettingsCache.from_environment(SESSION.client("ssm"))
GRAPHQL = GraphQLClient.from_environment(SETTINGS, SESSION)


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    http_status: int | None
    detail: str


def webhook_url_problem(url):
    """None if `url` is usable: https to any host, or http to this machine (the sandbox's stand-in)."""
    if not url:
        return f"{DISCORD_ENDPOINT} is not set"
    if not isinstance(url, str) or any(char.isspace() or not char.isprintable() for char in url):
        return f"{DISCORD_ENDPOINT} contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return f"{DISCORD_ENDPOINT} is not a valid URL"
    if port == 0:
        return f"{DISCORD_ENDPOINT} has port 0"
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host in LOOPBACK_HOSTS:
        return None
    return f"{DISCORD_ENDPOINT} must be an https URL (plain http only to 127.0.0.1 or localhost)"


def message(presence):
    return {
        "username": USERNAME,
        "content": f"Device update\nDevice: {presence.device_id}\nStatus: {presence.status}",
        "allowed_mentions": {"parse": []},
    }


def rate_limit_wait(headers, body):
    """Seconds Discord asks us to wait: `retry_after` in the JSON body, else the Retry-After header."""
    try:
        retry_after = json.loads(body).get("retry_after")
    except (ValueError, AttributeError):
        retry_after = None
    if retry_after is None:
        retry_after = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(retry_after)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_SECONDS
    return seconds if math.isfinite(seconds) and seconds >= 0 else DEFAULT_RETRY_AFTER_SECONDS


def send(url, body, timeout, opener):
    """One POST: (HTTP status or None, headers, body, detail)."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": USER_AGENT}
    )
    try:
        with opener(request, timeout=timeout) as response:
            return response.status, response.headers, response.read(), "delivered"
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read(), f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return None, None, b"", f"unreachable: {exc}"


def deliver(url, payload, budget_seconds, sleep=time.sleep, clock=time.monotonic, opener=urllib.request.urlopen):
    """POST `payload`, honouring 429 retry_after and retrying 5xx, within `budget_seconds`."""
    deadline = clock() + budget_seconds
    body = json.dumps(payload).encode("utf-8")
    attempts, status, detail = 0, None, "no time left to send"
    while attempts < MAX_ATTEMPTS and deadline - clock() > 0:
        attempts += 1
        status, headers, reply, detail = send(url, body, min(REQUEST_TIMEOUT_SECONDS, deadline - clock()), opener)
        if status is not None and 200 <= status < 300:
            return Delivery(True, attempts, status, detail)
        if status == 429:
            wait = rate_limit_wait(headers, reply)
            detail = f"rate limited (retry_after {wait}s)"
        elif status is None or status >= 500:
            wait = SERVER_ERROR_BACKOFF_SECONDS * 2 ** (attempts - 1)
        else:
            return Delivery(False, attempts, status, f"{detail}: rejected by Discord")
        if attempts >= MAX_ATTEMPTS:
            break
        if wait > deadline - clock():
            return Delivery(False, attempts, status, f"{detail}; waiting {wait}s would exceed the time budget")
        sleep(wait)
    return Delivery(False, attempts, status, detail)


def notify(event, graphql, settings, logger, now_ms, budget_seconds, sleep=time.sleep):
    """Decide and, for a real change, post. `budget_seconds()` is the time left for posting."""
    try:
        presence = parse_presence(event, now_ms)
    except validation.BadEvent as exc:
        logger.warning("notification_rejected", reason=exc.reason, field=exc.field, value=describe(exc.value))
        return {"outcome": "rejected", "reason": exc.reason}
    fields = {"device_id": presence.device_id, "status": presence.status, "version_number": presence.version_number}
    url = settings.get(DISCORD_ENDPOINT)
    problem = webhook_url_problem(url)
    if problem:
        logger.warning("notification_not_configured", reason=problem, **fields)
        return {"outcome": "not_configured", "reason": problem}
    try:
        data = graphql.execute(MARK_NOTIFIED, {"input": presence.mutation_input()}, "MarkNotified")
    except ConditionFailed:
        reason = refusal_reason(graphql, presence.device_id)
        logger.info("notification_skipped", reason=reason, **fields)
        return {"outcome": "skipped", "reason": reason}
    previous = (data.get("markNotified") or {}).get("previous_status")
    if previous == presence.status:
        logger.info("notification_skipped", reason="status unchanged", **fields)
        return {"outcome": "skipped", "reason": "status unchanged"}
    delivery = deliver(url, message(presence), budget_seconds(), sleep=sleep)
    result = {"attempts": delivery.attempts, "http_status": delivery.http_status, "detail": delivery.detail}
    if delivery.delivered:
        logger.info("notification_sent", previous_status=previous, **fields, **result)
        return {"outcome": "sent", **result}
    logger.error("notification_failed", previous_status=previous, **fields, **result)
    return {"outcome": "failed", **result}


def handler(event, context):
    LOGGER.bind(context)

    def budget_seconds():
        return context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS

    try:
        return notify(event, GRAPHQL, SETTINGS, LOGGER, int(time.time() * 1000), budget_seconds)
    except INFRA_ERRORS as exc:
        LOGGER.error("notification_failed", error=str(exc))
        raise
