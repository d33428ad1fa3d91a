"""Runs one Lambda invocation of a Python handler; ext_lambda starts it with `python -c <this file's text>`.

The process stands in for one cold Lambda execution environment: its working directory is the
unpacked deployment package, the event arrives on stdin, the handler's prints and log lines go to
stdout/stderr (the invocation's log), and the outcome is written as JSON to the file named by
`_SANDBOX_RESULT_FILE`:

    {"ok": true, "payload": "<the JSON text of the return value>", "duration_ms": ..., "max_rss_mb": ...}
    {"ok": false, "error": {"errorMessage": ..., "errorType": ..., "requestId": ..., "stackTrace": [...]}, ...}
    {"timeout": true, ...}

With `_SANDBOX_WARM=1` the process is a warm execution environment instead: it reads one request per line
on stdin (`{"request_id", "result_file", "event"}`), imports the handler on the first (the init phase), writes
each outcome to that request's result file and then the line `__SANDBOX_END_<request_id>__` on stdout, so
ext_lambda can cut the log per invocation; module state lives on between invocations, as in AWS. A failed
init, a timeout or an exit of the handler ends the process (the next invocation starts a fresh one).
It ends by itself when stdin closes.

Standard library only, and no import of the sandbox package: the handler must not see it.
"""

import json
import os
import resource
import signal
import sys
import time
import traceback

INTERNAL = ("_SANDBOX_RESULT_FILE", "_SANDBOX_REQUEST_ID", "_SANDBOX_FUNCTION_ARN", "_SANDBOX_TIMEOUT", "_SANDBOX_WARM")
END_MARKER = "__SANDBOX_END_{}__"


class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    def __init__(self, request_id: str, function_arn: str, deadline: float):
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = function_arn
        # A string, as in the AWS runtime (it comes from AWS_LAMBDA_FUNCTION_MEMORY_SIZE there too).
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _RequestIdFilter:
    """Gives every log record the `aws_request_id` the runtime's log format prints."""

    def __init__(self, request_id: str):
        self.request_id = request_id

    def filter(self, record) -> bool:
        record.aws_request_id = self.request_id
        return True


def _install_logging(request_id: str) -> "_RequestIdFilter":
    """A root handler in the Lambda Python runtime's format (the root level stays WARNING, as there)."""
    import logging

    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    request_filter = _RequestIdFilter(request_id)
    handler.addFilter(request_filter)
    logging.getLogger().addHandler(handler)
    return request_filter


