"""The Discord webhook stand-in: an HTTP server on 127.0.0.1:settings.discord_port that takes webhook POSTs.

`POST /api/webhooks/sandbox/discord` (settings.discord_url) with a JSON body that has a non-empty
`content` (at most 2000 characters) or `embeds` answers 204 No Content, as Discord does (200 with the
message when `?wait=true`), and appends the message to `<state>/discord/messages.jsonl` as
`{"received_ms": ..., "message": <the body>}`; `messages(settings)` reads them back (tests). A malformed
body answers 400 with Discord's error shape (`{"message": ..., "code": ...}`), another path 404
"Unknown Webhook". `up` starts it detached (pid file `discord.pid`, log `discord.log`), `down` stops it.
"""

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from sandbox import procs
from sandbox.settings import Settings

WEBHOOK_PATH = "/api/webhooks/sandbox/discord"
HEALTH = "/iotfleet-sandbox/health"
MAX_CONTENT = 2000
MAX_BODY = 1 << 20
START_TIMEOUT = 10.0


def messages_file(settings: Settings) -> Path:
    return settings.state_dir / "discord" / "messages.jsonl"


def pid_file(settings: Settings) -> Path:
    return settings.state_dir / "discord.pid"


def log_file(settings: Settings) -> Path:
    return settings.state_dir / "discord.log"


def messages(settings: Settings) -> list[dict]:
    """Every message the stand-in accepted, oldest first (the posted JSON bodies)."""
    return [entry["message"] for entry in entries(settings)]


def entries(settings: Settings) -> list[dict]:
    """Like messages(), with when each arrived: [{"received_ms": ..., "message": {...}}]."""
    try:
        lines = messages_file(settings).read_text().splitlines()
    except FileNotFoundError:
        return []
    result = []
    for line in lines:
        with contextlib.suppress(ValueError):
            result.append(json.loads(line))
    return result


def problem(body: bytes) -> tuple[dict, int] | None:
    """None if Discord would accept the body, else (error document, code)."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {"message": "The request body contains invalid JSON.", "code": 50109}, 400
    if not isinstance(message, dict):
        return {"message": "Invalid Form Body", "code": 50035}, 400
    content = message.get("content")
    embeds = message.get("embeds")
    if content is not None and not isinstance(content, str):
        return {"message": "Invalid Form Body", "code": 50035, "errors": {"content": "must be a string"}}, 400
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        too_long = {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
        errors = {"content": {"_errors": [too_long]}}
        return {"message": "Invalid Form Body", "code": 50035, "errors": errors}, 400
    if embeds is not None and not (isinstance(embeds, list) and all(isinstance(e, dict) for e in embeds)):
        return {"message": "Invalid Form Body", "code": 50035, "errors": {"embeds": "must be a list of objects"}}, 400
    if not (content and content.strip()) and not embeds:
        return {"message": "Cannot send an empty message", "code": 50006}, 400
    return None


class Handler(BaseHTTPRequestHandler):
    server_version = "iotfleet-discord-standin/1"
    lock = threading.Lock()
    store: Path = Path("/nonexistent")

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()

    def _answer(self, status: int, document: dict | None = None) -> None:
        data = json.dumps(document).encode() if document is not None else b""
        self.send_response(status)
        if document is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == HEALTH:
            self._answer(200, {"service": "discord", "pid": _pid()})
            return
        status = 405 if urlsplit(self.path).path == WEBHOOK_PATH else 404
        self._answer(status, {"message": "Unknown Webhook", "code": 10015})

    def do_POST(self):  # noqa: N802
        url = urlsplit(self.path)
        if url.path != WEBHOOK_PATH:
            self._answer(404, {"message": "Unknown Webhook", "code": 10015})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, {"message": "Request entity too large", "code": 40005})
            return
        body = self.rfile.read(length)
        error = problem(body)
        if error is not None:
            self._answer(error[1], error[0])
            return
        message = json.loads(body)
        entry = {"received_ms": int(time.time() * 1000), "message": message}
        with self.lock:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            with open(self.store, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")
        if "wait=true" in (url.query or "").lower():
            self._answer(200, {"id": str(entry["received_ms"]), "content": message.get("content", ""), **message})
        else:
            self._answer(204)


def _pid() -> int:
    return os.getpid()


def serve(host: str, port: int, store: Path) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"store": store, "lock": threading.Lock()})
    return ThreadingHTTPServer((host, port), handler)


# -- the process ----------------------------------------------------------------------------------


def health(settings: Settings) -> dict | None:
    try:
        url = f"http://{settings.host}:{settings.discord_port}{HEALTH}"
        with urllib.request.urlopen(url, timeout=1) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def running_pid(settings: Settings) -> int | None:
    return procs.running_pid(pid_file(settings), "sandbox.discord", str(settings.discord_port))


def _port_taken(settings: Settings) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((settings.host, settings.discord_port)) == 0


def up(settings: Settings) -> int:
    pid = running_pid(settings)
    if pid is not None and (health(settings) or {}).get("pid") == pid:
        print(f"discord stand-in already running (pid {pid}) at {settings.discord_url}")
        return 0
    if pid is not None:
        procs.stop(pid)
    pid_file(settings).unlink(missing_ok=True)
    if _port_taken(settings):
        print(f"discord stand-in not started: port {settings.discord_port} is taken")
        return 0
    command = [sys.executable, "-m", "sandbox.discord", "--port", str(settings.discord_port)]
    command += ["--host", settings.host, "--store", str(messages_file(settings))]
    note = f"starting on {settings.discord_url}"
    process = procs.spawn(command, log_file(settings), pid_file(settings), note)
    if procs.wait_ready(process, lambda: (health(settings) or {}).get("pid") == process.pid, START_TIMEOUT, 0.1):
        print(f"discord stand-in started (pid {process.pid}) at {settings.discord_url}")
        return 0
    if process.returncode is not None:
        pid_file(settings).unlink(missing_ok=True)
        print(f"discord stand-in failed to start; see {log_file(settings)}", file=sys.stderr)
        return 1
    procs.take_down(pid_file(settings), process.pid)
    print(f"discord stand-in did not answer within {START_TIMEOUT:.0f} s; see {log_file(settings)}", file=sys.stderr)
    return 1


def down(settings: Settings) -> None:
    pid = running_pid(settings)
    if procs.take_down(pid_file(settings), pid):
        print(f"discord stand-in stopped (pid {pid})")


def status_line(settings: Settings) -> str:
    pid = running_pid(settings)
    if pid is None:
        return "discord stand-in not running"
    return f"discord stand-in running (pid {pid}) at {settings.discord_url}, {len(entries(settings))} message(s)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.discord", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--store", required=True)
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, Path(args.store))
    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
