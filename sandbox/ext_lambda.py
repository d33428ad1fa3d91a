"""Lambda Invoke without Docker, for Python runtimes (moto 5.2.5 runs every invoke in a Docker container).

The deployed zip (moto keeps its bytes) is unpacked once per CodeSha256 into `<state>/lambda/<sha256>/`;
each invocation runs the handler there in a fresh `python -c <lambda_runner.py>` process of the
sandbox's own interpreter (so boto3 is there, as the runtime bundles it), with the function's
environment, AWS_ENDPOINT_URL pointing back at the sandbox and credentials `testing`. The function's
Timeout is enforced; results, errors and logs take the shapes AWS gives them.
"""

import base64
import contextlib
import io
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from datetime import UTC
from datetime import datetime
from pathlib import Path

from moto.awslambda.models import LambdaFunction
from moto.core.exceptions import JsonRESTError
from moto.core.utils import unix_time_millis

RUNNER = Path(__file__).with_name("lambda_runner.py")
# AWS allows 10 s for the init phase (imports) before the handler's own timeout starts.
INIT_SECONDS = 10
LOG_RESULT_BYTES = 4096
# Invocations running at once; more wait (the machine is small).
MAX_CONCURRENT = 4

_config = {"state_dir": None, "endpoint": None}
_slots = threading.BoundedSemaphore(MAX_CONCURRENT)
_original_invoke = None
_original_init = None
_original_get_configuration = None
_original_update_configuration = None


class InvalidRequestContentException(JsonRESTError):
    code = 400

    def __init__(self, message: str):
        super().__init__("InvalidRequestContentException", message)


def configure(state_dir: Path | None, endpoint: str | None) -> None:
    _config["state_dir"] = Path(state_dir) if state_dir else None
    _config["endpoint"] = endpoint


def install(patch) -> None:
    global _original_invoke, _original_init, _original_get_configuration, _original_update_configuration
    _original_invoke = patch(LambdaFunction, "invoke", invoke)
    _original_init = patch(LambdaFunction, "__init__", init_with_dead_letter_config)
    _original_get_configuration = patch(LambdaFunction, "get_configuration", get_configuration)
    _original_update_configuration = patch(LambdaFunction, "update_configuration", update_configuration)


# moto drops DeadLetterConfig on create and update and never returns it, so a module that compares
# it (amazon.aws.lambda) sees a change on every run.
def init_with_dead_letter_config(self, account_id, spec, region, version=1):
    _original_init(self, account_id, spec, region, version)
    self.dead_letter_config = spec.get("DeadLetterConfig") or {}


def get_configuration(self, *args, **kwargs):
    config = _original_get_configuration(self, *args, **kwargs)
    if getattr(self, "dead_letter_config", None):
        config["DeadLetterConfig"] = self.dead_letter_config
    return config


def update_configuration(self, config_updates):
    if "DeadLetterConfig" in config_updates:
        self.dead_letter_config = config_updates["DeadLetterConfig"] or {}
    return _original_update_configuration(self, config_updates)


def _cache_root() -> Path:
    root = _config["state_dir"] or Path(tempfile.gettempdir()) / f"iotfleet-sandbox-{os.getuid()}"
    return root / "lambda"


