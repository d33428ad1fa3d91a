#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: discord_notify
version_added: 0.1.0
short_description: Post messages to a Discord webhook, in order, honouring Discord's rate limits
description:
  - Posts each message of O(messages) to the webhook O(webhook_url) (Discord's "Execute Webhook",
    C(POST) with a JSON body), one after the other, in one task - a loop of M(ansible.builtin.uri) costs
    a module start per message.
  - Honours Discord's rate limits - an answer C(429) is retried after the C(retry_after) seconds it gives
    (its body, else the C(Retry-After) header), at most O(max_retries) times per message; and when a
    successful answer says the bucket is empty (C(X-RateLimit-Remaining) 0), the next message waits
    C(X-RateLimit-Reset-After) seconds first. Discord lets a webhook take about 5 requests every 2 seconds,
    so 100 messages take about 40 seconds against the real Discord.
  - The webhook URL holds the webhook's token, a secret - it is never logged or returned, also not in error
    messages.
  - Stops at the first message Discord refuses (other than 429); RV(sent) says how many went out before it.
author:
  - iotfleet developers (@iotfleet)
options:
  webhook_url:
    description:
      - The webhook's URL, C(https://discord.com/api/webhooks/ID/TOKEN) (keep it in a vault), or a local stand-in.
    type: str
    required: true
  messages:
    description:
      - The messages. A string is a message's C(content) (up to 2000 characters). A dict is a whole webhook
        payload - C(content) or C(embeds), and optionally C(username), C(avatar_url) and so on, as Discord's
        Execute Webhook takes them.
      - An empty list posts nothing.
    type: list
    elements: raw
    required: true
  username:
    description:
      - The sender name shown for the messages that do not name one themselves; empty - the webhook's own name.
    type: str
    default: ""
  max_retries:
    description:
      - How many times one message is retried after a C(429) answer before the module fails.
    type: int
    default: 5
  max_retry_after:
    description:
      - The longest wait, in seconds, the module accepts from Discord before a retry; a longer C(retry_after)
        fails the module rather than blocking the play.
    type: float
    default: 60
  timeout:
    description: Seconds to wait for each answer.
    type: int
    default: 10
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: In check mode nothing is posted; RV(sent) is the number of messages that would be.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
"""

EXAMPLES = r"""
- name: Announce the revoked devices, one message each
  iotfleet.aws.discord_notify:
    webhook_url: "{{ iotfleet_discord_webhook_url }}"
    username: AWS-Webhook
    messages: "{{ revoked | map('regex_replace', '^', 'Revoked: ') | list }}"

- name: One message with a sender name
  iotfleet.aws.discord_notify:
    webhook_url: "{{ iotfleet_discord_webhook_url }}"
    messages:
      - username: AWS-Webhook
        content: "Device update\nDevice: 4827E2E59190\nStatus: revoked"
"""

RETURN = r"""
sent:
  description: How many messages were posted (in check mode, would be).
  returned: always
  type: int
  sample: 3
rate_limited:
  description: How many C(429) answers Discord gave (each was waited for and retried).
  returned: always
  type: int
  sample: 0
seconds:
  description: Wall-clock seconds the messages took.
  returned: always
  type: float
  sample: 0.31
