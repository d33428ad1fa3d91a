"""Classic (unnamed) device shadows over MQTT, served from moto's iot-data shadows (the rules bridge runs it).

A device publishes to `$aws/things/<thing>/shadow/<request>` and gets AWS's answers:
- `get`    -> GetThingShadow    -> `get/accepted` (the document with `delta`), or `get/rejected` 404;
- `update` -> UpdateThingShadow -> `update/accepted`, `update/documents` (previous and current) and,
              when the request changes `desired` and desired != reported, `update/delta`;
              a bad document -> `update/rejected` 400, a version conflict -> 409;
- `delete` -> DeleteThingShadow -> `delete/accepted`, or `delete/rejected` 404.
A `clientToken` in the request is echoed in every answer. Changes made through the API (a playbook calling
UpdateThingShadow) are found by polling the shadows' versions (`shadow_ext`, one request a second): a
shadow whose version moved without this service's doing gets `update/delta` when it has a delta.

Not served: named shadows, `update/rejected` for payloads over 8 KB, persistent sessions' queued deltas.
"""

import json
import logging
import time

from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError

LOG = logging.getLogger("sandbox.shadow")
PREFIX = "$aws/things/"
REQUESTS = ("get", "update", "delete")
REQUEST_FILTERS = tuple(f"{PREFIX}+/shadow/{request}" for request in REQUESTS)
QOS = 1


def parse_request_topic(topic: str) -> tuple[str, str] | None:
    """(thing, request) for `$aws/things/<thing>/shadow/<get|update|delete>`, else None."""
    if not topic.startswith(PREFIX):
        return None
    parts = topic[len(PREFIX) :].split("/")
    if len(parts) != 3 or parts[1] != "shadow" or parts[2] not in REQUESTS or not parts[0]:
        return None
    return parts[0], parts[2]


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _status(exc: ClientError) -> int:
    code = _error_code(exc)
    known = {"ResourceNotFoundException": 404, "ConflictException": 409, "InvalidRequestException": 400}
    if code in known:
        return known[code]
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)


