"""DiscordWebhook with presence event documents, a fake AppSync endpoint and a Discord stand-in."""

import json

import pytest
from common import operations

from .conftest import CONDITION_FAILED
from .conftest import DEVICE
from .conftest import DEVICE_ID
from .conftest import SETTINGS_PATH
from .conftest import FakeContext
from .conftest import load_event

CONNECTED = load_event("presence_connected")
DISCONNECTED = load_event("presence_disconnected")
RATE_LIMITED = b'{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}'


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def run_notify(module, event, budget=10.0):
    """Call the handler's logic with a recording sleep instead of time.sleep."""
    sleeps = Sleeps()
    result = module.notify(
        event, module.GRAPHQL, module.SETTINGS, module.LOGGER, 1_733_400_000_000, lambda: budget, sleeps
    )
    return result, sleeps


def test_posts_one_message_for_a_real_change(load_handler, appsync, discord, log_lines):
    module = load_handler("DiscordWebhook")

    result = module.handler(CONNECTED, FakeContext("iotfleet_DiscordWebhook"))

    assert result["outcome"] == "sent"
    (mark,) = appsync.requests
    assert mark.json()["query"] == operations.MARK_NOTIFIED
    assert mark.json()["variables"]["input"]["device_id"] == DEVICE_ID
    (post,) = discord.requests
    assert post.json() == {
        "username": "AWS-Webhook",
        "content": f"Device update\nDevice: {DEVICE_ID}\nStatus: connected",
        "allowed_mentions": {"parse": []},
    }
    assert post.headers["content-type"] == "application/json"
    assert not post.headers["user-agent"].startswith("Python-urllib")
    (line,) = log_lines()
    assert (line["message"], line["previous_status"], line["attempts"]) == ("notification_sent", None, 1)


def test_no_message_when_the_announced_status_is_unchanged(load_handler, appsync, discord, log_lines):
    appsync.answers["MarkNotified"] = {
        "data": {"markNotified": {"device_id": DEVICE_ID, "status": "connected", "previous_status": "connected"}}
    }
    module = load_handler("DiscordWebhook")

    result = module.handler(CONNECTED, FakeContext())

    assert result == {"outcome": "skipped", "reason": "status unchanged"}
    assert discord.requests == []
    (line,) = log_lines()
    assert line["message"] == "notification_skipped"


@pytest.mark.parametrize(
    "device, reason",
    [
        (DEVICE, "stale or duplicate event"),
        (None, "unknown device"),
        ({**DEVICE, "status": "revoked"}, "device revoked"),
    ],
    ids=["stale", "unknown", "revoked"],
)
def test_no_message_when_the_marker_refuses_the_event(load_handler, appsync, discord, log_lines, device, reason):
    appsync.answers["MarkNotified"] = {**CONDITION_FAILED, "data": {"markNotified": None}}
    appsync.answers["GetDevice"] = {"data": {"getDevice": device}}
    module = load_handler("DiscordWebhook")

    result = module.handler(DISCONNECTED, FakeContext())

    assert result == {"outcome": "skipped", "reason": reason}
    assert discord.requests == []
    (line,) = log_lines()
    assert (line["message"], line["reason"]) == ("notification_skipped", reason)


def test_honours_429_retry_after_then_delivers_exactly_once(load_handler, discord, log_lines):
    discord.script = [(429, {"Content-Type": "application/json", "Retry-After": "1"}, RATE_LIMITED)]
    module = load_handler("DiscordWebhook")

    result, sleeps = run_notify(module, DISCONNECTED)

    assert sleeps == [0.25]
    assert len(discord.requests) == 2
    assert discord.requests[0].body == discord.requests[1].body
    assert discord.delivered() == [json.loads(discord.requests[1].body)]
    assert "Status: disconnected" in discord.delivered()[0]["content"]
    assert (result["outcome"], result["attempts"], result["http_status"]) == ("sent", 2, 204)
    assert [line["message"] for line in log_lines()] == ["notification_sent"]


def test_falls_back_to_the_retry_after_header(load_handler, discord):
    discord.script = [(429, {"Retry-After": "0.5"}, b"rate limited")]
    module = load_handler("DiscordWebhook")

    result, sleeps = run_notify(module, CONNECTED)

    assert (result["outcome"], sleeps) == ("sent", [0.5])


def test_the_handler_really_waits_for_retry_after(load_handler, discord):
    discord.script = [(429, {"Content-Type": "application/json"}, b'{"retry_after": 0.05, "global": false}')]
    module = load_handler("DiscordWebhook")

    result = module.handler(CONNECTED, FakeContext(remaining_ms=5_000))

    assert (result["outcome"], result["attempts"]) == ("sent", 2)


