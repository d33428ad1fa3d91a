"""discord_notify against a local HTTP server that answers like Discord's Execute Webhook."""

import json
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from ansible_collections.iotfleet.aws.plugins.modules import discord_notify

TOKEN = "webhook-token-0123456789"


class Discord:
    """Records the POSTs; `answers` is a queue of (status, headers, body) to give before answering 204."""

    def __init__(self):
        self.posts = []
        self.answers = []
        self.lock = threading.Lock()


@pytest.fixture
def discord():
    state = Discord()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                answer = state.answers.pop(0) if state.answers else (204, {}, b"")
                if answer[0] < 300:
                    state.posts.append((self.path, self.headers["Content-Type"], json.loads(body)))
            status, headers, payload = answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/42/{TOKEN}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps(monkeypatch):
    """The waits the module asks for, without waiting."""
    waited = []
    monkeypatch.setattr(discord_notify.time, "sleep", waited.append)
    return waited


@pytest.fixture
def notify(run_module, discord, sleeps):
    def run(messages, expect_failure=False, check_mode=False, **options):
        args = dict(webhook_url=discord.url, messages=messages, **options)
        return run_module(discord_notify, args, check_mode=check_mode, expect_failure=expect_failure, region=None)

    return run


def test_posts_every_message_in_order(notify, discord):
    result = notify(["Device: A", {"content": "Device: B", "username": "someone"}], username="AWS-Webhook")

    assert result["changed"] is True and result["sent"] == 2 and result["rate_limited"] == 0
    assert [post[2] for post in discord.posts] == [
        {"content": "Device: A", "username": "AWS-Webhook"},
        {"content": "Device: B", "username": "someone"},
    ]
    assert all(
        path == f"/api/webhooks/42/{TOKEN}" and kind == "application/json" for path, kind, _body in discord.posts
    )


def test_a_429_is_waited_for_as_discord_says_and_retried(notify, discord, sleeps):
    limited = json.dumps({"message": "You are being rate limited.", "retry_after": 0.7, "global": False}).encode()
    discord.answers = [(429, {"Content-Type": "application/json"}, limited), (429, {"Retry-After": "2"}, b"")]

    result = notify(["one", "two"])

    assert result["sent"] == 2 and result["rate_limited"] == 2
    assert sleeps == [0.7, 2.0]  # the body's retry_after, else the Retry-After header
    assert [post[2]["content"] for post in discord.posts] == ["one", "two"]


def test_an_empty_bucket_delays_the_next_message(notify, discord, sleeps):
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"}
    discord.answers = [(204, headers, b"")]

    result = notify(["one", "two"])

    assert result["sent"] == 2 and sleeps == [1.5]


def test_still_limited_after_the_retries_fails(notify, discord):
    discord.answers = [(429, {}, json.dumps({"retry_after": 0.1}).encode())] * 3

    result = notify(["one"], max_retries=2, expect_failure=True)

    assert "still rate-limited (HTTP 429) after 2 retries" in result["msg"]
    assert result["sent"] == 0 and discord.posts == []


def test_a_refused_message_stops_and_the_url_never_shows(notify, discord):
    discord.answers = [(204, {}, b""), (404, {}, json.dumps({"message": "Unknown Webhook"}).encode())]

    result = notify(["one", "two", "three"], expect_failure=True)

    assert "message 1: the webhook answered HTTP 404" in result["msg"] and "1 of 3 messages" in result["msg"]
    assert result["sent"] == 1 and result["changed"] is True
    assert TOKEN not in json.dumps(result)


def test_an_unreachable_webhook_fails_without_the_url(run_module):
    url = f"http://127.0.0.1:9/api/webhooks/42/{TOKEN}"  # the discard port: nothing listens

    result = run_module(discord_notify, dict(webhook_url=url, messages=["one"]), expect_failure=True, region=None)

    assert "the webhook did not answer" in result["msg"]
    assert TOKEN not in json.dumps(result)


def test_the_webhook_url_is_no_log():
    spec = {}

    class Capture(Exception):
        pass

    def capture(**kwargs):
        spec.update(kwargs["argument_spec"])
        raise Capture

    original = discord_notify.AnsibleModule
    discord_notify.AnsibleModule = capture
    try:
        with pytest.raises(Capture):
            discord_notify.main()
    finally:
        discord_notify.AnsibleModule = original
    assert spec["webhook_url"]["no_log"] is True


def test_check_mode_and_no_messages_post_nothing(notify, discord):
    planned = notify(["one", "two"], check_mode=True)
    nothing = notify([])

    assert (planned["changed"], planned["sent"]) == (True, 2)
    assert (nothing["changed"], nothing["sent"]) == (False, 0)
    assert discord.posts == []


@pytest.mark.parametrize("message", ["", {"username": "x"}, 3])
def test_a_message_without_content_is_refused(notify, discord, message):
    result = notify(["fine", message], expect_failure=True)

    assert "messages[1]: a message is a string, or a dict with content or embeds" in result["msg"]
    assert discord.posts == []