def code_dir(fn: LambdaFunction) -> Path:
    """The unpacked deployment package, shared by every invocation of the same code."""
    target = _cache_root() / fn.code_digest
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{fn.code_digest}.", dir=target.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as archive:
            archive.extractall(staging)  # zipfile drops absolute paths and '..'
        os.rename(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():  # not a concurrent unpack that won the race
            raise
    except zipfile.BadZipFile:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _environment(fn: LambdaFunction, directory: Path, request_id: str, stream: str, result_file: str) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # No ~/.aws of whoever runs the sandbox.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    if _config["endpoint"]:
        env["AWS_ENDPOINT_URL"] = _config["endpoint"]
    env.update({str(k): str(v) for k, v in (fn.environment_vars or {}).items()})
    env.update(
        {
            "_HANDLER": fn.handler or "",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.run_time}",
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_REGION": fn.region,
            "AWS_DEFAULT_REGION": fn.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "LAMBDA_TASK_ROOT": str(directory),
            "LAMBDA_RUNTIME_DIR": str(RUNNER.parent),
            "_SANDBOX_RESULT_FILE": result_file,
            "_SANDBOX_REQUEST_ID": request_id,
            "_SANDBOX_FUNCTION_ARN": fn.function_arn,
            "_SANDBOX_TIMEOUT": str(fn.timeout),
        }
    )
    return env


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def run(fn: LambdaFunction, event: bytes, request_id: str, stream: str) -> dict:
    """One invocation: {"payload": bytes, "error": None | "Unhandled", "output": str, ...}."""
    timeout = float(fn.timeout or 3)
    try:
        directory = code_dir(fn)
    except (OSError, zipfile.BadZipFile) as exc:
        error = {
            "errorMessage": f"Could not unpack the deployment package: {exc}",
            "errorType": "Runtime.InvalidEntrypoint",
        }
        return {"payload": json.dumps(error).encode(), "error": "Unhandled", "output": "", "duration_ms": 0.0}
    with tempfile.TemporaryDirectory(prefix="iotfleet-lambda-") as scratch:
        result_file = os.path.join(scratch, "result.json")
        started = time.monotonic()
        with _slots:
            process = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-c", RUNNER.read_text()],
                cwd=directory,
                env=_environment(fn, directory, request_id, stream, result_file),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                output, _stderr = process.communicate(event, timeout=INIT_SECONDS + timeout + 1)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                output, _stderr = process.communicate()
            finally:
                _kill_group(process)  # anything the handler left running
        elapsed_ms = (time.monotonic() - started) * 1000
        try:
            result = json.loads(Path(result_file).read_text())
        except (OSError, ValueError):
            result = None
    text = output.decode("utf-8", errors="replace")
    if result is None and process.returncode == -signal.SIGKILL and elapsed_ms >= (INIT_SECONDS + timeout) * 1000:
        result = {"timeout": True, "duration_ms": elapsed_ms}
    duration = (result or {}).get("duration_ms", elapsed_ms)
    outcome = {"output": text, "duration_ms": duration, "max_rss_mb": (result or {}).get("max_rss_mb")}
    if result is None:
        if process.returncode >= 0:
            status = f"exit status {process.returncode}"
        else:  # as the Go-based runtime interface prints it
            status = "signal: killed" if process.returncode == -signal.SIGKILL else f"signal: {-process.returncode}"
        message = f"RequestId: {request_id} Error: Runtime exited with error: {status}"
        error = {"errorType": "Runtime.ExitError", "errorMessage": message}
        return outcome | {"payload": json.dumps(error).encode(), "error": "Unhandled"}
    if result.get("timeout"):
        seconds = f"{timeout:.2f}"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        outcome["output"] = text + f"{now}Z {request_id} Task timed out after {seconds} seconds\n"
        message = f"RequestId: {request_id} Error: Task timed out after {seconds} seconds"
        error = {"errorType": "Sandbox.Timedout", "errorMessage": message}
        return outcome | {"payload": json.dumps(error).encode(), "error": "Unhandled", "duration_ms": timeout * 1000}
    if result.get("ok"):
        return outcome | {"payload": result["payload"].encode(), "error": None}
    return outcome | {"payload": json.dumps(result["error"]).encode(), "error": "Unhandled"}


def log_text(fn: LambdaFunction, request_id: str, outcome: dict) -> str:
    """The invocation's log as Lambda writes it: START, the output, END, REPORT."""
    output = outcome["output"]
    if output and not output.endswith("\n"):
        output += "\n"
    duration = outcome["duration_ms"]
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tBilled Duration: {math.ceil(duration)} ms\t"
        f"Memory Size: {fn.memory_size} MB\tMax Memory Used: {outcome.get('max_rss_mb') or 0} MB\t"
    )
    return f"START RequestId: {request_id} Version: {fn.version}\n{output}END RequestId: {request_id}\n{report}\n"


def save_logs(fn: LambdaFunction, stream: str, text: str) -> None:
    """Into the function's log group in moto's CloudWatch Logs, one event per line."""
    try:
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        fn.logs_backend.create_log_stream(fn.logs_group_name, stream)
        events = [{"timestamp": unix_time_millis(), "message": line} for line in text.splitlines() if line]
        fn.logs_backend.put_log_events(fn.logs_group_name, stream, events)
    except Exception as exc:  # noqa: BLE001 - logs are a side channel; never fail the invocation for them
        print(f"sandbox: could not write Lambda logs for {fn.function_name}: {exc}", file=sys.stderr)


def _stream_name(fn: LambdaFunction) -> str:
    return f"{datetime.now(UTC):%Y/%m/%d}/[{fn.version}]{secrets.token_hex(16)}"


def invoke_and_log(fn: LambdaFunction, event: bytes) -> tuple[str, dict, str]:
    request_id = str(uuid.uuid4())
    stream = _stream_name(fn)
    outcome = run(fn, event, request_id, stream)
    text = log_text(fn, request_id, outcome)
    save_logs(fn, stream, text)
    return request_id, outcome, text


def invoke(self: LambdaFunction, body, request_headers, response_headers):
    """LambdaFunction.invoke for python3.x runtimes; other runtimes keep moto's (Docker) path."""
    if not str(self.run_time or "").startswith("python3") or getattr(self, "package_type", "Zip") != "Zip":
        return _original_invoke(self, body, request_headers, response_headers)
    event = body.encode() if isinstance(body, str) else (body or b"")
    if event.strip():
        try:
            json.loads(event)
        except ValueError as exc:
            raise InvalidRequestContentException(f"Could not parse request body into json: {exc}") from None
    else:
        event = b"{}"
    invocation_type = request_headers.get("x-amz-invocation-type", "RequestResponse")
    response_headers["x-amz-executed-version"] = str(self.version)
    if invocation_type == "DryRun":
        return b""
    if invocation_type == "Event":
        threading.Thread(target=invoke_and_log, args=(self, event), daemon=True, name="lambda-event").start()
        return b""
    _request_id, outcome, text = invoke_and_log(self, event)
    if outcome["error"]:
        response_headers["x-amz-function-error"] = outcome["error"]
    tail = text.encode()[-LOG_RESULT_BYTES:]
    response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
    return outcome["payload"]
