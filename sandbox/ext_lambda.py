"""Lambda Invoke without Docker, for Python runtimes (moto 5.2.5 runs every invoke in a Docker container).

The deployed zip (moto keeps its bytes) is unpacked once per CodeSha256 into `<state>/lambda/<sha256>/`;
the handler runs there in a `python -c <lambda_runner.py>` process of the sandbox's own interpreter (so
boto3 is there, as the runtime bundles it), with the function's environment, AWS_ENDPOINT_URL pointing
back at the sandbox and credentials `testing`. The function's Timeout is enforced; results, errors and
logs take the shapes AWS gives them.

Warm execution environments, as in AWS: a runner process stays up after an invocation and takes the next
one of the same function, code and configuration (requests over its stdin, lambda_runner's warm mode), so
only the first invocation pays for the interpreter, boto3 and the handler's init; module state lives on
between invocations, and each environment has its own log stream. At most MAX_CONCURRENT run at once;
idle ones are stopped after WARM_IDLE_SECONDS, beyond MAX_IDLE_RUNNERS, when the function changes (another
key) and when the server exits. A timeout, an exit or a failed init ends the environment.
`IOTFLEET_SANDBOX_LAMBDA_WARM=0` gives the old behaviour: a fresh process for every invocation.
"""

import atexit
import base64
import contextlib
import hashlib
import io
import json
import math
import os
import secrets
import select
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
WARM_ENV = "IOTFLEET_SANDBOX_LAMBDA_WARM"
WARM_IDLE_SECONDS = 300.0
MAX_IDLE_RUNNERS = 8
END_MARKER = "__SANDBOX_END_{}__"

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
    stop_warm_runners()  # they run with the previous settings


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


def warm_enabled() -> bool:
    return os.environ.get(WARM_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class WarmRunner:
    """One warm execution environment: a lambda_runner process in warm mode, for one function configuration."""

    def __init__(self, fn: LambdaFunction, directory: Path, key: str):
        self.key = key
        self.stream = _stream_name(fn)
        self.scratch = tempfile.mkdtemp(prefix="iotfleet-lambda-")
        self.created = False  # its log stream
        self.last_used = time.monotonic()
        env = _environment(fn, directory, "", self.stream, "")
        env["_SANDBOX_WARM"] = "1"
        self.process = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-c", RUNNER.read_text()],
            cwd=directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, event: bytes, request_id: str, limit: float) -> tuple[bytes, dict | None, int | None]:
        """(log output, result or None, exit code if the environment ended) of one invocation."""
        result_file = os.path.join(self.scratch, f"{request_id}.json")
        marker = ("\n" + END_MARKER.format(request_id) + "\n").encode()
        request = {"request_id": request_id, "result_file": result_file, "event": event.decode("utf-8", "replace")}
        output = b""
        ended = False
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            ended = True
        deadline = time.monotonic() + limit
        fd = self.process.stdout.fileno()
        while not ended:
            if marker in output:
                output = output[: output.index(marker)]
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                ended = True
                break
            ready, _w, _x = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    ended = True
                output += chunk
        if ended:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)  # it wrote its result before ending, if it could
        try:
            result = json.loads(Path(result_file).read_text())
        except (OSError, ValueError):
            result = None
        with contextlib.suppress(OSError):
            os.unlink(result_file)
        returncode = None
        if ended:
            self.stop()
            returncode = self.process.returncode
        self.last_used = time.monotonic()
        return output, result, returncode

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                pipe.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


_idle: list[WarmRunner] = []
_idle_lock = threading.Lock()