def test_gives_up_when_retry_after_exceeds_the_time_left(load_handler, discord, log_lines):
    discord.script = [(429, {}, b'{"retry_after": 30.0, "global": true}')]
    module = load_handler("DiscordWebhook")

    result, sleeps = run_notify(module, CONNECTED, budget=5.0)

    assert (result["outcome"], sleeps, len(discord.requests)) == ("failed", [], 1)
    (line,) = log_lines()
    assert (line["message"], line["level"], line["http_status"]) == ("notification_failed", "ERROR", 429)


def test_a_handler_near_its_timeout_does_not_post(load_handler, discord, log_lines):
    module = load_handler("DiscordWebhook")

    result = module.handler(CONNECTED, FakeContext(remaining_ms=500))

    assert (result["outcome"], result["attempts"]) == ("failed", 0)
    assert discord.requests == []
    assert [line["message"] for line in log_lines()] == ["notification_failed"]


def test_retries_server_errors_a_bounded_number_of_times(load_handler, discord, log_lines):
    discord.script = [(502, {}, b"bad gateway")] * 10
    module = load_handler("DiscordWebhook")

    result, sleeps = run_notify(module, CONNECTED)

    assert (result["outcome"], result["attempts"], len(discord.requests)) == ("failed", 4, 4)
    assert sleeps == [0.5, 1.0, 2.0]
    assert [line["message"] for line in log_lines()] == ["notification_failed"]


def test_does_not_retry_a_client_error(load_handler, discord):
    discord.script = [(404, {}, b'{"message": "Unknown Webhook", "code": 10015}')]
    module = load_handler("DiscordWebhook")

    result, sleeps = run_notify(module, CONNECTED)

    assert (result["outcome"], result["http_status"], sleeps, len(discord.requests)) == ("failed", 404, [], 1)


BAD_URLS = {
    "empty": "",
    "not a URL": "discord webhook",
    "relative": "/api/webhooks/1/token",
    "ftp": "ftp://discord.com/api/webhooks/1/token",
    "plain http to a remote host": "http://discord.com/api/webhooks/1/token",
    "https without a host": "https:///api/webhooks/1/token",
    "whitespace inside": "https://discord.com/api/webhooks/1/tok en",
    "bad port": "http://127.0.0.1:99999/api/webhooks/1/token",
    "bad IPv6 host": "https://[::1/api/webhooks/1/token",
}


@pytest.mark.parametrize("url", list(BAD_URLS.values()), ids=list(BAD_URLS))
def test_a_malformed_webhook_url_is_logged_not_a_crash(load_handler, ssm, appsync, discord, log_lines, url):
    ssm.put_parameter(
        Name=SETTINGS_PATH + "CUSTOM_DISCORD_ENDPOINT", Value=url or " ", Type="SecureString", Overwrite=True
    )
    module = load_handler("DiscordWebhook")

    result = module.handler(CONNECTED, FakeContext())

    assert result["outcome"] == "not_configured"
    assert appsync.requests == [] and discord.requests == []
    (line,) = log_lines()
    assert (line["message"], line["level"]) == ("notification_not_configured", "WARNING")
    assert "token" not in json.dumps(line)


def test_a_missing_webhook_setting_is_logged_not_a_crash(load_handler, ssm, appsync, discord, log_lines):
    ssm.delete_parameter(Name=SETTINGS_PATH + "CUSTOM_DISCORD_ENDPOINT")
    module = load_handler("DiscordWebhook")

    result = module.handler(DISCONNECTED, FakeContext())

    assert result == {"outcome": "not_configured", "reason": "CUSTOM_DISCORD_ENDPOINT is not set"}
    assert appsync.requests == [] and discord.requests == []
    assert [line["message"] for line in log_lines()] == ["notification_not_configured"]


def test_accepts_https_and_local_http_urls(load_handler):
    module = load_handler("DiscordWebhook")

    for url in (
        "https://discord.com/api/webhooks/123456789012345678/abcDEF-123_x",
        "https://ptb.discord.com/api/webhooks/1/x",
        "http://127.0.0.1:8080/api/webhooks/1/x",
        "http://localhost/hook",
    ):
        assert module.webhook_url_problem(url) is None, url


@pytest.mark.parametrize(
    "event",
    [
        {**CONNECTED, "eventType": "subscribed"},
        {**CONNECTED, "clientId": "iotconsole-1"},
        {**DISCONNECTED, "timestamp": "yesterday"},
        "connected",
    ],
    ids=["unknown eventType", "not a thing", "bad timestamp", "not an object"],
)
def test_bad_events_send_nothing(load_handler, appsync, discord, log_lines, event):
    module = load_handler("DiscordWebhook")

    result = module.handler(event, FakeContext())

    assert result["outcome"] == "rejected"
    assert appsync.requests == [] and discord.requests == []
    (line,) = log_lines()
    assert line["message"] == "notification_rejected"


def test_the_webhook_url_never_reaches_the_logs(load_handler, discord, capsys):
    discord.script = [(500, {}, b"")]
    module = load_handler("DiscordWebhook")

    module.handler(CONNECTED, FakeContext())

    assert "fake-token" not in capsys.readouterr().out
