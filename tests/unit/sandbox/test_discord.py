"""The Discord webhook stand-in: accepts what Discord accepts (204), refuses what it refuses (400), keeps messages."""

import dataclasses
import json
import threading
import urllib.error
import urllib.request

import pytest

from sandbox import discord
from sandbox.settings import Settings
from tests.unit.sandbox.conftest import free_port


@pytest.fixture
def standin(tmp_path):
    settings = Settings(state_dir=tmp_path, port=free_port(), region="eu-north-1", discord_port=free_port())
    server = discord.serve(settings.host, settings.discord_port, discord.messages_file(settings))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield settings
    finally:
        server.shutdown()
        server.server_close()


def post(url, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_webhook_message_is_answered_204_and_kept(standin):
    body = {"username": "AWS-Webhook", "content": "Device update\nDevice: A\nStatus: connected"}
    assert post(standin.discord_url, body) == (204, b"")
    assert post(standin.discord_url, {"embeds": [{"title": "t"}]}) == (204, b"")
    assert discord.messages(standin) == [body, {"embeds": [{"title": "t"}]}]
    assert all(entry["received_ms"] > 0 for entry in discord.entries(standin))
    assert (discord.messages_file(standin)).parent == standin.state_dir / "discord"


def test_wait_true_answers_the_message(standin):
    status, answer = post(standin.discord_url + "?wait=true", {"content": "hi"})
    assert status == 200
    assert json.loads(answer)["content"] == "hi"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", 50109),
        (b"[1, 2]", 50035),
        ({}, 50006),
        ({"content": "   "}, 50006),
        ({"content": 5}, 50035),
        ({"content": "x" * 2001}, 50035),
        ({"embeds": "no"}, 50035),
    ],
)
def test_a_malformed_body_is_answered_400_and_not_kept(standin, body, code):
    status, answer = post(standin.discord_url, body)
    assert status == 400
    assert json.loads(answer)["code"] == code
    assert discord.messages(standin) == []


def test_another_path_is_an_unknown_webhook(standin):
    url = f"http://{standin.host}:{standin.discord_port}/api/webhooks/other"
    status, answer = post(url, {"content": "x"})
    assert (status, json.loads(answer)["code"]) == (404, 10015)


def test_no_messages_before_the_first(tmp_path):
    assert discord.messages(Settings(state_dir=tmp_path, port=1, region="r")) == []


def test_up_status_down(tmp_path):
    settings = dataclasses.replace(
        Settings(state_dir=tmp_path, port=free_port(), region="eu-north-1"), discord_port=free_port()
    )
    assert discord.up(settings) == 0
    try:
        pid = discord.running_pid(settings)
        assert pid is not None
        assert post(settings.discord_url, {"content": "hello"}) == (204, b"")
        assert discord.status_line(settings).endswith("1 message(s)")
        assert discord.up(settings) == 0  # already running: same process
        assert discord.running_pid(settings) == pid
    finally:
        discord.down(settings)
    assert discord.running_pid(settings) is None
    assert discord.status_line(settings) == "discord stand-in not running"
    assert discord.messages(settings) == [{"content": "hello"}]