def _runner_key(fn: LambdaFunction, directory: Path) -> str:
    parts = [
        fn.function_arn,
        str(fn.version),
        fn.code_digest,
        str(directory),
        fn.handler or "",
        str(fn.timeout),
        str(fn.memory_size),
        str(fn.run_time),
        json.dumps(fn.environment_vars or {}, sort_keys=True, default=str),
        str(_config["endpoint"]),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _take_runner(fn: LambdaFunction, directory: Path) -> WarmRunner:
    key = _runner_key(fn, directory)
    stale = []
    found = None
    with _idle_lock:
        now = time.monotonic()
        for runner in list(_idle):
            if not runner.alive() or now - runner.last_used > WARM_IDLE_SECONDS:
                _idle.remove(runner)
                stale.append(runner)
            elif found is None and runner.key == key:
                _idle.remove(runner)
                found = runner
    for runner in stale:
        runner.stop()
    return found or WarmRunner(fn, directory, key)


def _give_back(runner: WarmRunner) -> None:
    if not runner.alive():
        runner.stop()
        return
    with _idle_lock:
        _idle.append(runner)
        surplus = _idle[:-MAX_IDLE_RUNNERS] if len(_idle) > MAX_IDLE_RUNNERS else []
        del _idle[: len(surplus)]
    for old in surplus:
        old.stop()


def stop_warm_runners() -> None:
    """Stop every idle warm environment (the server's exit, a new configuration, tests)."""
    with _idle_lock:
        runners = list(_idle)
        _idle.clear()
    for runner in runners:
        runner.stop()


atexit.register(stop_warm_runners)


def _run_cold(fn: LambdaFunction, directory: Path, event: bytes, request_id: str, stream: str, limit: float):
    with tempfile.TemporaryDirectory(prefix="iotfleet-lambda-") as scratch:
        result_file = os.path.join(scratch, "result.json")
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
            output, _stderr = process.communicate(event, timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            output, _stderr = process.communicate()
        finally:
            _kill_group(process)  # anything the handler left running
        try:
            result = json.loads(Path(result_file).read_text())
        except (OSError, ValueError):
            result = None
    return output, result, process.returncode


def run(fn: LambdaFunction, event: bytes, request_id: str, stream: str | None = None) -> dict:
    """One invocation: {"payload": bytes, "error": None | "Unhandled", "output": str, "stream": str, ...}.

    `stream` is the log stream of a cold invocation; a warm environment has its own.
    """
    timeout = float(fn.timeout or 3)
    try:
        directory = code_dir(fn)
    except (OSError, zipfile.BadZipFile) as exc:
        error = {
            "errorMessage": f"Could not unpack the deployment package: {exc}",
            "errorType": "Runtime.InvalidEntrypoint",
        }
        payload = json.dumps(error).encode()
        return {"payload": payload, "error": "Unhandled", "output": "", "duration_ms": 0.0, "stream": stream}
    limit = INIT_SECONDS + timeout + 1
    started = time.monotonic()
    with _slots:
        if warm_enabled():
            runner = _take_runner(fn, directory)
            stream = runner.stream
            new_stream = not runner.created
            runner.created = True
            output, result, returncode = runner.invoke(event, request_id, limit)
            _give_back(runner)
        else:
            stream = stream or _stream_name(fn)
            new_stream = True
            output, result, returncode = _run_cold(fn, directory, event, request_id, stream, limit)
    elapsed_ms = (time.monotonic() - started) * 1000
    outcome = _outcome(output, result, returncode, elapsed_ms, request_id, timeout)
    return outcome | {"stream": stream, "new_stream": new_stream}


def _outcome(output: bytes, result, returncode, elapsed_ms: float, request_id: str, timeout: float) -> dict:
    text = output.decode("utf-8", errors="replace")
    if result is None and returncode == -signal.SIGKILL and elapsed_ms >= (INIT_SECONDS + timeout) * 1000:
        result = {"timeout": True, "duration_ms": elapsed_ms}
    duration = (result or {}).get("duration_ms", elapsed_ms)
    outcome = {"output": text, "duration_ms": duration, "max_rss_mb": (result or {}).get("max_rss_mb")}
    if result is None:
        returncode = 0 if returncode is None else returncode
        if returncode >= 0:
            status = f"exit status {returncode}"
        else:  # as the Go-based runtime interface prints it
            status = "signal: killed" if returncode == -signal.SIGKILL else f"signal: {-returncode}"
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


def save_logs(fn: LambdaFunction, stream: str, text: str, new_stream: bool = True) -> None:
    """Into the function's log group in moto's CloudWatch Logs, one event per line."""
    try:
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        if new_stream or stream not in fn.logs_backend.groups[fn.logs_group_name].streams:
            fn.logs_backend.create_log_stream(fn.logs_group_name, stream)
        events = [{"timestamp": unix_time_millis(), "message": line} for line in text.splitlines() if line]
        fn.logs_backend.put_log_events(fn.logs_group_name, stream, events)
    except Exception as exc:  # noqa: BLE001 - logs are a side channel; never fail the invocation for them
        print(f"sandbox: could not write Lambda logs for {fn.function_name}: {exc}", file=sys.stderr)


def _stream_name(fn: LambdaFunction) -> str:
    return f"{datetime.now(UTC):%Y/%m/%d}/[{fn.version}]{secrets.token_hex(16)}"


def invoke_and_log(fn: LambdaFunction, event: bytes) -> tuple[str, dict, str]:
    request_id = str(uuid.uuid4())
    outcome = run(fn, event, request_id)
    text = log_text(fn, request_id, outcome)
    save_logs(fn, outcome["stream"], text, outcome.get("new_stream", True))
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
