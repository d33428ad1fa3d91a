"""Lambda Invoke without Docker (sandbox/ext_lambda.py), in process: the handler runs in a subprocess."""

import base64
import io
import json
import os
import time
import zipfile

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox import ext_lambda
from sandbox import moto_ext

ENDPOINT = "http://127.0.0.1:45999"

HANDLER = """
import json
import logging
import os
import subprocess
import sys
import time

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    print("event", json.dumps(event, sort_keys=True))
    logger.info("log line from the handler")
    action = event.get("action")
    if action == "context":
        return {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "remaining": context.get_remaining_time_in_millis(),
        }
    if action == "env":
        return {name: os.environ.get(name) for name in event["names"]}
    if action == "cwd":
        return {"cwd": os.getcwd(), "file": __file__, "python": sys.executable}
    if action == "raise":
        raise ValueError("the reading is out of range")
    if action == "sleep":
        if event.get("child_pid_file"):
            child = subprocess.Popen(["sleep", "60"])
            with open(event["child_pid_file"], "w") as handle:
                handle.write(str(child.pid))
        if event.get("pid_file"):
            with open(event["pid_file"], "w") as handle:
                handle.write(str(os.getpid()))
        time.sleep(event["seconds"])
        return {"slept": event["seconds"]}
    if action == "noisy":
        for index in range(400):
            print(f"line {index:04d} " + "x" * 40)
        return "done"
    if action == "unserialisable":
        return {1, 2}
    if action == "exit":
        sys.exit(3)
    return {"echo": event}
"""