"""

import http.client
import json
import ssl
import time
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule


class DiscordError(Exception):
    pass


def _float(value):
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _header(headers, name):
    value = headers.get(name) if headers is not None else None
    return _float(value) if value is not None else None


class Webhook:
    """Posts to one webhook URL; the URL never appears in an exception's text."""

    def __init__(self, url, timeout, max_retries, max_retry_after, sleep=None):
        self._url = url
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.sleep = sleep or time.sleep
        self.rate_limited = 0
        self._wait_before_next = 0.0
        self._conn = None
        self._path = None

    def _connection(self):
        """One kept-alive connection for all messages (a new HTTP(S) connection each costs far more)."""
        if self._conn is None:
            url = urlsplit(self._url)
            if url.scheme == "https":
                context = ssl.create_default_context()
                self._conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=self.timeout, context=context)
            elif url.scheme == "http":
                self._conn = http.client.HTTPConnection(url.hostname, url.port, timeout=self.timeout)
            else:
                raise DiscordError("webhook_url: must be an http:// or https:// URL")
            self._path = url.path + (f"?{url.query}" if url.query else "")
        return self._conn

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, payload):
        """(status, headers, body) of one POST; reconnects once if the kept-alive connection was closed."""
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "iotfleet.aws discord_notify"}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request("POST", self._path, body=data, headers=headers)
                response = connection.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt:
                    raise DiscordError(f"the webhook did not answer ({type(e).__name__})") from None
                continue
            except (http.client.HTTPException, OSError) as e:
                self.close()
                raise DiscordError(f"the webhook did not answer ({type(e).__name__}: {e})") from None
            if response.getheader("Connection", "").lower() == "close" or response.version < 11:
                self.close()
            return response.status, response.headers, body
        raise DiscordError("the webhook did not answer")

    def send(self, index, payload):
        if self._wait_before_next:
            self.sleep(self._wait_before_next)
            self._wait_before_next = 0.0
        for _attempt in range(self.max_retries + 1):
            status, headers, body = self._post(payload)
            if 200 <= status < 300:
                if _header(headers, "X-RateLimit-Remaining") == 0:
                    self._wait_before_next = _header(headers, "X-RateLimit-Reset-After") or 0.0
                return
            if status != 429:
                raise DiscordError(f"message {index}: the webhook answered HTTP {status}: {body[:300]!r}")
            self.rate_limited += 1
            try:
                retry_after = _float(json.loads(body or b"{}").get("retry_after"))
            except (ValueError, AttributeError):
                retry_after = None
            if retry_after is None:
                retry_after = _header(headers, "Retry-After") or 1.0
            if retry_after > self.max_retry_after:
                raise DiscordError(
                    f"message {index}: Discord asks to wait {retry_after} s (more than max_retry_after)"
                )
            self.sleep(retry_after)
        raise DiscordError(f"message {index}: still rate-limited (HTTP 429) after {self.max_retries} retries")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            webhook_url=dict(type="str", required=True, no_log=True),
            messages=dict(type="list", elements="raw", required=True),
            username=dict(type="str", default=""),
            max_retries=dict(type="int", default=5),
            max_retry_after=dict(type="float", default=60),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    params = module.params
    messages = []
    for index, message in enumerate(params["messages"]):
        if isinstance(message, str):
            message = dict(content=message)
        if not isinstance(message, dict) or not (message.get("content") or message.get("embeds")):
            module.fail_json(msg=f"messages[{index}]: a message is a string, or a dict with content or embeds.")
        if params["username"] and "username" not in message:
            message = dict(message, username=params["username"])
        messages.append(message)
    if params["max_retries"] < 0:
        module.fail_json(msg="max_retries: must be 0 or more.")
    if module.check_mode or not messages:
        module.exit_json(changed=bool(messages), sent=len(messages), rate_limited=0, seconds=0.0)

    webhook = Webhook(params["webhook_url"], params["timeout"], params["max_retries"], params["max_retry_after"])
    started = time.monotonic()
    sent = 0
    try:
        for index, message in enumerate(messages):
            webhook.send(index, message)
            sent += 1
    except DiscordError as e:
        webhook.close()
        module.fail_json(
            msg=f"{e}; {sent} of {len(messages)} messages were sent.",
            changed=sent > 0,
            sent=sent,
            rate_limited=webhook.rate_limited,
            seconds=round(time.monotonic() - started, 3),
        )
    webhook.close()
    module.exit_json(
        changed=True, sent=sent, rate_limited=webhook.rate_limited, seconds=round(time.monotonic() - started, 3)
    )


if __name__ == "__main__":
    main()