def _max_rss_mb() -> int:
    """Peak memory of this process (VmHWM; ru_maxrss would count the parent's from before the exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _write_result(path: str, result: dict) -> None:
    result["max_rss_mb"] = _max_rss_mb()
    data = json.dumps(result).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def _error(error_type: str, message: str, request_id: str, stack: list | None = None) -> dict:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack or []}


def _exception_error(exc: BaseException, request_id: str, skip_frames: int) -> dict:
    frames = traceback.extract_tb(exc.__traceback__)[skip_frames:]
    stack = traceback.format_list(frames)
    sys.stdout.flush()
    print(f"[ERROR] {type(exc).__name__}: {exc}\nTraceback (most recent call last):\n{''.join(stack)}", file=sys.stderr)
    sys.stderr.flush()
    return _error(type(exc).__name__, str(exc), request_id, stack)


def _load_handler(handler: str, request_id: str):
    """(function, None) or (None, error) as the runtime reports import and lookup failures."""
    module_name, _dot, function_name = (handler or "").rpartition(".")
    module_name = module_name.replace("/", ".")
    if not module_name or not function_name:
        return None, _error(
            "Runtime.MalformedHandlerName", f"Bad handler '{handler}': not enough values to unpack", request_id
        )
    try:
        import importlib

        module = importlib.import_module(module_name)
    except ImportError as exc:
        return None, _error("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}", request_id)
    except SyntaxError as exc:
        message = f"Syntax error in module '{module_name}': {exc}"
        return None, _error("Runtime.UserCodeSyntaxError", message, request_id)
    except Exception as exc:  # noqa: BLE001 - the runtime reports any init failure the same way
        return None, _exception_error(exc, request_id, skip_frames=1)
    function = getattr(module, function_name, None)
    if function is None:
        return None, _error(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'", request_id
        )
    return function, None


def main() -> None:
    if os.environ.get("_SANDBOX_WARM") == "1":
        warm_main()
        return
    result_file = os.environ["_SANDBOX_RESULT_FILE"]
    request_id = os.environ["_SANDBOX_REQUEST_ID"]
    function_arn = os.environ["_SANDBOX_FUNCTION_ARN"]
    timeout = float(os.environ["_SANDBOX_TIMEOUT"])
    _enter_task_root()

    event_text = sys.stdin.read()
    event = json.loads(event_text) if event_text.strip() else {}
    _install_logging(request_id)

    handler, error = _load_handler(os.environ.get("_HANDLER", ""), request_id)
    if error is not None:
        _write_result(result_file, {"ok": False, "error": error, "duration_ms": 0.0})
        _end()

    _invoke(handler, event, request_id, function_arn, timeout, result_file)
    _end()


def _enter_task_root() -> None:
    """Drop the runner's own variables from the environment; the function's code first on sys.path."""
    for name in INTERNAL:
        os.environ.pop(name, None)
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    if sys.path and sys.path[0] in ("", "."):
        sys.path[0] = task_root
    else:
        sys.path.insert(0, task_root)


def _invoke(handler, event, request_id: str, function_arn: str, timeout: float, result_file: str) -> None:
    """Call the handler once under the function's timeout; the outcome goes to `result_file`.

    On a timeout the result is written and the process ends (with whatever the handler started).
    """
    started = time.monotonic()

    def on_timeout(signum, frame):
        sys.stdout.flush()
        sys.stderr.flush()
        _write_result(result_file, {"timeout": True, "duration_ms": (time.monotonic() - started) * 1000})
        _end()

    signal.signal(signal.SIGALRM, on_timeout)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    context = LambdaContext(request_id, function_arn, started + timeout)
    try:
        returned = handler(event, context)
    except Exception as exc:  # noqa: BLE001 - an exception of the handler is the invocation's result
        outcome = {"ok": False, "error": _exception_error(exc, request_id, skip_frames=1)}
    else:
        try:
            outcome = {"ok": True, "payload": json.dumps(returned)}
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            outcome = {"ok": False, "error": _error("Runtime.MarshalError", message, request_id)}
    signal.setitimer(signal.ITIMER_REAL, 0)
    outcome["duration_ms"] = (time.monotonic() - started) * 1000
    sys.stdout.flush()
    sys.stderr.flush()
    _write_result(result_file, outcome)


def warm_main() -> None:
    """A warm execution environment: one invocation per request line on stdin, until stdin closes."""
    function_arn = os.environ["_SANDBOX_FUNCTION_ARN"]
    timeout = float(os.environ["_SANDBOX_TIMEOUT"])
    _enter_task_root()
    requests = sys.stdin.buffer
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - the handler must not read our requests
    request_filter = _install_logging("")
    handler = None
    while True:
        line = requests.readline()
        if not line:
            _end()
        request = json.loads(line)
        request_id = request["request_id"]
        request_filter.request_id = request_id
        event = json.loads(request["event"]) if request["event"].strip() else {}
        if handler is None:
            handler, error = _load_handler(os.environ.get("_HANDLER", ""), request_id)
            if error is not None:
                _write_result(request["result_file"], {"ok": False, "error": error, "duration_ms": 0.0})
                _end()
        _invoke(handler, event, request_id, function_arn, timeout, request["result_file"])
        os.write(1, ("\n" + END_MARKER.format(request_id) + "\n").encode())


def _end() -> None:
    """End the invocation: this process and whatever the handler started (they would hold the log pipe open)."""
    try:
        if os.getpgrp() == os.getpid():  # only as the leader of our own group (ext_lambda starts a new session)
            os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