class ShadowService:
    """Answers shadow requests: `data` is a boto3 iot-data client, `publish(topic, payload)` sends to the broker."""

    def __init__(self, data, publish, clock=time.time):
        self.data = data
        self.publish = publish
        self.clock = clock
        self.known: dict[str, int] = {}  # thing -> shadow version this service has seen or made
        self.counts = {"requests": 0, "rejected": 0, "deltas": 0}

    def _send(self, thing: str, leaf: str, document: dict) -> None:
        self.publish(f"{PREFIX}{thing}/shadow/{leaf}", json.dumps(document).encode())

    def _reject(self, thing: str, request: str, code: int, message: str, token) -> None:
        self.counts["rejected"] += 1
        document = {"code": code, "message": message, "timestamp": int(self.clock())}
        if token is not None:
            document["clientToken"] = token
        self._send(thing, f"{request}/rejected", document)

    def _get(self, thing: str) -> dict | None:
        try:
            document = json.loads(self.data.get_thing_shadow(thingName=thing)["payload"].read())
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        self.known[thing] = max(self.known.get(thing, 0), int(document.get("version") or 0))
        return document

    def handle(self, topic: str, payload: bytes) -> None:
        """One request from a device (run it in the thing's worker: requests of one thing stay in order)."""
        parsed = parse_request_topic(topic)
        if parsed is None:
            return
        thing, request = parsed
        self.counts["requests"] += 1
        try:
            body = json.loads(payload) if payload.strip() else {}
        except (ValueError, UnicodeDecodeError):
            body = None
        token = body.get("clientToken") if isinstance(body, dict) else None
        try:
            if request == "get":
                self._handle_get(thing, token)
            elif request == "delete":
                self._handle_delete(thing, token)
            elif not isinstance(body, dict):
                self._reject(thing, request, 400, "Payload contains invalid json", token)
            else:
                self._handle_update(thing, body, payload, token)
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message") or _error_code(exc) or str(exc)
            self._reject(thing, request, _status(exc), message, token)
        except BotoCoreError as exc:
            LOG.warning("shadow %s of %s: the sandbox did not answer: %s", request, thing, exc)
            self._reject(thing, request, 500, "An internal error occurred", token)

    def _handle_get(self, thing: str, token) -> None:
        document = self._get(thing)
        if document is None:
            self._reject(thing, "get", 404, f"No shadow exists with name: '{thing}'", token)
            return
        if token is not None:
            document["clientToken"] = token
        self._send(thing, "get/accepted", document)

    def _handle_delete(self, thing: str, token) -> None:
        try:
            answer = json.loads(self.data.delete_thing_shadow(thingName=thing)["payload"].read())
        except ClientError as exc:
            if _status(exc) == 404:
                self._reject(thing, "delete", 404, f"No shadow exists with name: '{thing}'", token)
                return
            raise
        self.known[thing] = int(answer.get("version") or 0)
        document = {"version": answer.get("version"), "timestamp": answer.get("timestamp", int(self.clock()))}
        if token is not None:
            document["clientToken"] = token
        self._send(thing, "delete/accepted", document)

    def _handle_update(self, thing: str, body: dict, payload: bytes, token) -> None:
        state = body.get("state")
        if "state" not in body or not (state is None or isinstance(state, dict)):
            self._reject(thing, "update", 400, "Missing required node: state", token)
            return
        previous = self._get(thing)
        if "version" in body and (previous is None or previous.get("version") != body["version"]):
            # moto answers HTTP 500 for a version on a thing without shadow; AWS answers a conflict
            self._reject(thing, "update", 409, "Version conflict", token)
            return
        request = {key: value for key, value in body.items() if key != "clientToken"}
        answer = self.data.update_thing_shadow(thingName=thing, payload=json.dumps(request).encode())
        accepted = json.loads(answer["payload"].read())
        self.known[thing] = int(accepted.get("version") or 0)
        if token is not None:
            accepted["clientToken"] = token
        self._send(thing, "update/accepted", accepted)
        current = self._get(thing)
        if current is None:
            return
        documents = {
            "previous": _without_delta(previous),
            "current": _without_delta(current),
            "timestamp": accepted.get("timestamp", int(self.clock())),
        }
        if token is not None:
            documents["clientToken"] = token
        self._send(thing, "update/documents", documents)
        if isinstance(state, dict) and state.get("desired") is not None:
            self._send_delta(thing, current, token)

    def _send_delta(self, thing: str, document: dict, token=None) -> bool:
        delta = (document.get("state") or {}).get("delta")
        if not delta:
            return False
        metadata = (document.get("metadata") or {}).get("desired") or {}
        message = {
            "version": document.get("version"),
            "timestamp": document.get("timestamp", int(self.clock())),
            "state": delta,
            "metadata": {key: metadata[key] for key in delta if key in metadata},
        }
        if token is not None:
            message["clientToken"] = token
        self._send(thing, "update/delta", message)
        self.counts["deltas"] += 1
        return True

    # -- changes made through the API -------------------------------------------------------------

    def changed(self, versions: dict[str, int], first: bool) -> list[str]:
        """The things whose shadow moved past what this service knows (all known on the first poll)."""
        if first:
            for thing, version in versions.items():
                self.known.setdefault(thing, version)
            return []
        for thing, version in versions.items():
            if version < self.known.get(thing, 0):
                self.known[thing] = version  # the sandbox restarted: its shadows began again
        return [thing for thing, version in versions.items() if version > self.known.get(thing, 0)]

    def check(self, thing: str, version: int) -> None:
        """In the thing's worker: if its shadow is still newer than known, send the delta it has now."""
        if version <= self.known.get(thing, 0):
            return  # an update this service made in the meantime
        try:
            document = self._get(thing)
        except (ClientError, BotoCoreError) as exc:
            LOG.warning("shadow of %s: could not read it: %s", thing, exc)
            return
        if document is not None:
            self._send_delta(thing, document)


def _without_delta(document: dict | None) -> dict | None:
    if document is None:
        return None
    state = {key: value for key, value in (document.get("state") or {}).items() if key != "delta"}
    return {"state": state, "metadata": document.get("metadata") or {}, "version": document.get("version")}
