"""Fixtures for the Lambda handlers: their real event shapes, a fake context, settings in moto's SSM,
a fake AppSync endpoint and a Discord stand-in, both local HTTP servers that record what they get."""

import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LAMBDAS = ROOT / "files" / "lambdas"
EVENTS = Path(__file__).resolve().parent / "events"
SETTINGS_PATH = "/amplify/shared/d2example1234/"
API_KEY = "da2-fakeapikeyfortests"
DEVICE_ID = "4827E2E59190"
DEVICE = {"device_id": DEVICE_ID, "owner": "owner@example.com", "status": "disconnected", "last_seen": None}

# The functions import `common` the way the deployed zip lays it out (common/ next to handler.py).
sys.path.insert(0, str(LAMBDAS))


def load_event(name):
    return json.loads((EVENTS / f"{name}.json").read_text())


class FakeContext:
    """The attributes and method of the Lambda context object the handlers use."""

    def __init__(self, function_name="iotfleet_CoreTelemetry", remaining_ms=30_000):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.aws_request_id = "5f6b2c7e-0000-4000-8000-000000000001"
        self.memory_limit_in_mb = 128
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self):
        return self.remaining_ms


class Recorded:
    def __init__(self, path, headers, body):
        self.path = path
        self.headers = headers
        self.body = body
        self.status = None

    def json(self):
        return json.loads(self.body)


class RecordingServer:
    """A local HTTP server: records every POST and answers with `respond(recorded)`."""

    def __init__(self, respond):
        self.respond = respond
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                server.requests.append(recorded)
                status, headers, reply = server.respond(recorded)
                recorded.status = status
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format, *args):
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeAppSync(RecordingServer):
    """Answers by operationName from `answers`: a dict value, or a callable(variables) -> body."""

    def __init__(self):
        self.answers = {
            "GetDevice": {"data": {"getDevice": dict(DEVICE)}},
            "CreateTelemetry": lambda variables: {"data": {"createTelemetry": variables["input"]}},
            "UpdateDeviceStatus": lambda variables: {"data": {"updateDeviceStatus": {**DEVICE, **variables["input"]}}},
            "MarkNotified": lambda variables: {
                "data": {"markNotified": {"device_id": DEVICE_ID, "status": variables["input"]["status"]}}
            },
        }
        self.status = 200
        super().__init__(self.answer)
        self.url += "/graphql"

    def answer(self, recorded):
        request = recorded.json()
        answer = self.answers[request["operationName"]]
        body = answer(request["variables"]) if callable(answer) else answer
        return self.status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def operations(self):
        return [request.json()["operationName"] for request in self.requests]


CONDITION_FAILED = {
    "data": {"updateDeviceStatus": None},
    "errors": [
        {
            "path": ["updateDeviceStatus"],
            "errorType": "DynamoDB:ConditionalCheckFailedException",
            "message": "The conditional request failed (Service: DynamoDb, Status Code: 400)",
        }
    ],
}


class FakeDiscord(RecordingServer):
    """Answers from `script`, a list of (status, headers, body) used in order; 204 once it runs out."""

    def __init__(self):
        self.script = []
        super().__init__(self.answer)
        self.url += "/api/webhooks/123456789012345678/fake-token"

    def answer(self, recorded):
        if self.script:
            return self.script.pop(0)
        return 204, {}, b""

    def delivered(self):
        """Bodies of the messages the stand-in accepted."""
        return [request.json() for request in self.requests if 200 <= request.status < 300]


@pytest.fixture
def appsync():
    server = FakeAppSync()
    yield server
    server.close()


@pytest.fixture
def discord():
    server = FakeDiscord()
    yield server
    server.close()


@pytest.fixture
def ssm(aws):
    import boto3

    return boto3.client("ssm", region_name=aws)


@pytest.fixture
def lambda_env(aws, ssm, appsync, discord, monkeypatch):
    """The function's environment and its SSM settings, as the lambdas role deploys them."""
    monkeypatch.setenv("AWS_REGION", aws)
    monkeypatch.setenv("IOTFLEET_SETTINGS_PATH", SETTINGS_PATH)
    monkeypatch.setenv("IOTFLEET_RETENTION_DAYS", "30")
    monkeypatch.delenv("IOTFLEET_GRAPHQL_AUTH", raising=False)
    for name, value in (
        ("CUSTOM_LAMBDA_GRAPHQL_ENDPOINT", appsync.url),
        ("CUSTOM_LAMBDA_GRAPHQL_KEY", API_KEY),
        ("CUSTOM_DISCORD_ENDPOINT", discord.url),
    ):
        ssm.put_parameter(Name=SETTINGS_PATH + name, Value=value, Type="SecureString")
    return monkeypatch


@pytest.fixture
def load_handler(lambda_env):
    """load_handler("CoreTelemetry") -> a fresh import of that function's handler.py (module scope runs)."""

    def load(name):
        spec = importlib.util.spec_from_file_location(f"handler_{name}", LAMBDAS / name / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def log_lines(capsys):
    """log_lines() -> the JSON log lines written so far (each must parse)."""

    def read():
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]

    return read