def make_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture
def lam(ext, tmp_path):
    """A Lambda client with a python3.12 function `sensor` (Timeout 2 s) deployed from a tiny zip."""
    moto_ext.apply(tmp_path / "ca", state_dir=tmp_path, endpoint=ENDPOINT)
    role = boto3.client("iam").create_role(RoleName="sensor", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    client = boto3.client("lambda")
    client.create_function(
        FunctionName="sensor",
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
        Timeout=2,
        MemorySize=256,
        Environment={"Variables": {"RETENTION_DAYS": "30"}},
    )
    client.role_arn = role
    return client


def invoke(client, event, **kwargs):
    response = client.invoke(FunctionName="sensor", Payload=json.dumps(event).encode(), **kwargs)
    response["payload"] = json.loads(response["Payload"].read() or b"null")
    return response


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_request_response_returns_the_handlers_value(lam):
    response = invoke(lam, {"reading": 21.5})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["payload"] == {"echo": {"reading": 21.5}}
    assert response["ExecutedVersion"] == "$LATEST"


def test_context_object(lam):
    context = invoke(lam, {"action": "context"})["payload"]
    assert context["function_name"] == "sensor"
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"].endswith(":function:sensor")
    assert context["memory_limit_in_mb"] == "256"  # a string, as in the AWS runtime
    assert context["log_group_name"] == "/aws/lambda/sensor"
    assert len(context["aws_request_id"]) == 36
    assert 1000 < context["remaining"] <= 2000


def test_environment_is_the_functions_plus_the_runtimes(lam, monkeypatch):
    monkeypatch.setenv("SANDBOX_PARENT_ONLY", "leaked")
    names = [
        "RETENTION_DAYS",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "_HANDLER",
        "SANDBOX_PARENT_ONLY",
        "_SANDBOX_RESULT_FILE",
    ]
    env = invoke(lam, {"action": "env", "names": names})["payload"]
    assert env == {
        "RETENTION_DAYS": "30",
        "AWS_REGION": "eu-north-1",
        "AWS_DEFAULT_REGION": "eu-north-1",
        "AWS_LAMBDA_FUNCTION_NAME": "sensor",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": ENDPOINT,
        "_HANDLER": "app.handler",
        "SANDBOX_PARENT_ONLY": None,
        "_SANDBOX_RESULT_FILE": None,
    }


def test_code_is_unpacked_once_per_code_sha256_and_run_by_the_sandbox_python(lam, tmp_path):
    import sys

    sha = lam.get_function(FunctionName="sensor")["Configuration"]["CodeSha256"]
    digest = base64.b64decode(sha).hex()
    where = invoke(lam, {"action": "cwd"})["payload"]
    assert where["cwd"] == str(tmp_path / "lambda" / digest)
    assert where["file"] == str(tmp_path / "lambda" / digest / "app.py")
    assert where["python"] == sys.executable

    lam.update_function_code(
        FunctionName="sensor", ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"})
    )
    assert invoke(lam, {})["payload"] == "v2"
    assert len(list((tmp_path / "lambda").iterdir())) == 2


def test_log_tail_and_cloudwatch_logs(lam):
    response = invoke(lam, {"reading": 1}, LogType="Tail")
    log = base64.b64decode(response["LogResult"]).decode()
    lines = log.splitlines()
    request_id = lines[0].split("RequestId: ")[1].split()[0]
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert 'event {"reading": 1}' in lines
    assert any(
        line.startswith("[INFO]\t") and line.endswith(f"\t{request_id}\tlog line from the handler") for line in lines
    )
    assert f"END RequestId: {request_id}" in lines
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert "Memory Size: 256 MB" in lines[-1]

    assert "LogResult" not in invoke(lam, {})  # only with LogType=Tail

    logs = boto3.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/lambda/sensor")["logStreams"]
    messages = [
        event["message"]
        for stream in streams
        for event in logs.get_log_events(logGroupName="/aws/lambda/sensor", logStreamName=stream["logStreamName"])[
            "events"
        ]
    ]
    assert f"START RequestId: {request_id} Version: $LATEST" in messages
    assert all(stream["logStreamName"].split("/")[3].startswith("[$LATEST]") for stream in streams)


def test_log_result_is_the_last_4_kb(lam):
    response = invoke(lam, {"action": "noisy"}, LogType="Tail")
    log = base64.b64decode(response["LogResult"])
    assert len(log) == 4096
    assert b"line 0399" in log and b"line 0000" not in log
    assert log.decode().splitlines()[-1].startswith("REPORT RequestId: ")


def test_exception_is_an_unhandled_function_error(lam):
    response = invoke(lam, {"action": "raise"}, LogType="Tail")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = response["payload"]
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "the reading is out of range"
    assert len(error["requestId"]) == 36
    assert error["stackTrace"] and "app.py" in error["stackTrace"][-1] and "in handler" in error["stackTrace"][-1]
    assert all("lambda_runner" not in frame and "<string>" not in frame for frame in error["stackTrace"])
    assert "[ERROR] ValueError: the reading is out of range" in base64.b64decode(response["LogResult"]).decode()


def test_timeout_kills_the_invocation(lam, tmp_path):
    pid_file, child_pid_file = tmp_path / "handler.pid", tmp_path / "child.pid"
    event = {"action": "sleep", "seconds": 30, "pid_file": str(pid_file), "child_pid_file": str(child_pid_file)}
    started = time.monotonic()
    response = invoke(lam, event, LogType="Tail")
    assert time.monotonic() - started < 6
    assert response["FunctionError"] == "Unhandled"
    assert response["payload"]["errorType"] == "Sandbox.Timedout"
    assert response["payload"]["errorMessage"].endswith("Error: Task timed out after 2.00 seconds")
    log = base64.b64decode(response["LogResult"]).decode()
    assert "Task timed out after 2.00 seconds" in log
    assert "Duration: 2000.00 ms" in log
    assert not alive(int(pid_file.read_text()))
    assert not alive(int(child_pid_file.read_text()))  # what the handler started goes too


def test_runtime_errors(lam):
    response = invoke(lam, {"action": "unserialisable"})
    assert response["FunctionError"] == "Unhandled"
    assert response["payload"]["errorType"] == "Runtime.MarshalError"
    assert response["payload"]["errorMessage"].startswith("Unable to marshal response: Object of type set")

    response = invoke(lam, {"action": "exit"})
    assert response["FunctionError"] == "Unhandled"
    assert response["payload"]["errorType"] == "Runtime.ExitError"
    assert response["payload"]["errorMessage"].endswith("Runtime exited with error: exit status 3")

    lam.update_function_configuration(FunctionName="sensor", Handler="app.missing")
    response = invoke(lam, {})
    assert response["payload"]["errorType"] == "Runtime.HandlerNotFound"
    assert response["payload"]["errorMessage"] == "Handler 'missing' missing on module 'app'"

    lam.update_function_configuration(FunctionName="sensor", Handler="nomodule.handler")
    response = invoke(lam, {})
    assert response["FunctionError"] == "Unhandled"
    assert response["payload"]["errorType"] == "Runtime.ImportModuleError"
    assert response["payload"]["errorMessage"].startswith("Unable to import module 'nomodule': No module named")


def test_event_invocation_runs_in_the_background(lam, tmp_path):
    pid_file = tmp_path / "event.pid"
    started = time.monotonic()
    response = lam.invoke(
        FunctionName="sensor",
        InvocationType="Event",
        Payload=json.dumps({"action": "sleep", "seconds": 1, "pid_file": str(pid_file)}).encode(),
    )
    assert response["StatusCode"] == 202
    assert time.monotonic() - started < 1
    assert response["Payload"].read() == b""

    logs = boto3.client("logs")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        groups = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/sensor")["logGroups"]
        streams = logs.describe_log_streams(logGroupName="/aws/lambda/sensor")["logStreams"] if groups else []
        if streams:
            events = logs.get_log_events(logGroupName="/aws/lambda/sensor", logStreamName=streams[0]["logStreamName"])
            if any(e["message"].startswith("REPORT") for e in events["events"]):
                break
        time.sleep(0.2)
    else:
        pytest.fail("the Event invocation left no complete log")
    assert pid_file.exists()


def test_dry_run_runs_nothing(lam, tmp_path):
    pid_file = tmp_path / "dry.pid"
    event = {"action": "sleep", "seconds": 0, "pid_file": str(pid_file)}
    response = lam.invoke(FunctionName="sensor", InvocationType="DryRun", Payload=json.dumps(event).encode())
    assert response["StatusCode"] == 204
    assert not pid_file.exists()


def test_payload_that_is_not_json_is_refused(lam):
    with pytest.raises(ClientError) as excinfo:
        lam.invoke(FunctionName="sensor", Payload=b"{not json")
    assert excinfo.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_other_runtimes_keep_motos_invoke(lam, monkeypatch):
    calls = []
    monkeypatch.setattr(ext_lambda, "_original_invoke", lambda fn, *args: calls.append(fn.run_time) or b'"docker"')
    lam.create_function(
        FunctionName="node",
        Runtime="nodejs20.x",
        Role=lam.role_arn,
        Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": ""})},
    )
    assert lam.invoke(FunctionName="node")["Payload"].read() == b'"docker"'
    assert calls == ["nodejs20.x"]


def test_revert_restores_motos_invoke(lam):
    from moto.awslambda.models import LambdaFunction

    assert LambdaFunction.invoke is ext_lambda.invoke
    moto_ext.revert()
    assert LambdaFunction.invoke is not ext_lambda.invoke
    assert "invoke" in LambdaFunction.__dict__


def test_dead_letter_config_is_kept_and_returned(lam):
    queue = "arn:aws:sqs:eu-north-1:123456789012:failures"
    assert "DeadLetterConfig" not in lam.get_function_configuration(FunctionName="sensor")

    lam.update_function_configuration(FunctionName="sensor", DeadLetterConfig={"TargetArn": queue})

    assert lam.get_function_configuration(FunctionName="sensor")["DeadLetterConfig"] == {"TargetArn": queue}
    assert lam.get_function(FunctionName="sensor")["Configuration"]["DeadLetterConfig"] == {"TargetArn": queue}


COUNTER = """
import os

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    if event.get("raise"):
        raise RuntimeError("no")
    if event.get("exit"):
        os._exit(1)
    return {"count": COUNT, "pid": os.getpid(), "stream": context.log_stream_name}
"""


def test_warm_environments_keep_module_state_between_invocations(lam):
    lam.update_function_code(FunctionName="sensor", ZipFile=make_zip({"app.py": COUNTER}))
    first = invoke(lam, {})["payload"]
    second = invoke(lam, {})["payload"]
    assert second["count"] == first["count"] + 1
    assert second["pid"] == first["pid"]
    assert second["stream"] == first["stream"]
    # A handler error does not end the environment; an exit does, and the next invocation starts afresh.
    assert invoke(lam, {"raise": True})["FunctionError"] == "Unhandled"
    assert invoke(lam, {})["payload"]["pid"] == first["pid"]
    assert invoke(lam, {"exit": True})["payload"]["errorType"] == "Runtime.ExitError"
    fresh = invoke(lam, {})["payload"]
    assert (fresh["count"], fresh["pid"] != first["pid"]) == (1, True)


def test_one_log_stream_per_warm_environment(lam):
    lam.update_function_code(FunctionName="sensor", ZipFile=make_zip({"app.py": COUNTER}))
    stream = invoke(lam, {})["payload"]["stream"]
    invoke(lam, {})
    events = boto3.client("logs").get_log_events(logGroupName="/aws/lambda/sensor", logStreamName=stream)["events"]
    assert len([e for e in events if e["message"].startswith("START RequestId:")]) == 2


def test_a_configuration_change_starts_a_new_environment(lam):
    lam.update_function_code(FunctionName="sensor", ZipFile=make_zip({"app.py": COUNTER}))
    first = invoke(lam, {})["payload"]
    lam.update_function_configuration(FunctionName="sensor", Environment={"Variables": {"RETENTION_DAYS": "7"}})
    assert invoke(lam, {})["payload"]["count"] == 1
    assert first["count"] == 1


def test_cold_mode_runs_every_invocation_in_a_new_process(lam, monkeypatch):
    monkeypatch.setenv(ext_lambda.WARM_ENV, "0")
    lam.update_function_code(FunctionName="sensor", ZipFile=make_zip({"app.py": COUNTER}))
    first = invoke(lam, {})["payload"]
    second = invoke(lam, {})["payload"]
    assert (first["count"], second["count"]) == (1, 1)
    assert first["pid"] != second["pid"]
    assert first["stream"] != second["stream"]


def test_idle_environments_end_when_the_extension_is_configured_again(lam, tmp_path):
    lam.update_function_code(FunctionName="sensor", ZipFile=make_zip({"app.py": COUNTER}))
    pid = invoke(lam, {})["payload"]["pid"]
    assert alive(pid)
    ext_lambda.configure(tmp_path, ENDPOINT)
    assert not alive(pid)
