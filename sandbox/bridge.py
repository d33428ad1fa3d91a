"""The rules bridge: executes the provisioned AWS IoT topic rules on the sandbox's MQTT broker, and serves
the classic device shadows (sandbox/shadow.py).

One process (`python -m sandbox.bridge`, started by `python -m sandbox up` after the broker, pid file
`bridge.pid`, log `bridge.log`, status `bridge.json` in the state dir) connects to the broker as the
sandbox's service identity (MQTT v5 over TLS; paho reconnects with backoff when the broker restarts) and:

- reads the topic rules from the registry every 2 s (ListTopicRules + GetTopicRule on the sandbox) and
  subscribes to their FROM filters; a disabled rule is not run; a rule whose SQL is outside the subset
  of sandbox/rules_sql.py is logged once (per SQL text) and skipped;
- for each message, evaluates each matching rule's SQL (clientId() is the publisher's client id: the
  broker's `iotfleet-client-id` user property, else the thing name in the topic, or the presence event's
  `clientId`) and runs its actions in a small pool of workers, one queue per worker, the messages of one
  client id for one rule always on the same worker (so in order per device and rule): `lambda` (Invoke),
  `republish`, `cloudwatchLogs`; others are logged once and skipped;
- when an action fails, runs the rule's errorAction (`cloudwatchLogs`, `republish` or `lambda`) with
  AWS's error message document (ruleName, topic, cloudwatchTraceId, clientId, base64OriginalPayload,
  failures[failedAction, failedResource, errorMessage]).

Lambda failures: AWS invokes a rule's Lambda asynchronously, so a function that raises never reaches the
rule's error action there (it goes to the function's retries and DLQ); only a failed Invoke does (missing
function, throttling, permissions). The sandbox invokes synchronously (RequestResponse, in the worker
pool, off the MQTT loop) and treats a function error as a failed action too, so a failing Lambda is
visible in the error log group at once (DESIGN §2: "a failing Lambda is visible, not silent"); its
errorMessage says which of the two happened. IOTFLEET_SANDBOX_BRIDGE_FUNCTION_ERRORS=aws gives AWS's
behaviour (function errors logged by the bridge only).
"""

import argparse
import base64
import contextlib
import json
import logging
import os
import queue
import signal
import ssl
import sys
import threading
import time
import urllib.request
import uuid
import zlib
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path

from sandbox import procs
from sandbox import rules_sql
from sandbox import shadow as shadow_mod
from sandbox.settings import Settings

LOG = logging.getLogger("sandbox.bridge")
CLIENT_ID_PROPERTY = "iotfleet-client-id"
PRESENCE_PREFIX = "$aws/events/presence/"
THINGS_PREFIX = "$aws/things/"
RULES_POLL_SECONDS = 2.0
SHADOW_POLL_SECONDS = 1.0
WORKERS = 4  # as many as the sandbox runs Lambda invocations at once (ext_lambda.MAX_CONCURRENT)
SUPPORTED_SQL_VERSIONS = ("2016-03-23", "2015-10-08", "beta")
FUNCTION_ERRORS_ENV = "IOTFLEET_SANDBOX_BRIDGE_FUNCTION_ERRORS"
START_TIMEOUT = 20.0
QOS = 1


# -- rules ----------------------------------------------------------------------------------------


@dataclass
class Rule:
    name: str
    statement: rules_sql.Statement
    actions: list
    error_action: dict | None


class ActionFailed(Exception):
    """An action did not complete; `kind` and `resource` name it as AWS's error message does."""

    def __init__(self, kind: str, resource: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.resource = resource
        self.message = message


@dataclass
class Message:
    topic: str
    payload: bytes
    client_id: str | None
    received_ms: int
    trace_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def client_id_of(topic: str, payload: bytes, property_value: str | None) -> str | None:
    """Who published: the broker's user property, else what the ACLs guarantee about the topic."""
    if topic.startswith(PRESENCE_PREFIX):
        with contextlib.suppress(ValueError, UnicodeDecodeError, AttributeError):
            value = json.loads(payload).get("clientId")
            if isinstance(value, str) and value:
                return value
    if property_value:
        return property_value
    if topic.startswith(THINGS_PREFIX):
        thing = topic[len(THINGS_PREFIX) :].split("/", 1)[0]
        return thing or None
    if topic.startswith("$"):
        return None
    first = topic.split("/", 1)[0]
    return first or None


def compile_rules(documents: list[dict], reported: set) -> dict[str, Rule]:
    """The runnable rules among GetTopicRule `rule` documents; problems are logged once each (`reported`)."""
    rules = {}
    for document in documents:
        name = document.get("ruleName", "?")
        if document.get("ruleDisabled"):
            continue
        sql = document.get("sql") or ""
        version = document.get("awsIotSqlVersion") or "2015-10-08"
        try:
            if version not in SUPPORTED_SQL_VERSIONS:
                raise rules_sql.SqlError(f"SQL version {version} is not supported")
            statement = rules_sql.parse(sql)
        except rules_sql.SqlError as exc:
            key = (name, sql, version)
            if key not in reported:
                reported.add(key)
                LOG.error("rule %s skipped: %s (SQL: %s)", name, exc, sql)
            continue
        rules[name] = Rule(name, statement, list(document.get("actions") or []), document.get("errorAction") or None)
    return rules


def error_document(rule: Rule, message: Message, failures: list[ActionFailed]) -> dict:
    """What AWS IoT sends to a rule's error action."""
    return {
        "ruleName": rule.name,
        "topic": message.topic,
        "cloudwatchTraceId": message.trace_id,
        "clientId": message.client_id or "",
        "base64OriginalPayload": base64.b64encode(message.payload).decode(),
        "failures": [
            {"failedAction": failure.kind, "failedResource": failure.resource, "errorMessage": failure.message}
            for failure in failures
        ],
    }


class Actions:
    """Runs rule actions. `lambda_invoke(function_arn, payload) -> (function_error, response_payload)`
    raises on a failed Invoke; `publish(topic, payload, qos)`; `log_event(group, text)`."""

    def __init__(self, lambda_invoke, publish, log_event, function_errors_fail: bool = True):
        self.lambda_invoke = lambda_invoke
        self.publish = publish
        self.log_event = log_event
        self.function_errors_fail = function_errors_fail
        self.unsupported_reported: set = set()
        self.counts = {"actions": 0, "failed": 0, "error_actions": 0, "error_action_failed": 0}
        self.invoke_ms: list[float] = []
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def run_one(self, action: dict, payload: bytes, rule_name: str) -> None:
        """One action; ActionFailed if it did not work."""
        (kind, config), *_rest = action.items() if action else (("?", {}),)
        config = config or {}
        if kind == "lambda":
            arn = config.get("functionArn", "")
            started = time.monotonic()
            try:
                function_error, response = self.lambda_invoke(arn, payload)
            except Exception as exc:  # noqa: BLE001 - any failure to invoke is the action's failure
                raise ActionFailed("LambdaAction", arn, f"Failed to invoke lambda function. {exc}") from exc
            finally:
                with self._lock:
                    self.invoke_ms.append((time.monotonic() - started) * 1000)
                    del self.invoke_ms[:-1000]
            if function_error:
                detail = _function_error_text(response)
                text = f"The function returned an error ({function_error}): {detail}"
                if self.function_errors_fail:
                    raise ActionFailed(
                        "LambdaAction",
                        arn,
                        f"{text}. (Sandbox: invoked synchronously, so the function's error runs the error "
                        "action; AWS invokes asynchronously and sends it to the function's retries and DLQ.)",
                    )
                LOG.warning("rule %s: lambda %s: %s", rule_name, arn, text)
            return
        if kind == "republish":
            topic = config.get("topic", "")
            if "${" in topic:
                raise ActionFailed("RepublishAction", topic, "substitution templates are not supported by the sandbox")
            try:
                self.publish(topic, payload, int(config.get("qos") or 0))
            except Exception as exc:  # noqa: BLE001
                raise ActionFailed("RepublishAction", topic, f"Failed to republish: {exc}") from exc
            return
        if kind == "cloudwatchLogs":
            group = config.get("logGroupName", "")
            try:
                self.log_event(group, payload.decode("utf-8", errors="replace"))
            except Exception as exc:  # noqa: BLE001
                raise ActionFailed("CloudwatchLogsAction", group, f"Failed to put log events: {exc}") from exc
            return
        key = (rule_name, kind)
        if key not in self.unsupported_reported:
            self.unsupported_reported.add(key)
            LOG.error("rule %s: action %s is not supported by the sandbox; skipped", rule_name, kind)
        raise _Unsupported()

    def execute(self, rule: Rule, message: Message, output: dict) -> None:
        payload = json.dumps(output).encode()
        failures = []
        for action in rule.actions:
            self._count("actions")
            try:
                self.run_one(action, payload, rule.name)
            except _Unsupported:
                continue
            except ActionFailed as failure:
                self._count("failed")
                LOG.warning("rule %s: %s %s failed: %s", rule.name, failure.kind, failure.resource, failure.message)
                failures.append(failure)
        if failures and rule.error_action:
            self._count("error_actions")
            document = json.dumps(error_document(rule, message, failures)).encode()
            try:
                self.run_one(rule.error_action, document, rule.name)
            except (ActionFailed, _Unsupported) as exc:
                self._count("error_action_failed")
                LOG.error("rule %s: the error action failed too: %s", rule.name, exc)


class _Unsupported(Exception):
    pass


def _function_error_text(response: bytes) -> str:
    try:
        error = json.loads(response)
        return f"{error.get('errorType', '?')}: {error.get('errorMessage', '')}"
    except (ValueError, AttributeError):
        return response.decode("utf-8", errors="replace")[:500]


class Workers:
    """`count` threads, one queue each; jobs with the same key run on the same thread, in order."""

    def __init__(self, count: int = WORKERS):
        self.queues = [queue.Queue() for _index in range(count)]
        self.threads = [
            threading.Thread(target=self._loop, args=(q,), daemon=True, name=f"bridge-worker-{index}")
            for index, q in enumerate(self.queues)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, key: str, function, *args) -> None:
        self.queues[zlib.crc32(key.encode()) % len(self.queues)].put((function, args))

    def pending(self) -> int:
        return sum(q.unfinished_tasks for q in self.queues)

    def join(self) -> None:
        for q in self.queues:
            q.join()

    def stop(self) -> None:
        for q in self.queues:
            q.put(None)
        for thread in self.threads:
            thread.join(timeout=5)

    @staticmethod
    def _loop(jobs: queue.Queue) -> None:
        while True:
            job = jobs.get()
            try:
                if job is None:
                    return
                function, args = job
                try:
                    function(*args)
                except Exception:  # noqa: BLE001 - one bad job must not end the worker
                    LOG.exception("bridge job failed")
            finally:
                jobs.task_done()


class Engine:
    """Rules → actions, independent of MQTT (tests drive it directly)."""

    def __init__(self, actions: Actions, workers: Workers, clock=time.time):
        self.actions = actions
        self.workers = workers
        self.clock = clock
        self.rules: dict[str, Rule] = {}
        self.reported: set = set()
        self.counts = {"messages": 0, "matched": 0, "filtered": 0, "not_json": 0}
        self._not_json_reported: set = set()

    def set_rules(self, documents: list[dict]) -> set[str]:
        """Replace the rules; returns the topic filters they need."""
        self.rules = compile_rules(documents, self.reported)
        return {rule.statement.topic_filter for rule in self.rules.values()}

    def handle(self, topic: str, payload: bytes, client_id: str | None) -> int:
        """Evaluate every matching rule now; queue their actions. Returns how many rules fired."""
        self.counts["messages"] += 1
        message = Message(topic, payload, client_id, int(self.clock() * 1000))
        context = rules_sql.Context(topic, client_id, message.received_ms)
        fired = 0
        for rule in list(self.rules.values()):
            if not rules_sql.topic_matches(rule.statement.topic_filter, topic):
                continue
            try:
                output = rules_sql.run(rule.statement, payload, context)
            except rules_sql.NotJson as exc:
                self.counts["not_json"] += 1
                if (rule.name, topic) not in self._not_json_reported:
                    self._not_json_reported.add((rule.name, topic))
                    LOG.warning("rule %s: message on %s skipped: %s (logged once per topic)", rule.name, topic, exc)
                continue
            if output is None:
                self.counts["filtered"] += 1
                continue
            self.counts["matched"] += 1
            fired += 1
            # In order per device and rule: a device's telemetry does not wait for its presence event's actions.
            self.workers.submit(f"{client_id or topic}\0{rule.name}", self.actions.execute, rule, message, output)
        return fired


# -- AWS clients ----------------------------------------------------------------------------------


def aws_client(settings: Settings, service: str, read_timeout: float = 60):
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"max_attempts": 1, "mode": "standard"},
        max_pool_connections=WORKERS * 2,
    )
    return boto3.client(
        service,
        endpoint_url=settings.endpoint,
        region_name=settings.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


class RuleReader:
    """The topic rules' documents: ListTopicRules every call, GetTopicRule only for a rule whose summary
    (ARN, createdAt, ruleDisabled) changed, and for every rule at least every FULL_READ_SECONDS."""

    FULL_READ_SECONDS = 30.0

    def __init__(self, iot, clock=time.monotonic):
        self.iot = iot
        self.clock = clock
        self.cache: dict[str, tuple] = {}  # name -> (summary key, document)
        self.next_full = 0.0

    def __call__(self) -> list[dict]:
        full = self.clock() >= self.next_full
        if full:
            self.next_full = self.clock() + self.FULL_READ_SECONDS
        cache = {}
        for page in self.iot.get_paginator("list_topic_rules").paginate():
            for summary in page.get("rules", []):
                name = summary["ruleName"]
                key = (summary.get("ruleArn"), str(summary.get("createdAt")), summary.get("ruleDisabled"))
                cached = self.cache.get(name)
                if cached is not None and cached[0] == key and not full:
                    cache[name] = cached
                    continue
                try:
                    cache[name] = (key, self.iot.get_topic_rule(ruleName=name)["rule"])
                except (self.iot.exceptions.ResourceNotFoundException, self.iot.exceptions.UnauthorizedException):
                    continue  # deleted in between
        self.cache = cache
        return [document for _key, document in cache.values()]


def lambda_invoker(settings: Settings):
    client = aws_client(settings, "lambda", read_timeout=960)  # up to Lambda's 900 s limit

    def invoke(function_arn: str, payload: bytes):
        answer = client.invoke(FunctionName=function_arn, InvocationType="RequestResponse", Payload=payload)
        return answer.get("FunctionError"), answer["Payload"].read()

    return invoke


def log_writer(settings: Settings):
    client = aws_client(settings, "logs")
    stream = f"{datetime.now(UTC):%Y/%m/%d}/iotfleet-rules-bridge-{uuid.uuid4().hex[:8]}"
    made: set = set()
    lock = threading.Lock()

    def write(group: str, text: str) -> None:
        with lock:
            if group not in made:
                with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
                    client.create_log_stream(logGroupName=group, logStreamName=stream)
                made.add(group)
            client.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[{"timestamp": int(time.time() * 1000), "message": text}],
            )

    return write


def shadow_versions(settings: Settings) -> dict[str, int]:
    url = f"{settings.endpoint}/iotfleet-sandbox/shadows?region={settings.region}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())["versions"]


# -- the MQTT side --------------------------------------------------------------------------------


@dataclass
class Connection:
    host: str
    port: int
    ca: str | None = None  # None: plain TCP (tests)
    cert: str | None = None
    key: str | None = None
    client_id: str = field(default_factory=lambda: f"iotfleet-rules-bridge-{os.getpid()}")


def service_connection(settings: Settings) -> Connection:
    from sandbox import broker  # the broker engineer's module: the service identity's certificate

    identity = broker.service_identity(settings)
    return Connection(settings.host, settings.mqtt_port, str(identity.ca), str(identity.cert), str(identity.key))


class Bridge:
    """The running bridge: MQTT client, engine, shadow service, pollers."""

    def __init__(self, connection: Connection, engine: Engine, shadows, read_rule_documents, read_versions):
        import paho.mqtt.client as mqtt

        self.mqtt = mqtt
        self.connection = connection
        self.engine = engine
        self.shadows = shadows
        self.read_rule_documents = read_rule_documents
        self.read_versions = read_versions
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.filters: dict[str, int] = {}  # topic filter -> subscription identifier
        self.rule_filters: set[str] = set()  # those of them the rules need
        self.next_id = 1
        self.lock = threading.RLock()
        self.rules_loaded = False
        self.last_error: str | None = None
        self.connects = 0
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=connection.client_id,
            protocol=mqtt.MQTTv5,
        )
        if connection.ca:
            client.tls_set(
                ca_certs=connection.ca,
                certfile=connection.cert,
                keyfile=connection.key,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.reconnect_delay_set(min_delay=1, max_delay=16)
        client.max_queued_messages_set(10000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # MQTT callbacks run on paho's network thread: evaluate, queue, return.
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            LOG.error(self.last_error)
            return
        self.connects += 1
        LOG.info("connected to %s:%s as %s", self.connection.host, self.connection.port, self.connection.client_id)
        with self.lock:
            for topic_filter, sub_id in self.filters.items():
                self._subscribe(topic_filter, sub_id)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if not self.stopping.is_set():
            LOG.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _subscribe(self, topic_filter: str, sub_id: int) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        properties = Properties(PacketTypes.SUBSCRIBE)
        properties.SubscriptionIdentifier = sub_id
        self.client.subscribe(topic_filter, options=SubscribeOptions(qos=QOS), properties=properties)

    def _on_message(self, client, userdata, message):
        properties = getattr(message, "properties", None)
        user = dict(getattr(properties, "UserProperty", None) or [])
        ids = getattr(properties, "SubscriptionIdentifier", None) or []
        ids = set(ids if isinstance(ids, list) else [ids])
        topic = message.topic
        payload = bytes(message.payload)
        with self.lock:
            shadow_ids = {self.filters.get(f) for f in shadow_mod.REQUEST_FILTERS} if self.shadows else set()
            rule_ids = {self.filters.get(f) for f in self.rule_filters}
        if not ids:  # a broker that does not tag: treat the message as matching everything
            ids = shadow_ids | rule_ids
        client_id = client_id_of(topic, payload, user.get(CLIENT_ID_PROPERTY))
        if ids & shadow_ids and shadow_mod.parse_request_topic(topic):
            thing = shadow_mod.parse_request_topic(topic)[0]
            self.engine.workers.submit(thing, self.shadows.handle, topic, payload)
        if ids & rule_ids:
            self.engine.handle(topic, payload, client_id)

    def publish(self, topic: str, payload: bytes, qos: int = QOS) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc != self.mqtt.MQTT_ERR_SUCCESS and info.rc != self.mqtt.MQTT_ERR_NO_CONN:
            raise RuntimeError(self.mqtt.error_string(info.rc))

    def set_filters(self, wanted: set[str]) -> None:
        """Subscribe to the rules' filters (and the shadow requests), unsubscribe from the others."""
        rule_filters = set(wanted)
        wanted = rule_filters | set(shadow_mod.REQUEST_FILTERS if self.shadows else ())
        with self.lock:
            self.rule_filters = rule_filters
            for topic_filter in sorted(set(self.filters) - wanted):
                del self.filters[topic_filter]
                if self.connected.is_set():
                    self.client.unsubscribe(topic_filter)
            for topic_filter in sorted(wanted - set(self.filters)):
                self.filters[topic_filter] = self.next_id
                self.next_id += 1
                if self.connected.is_set():
                    self._subscribe(topic_filter, self.filters[topic_filter])

    def refresh_rules(self) -> None:
        try:
            documents = self.read_rule_documents()
        except Exception as exc:  # noqa: BLE001 - the sandbox may be restarting: keep the rules we have
            self.last_error = f"could not read the topic rules: {exc}"
            LOG.warning(self.last_error)
            return
        self.set_filters(self.engine.set_rules(documents))
        self.rules_loaded = True

    def poll_shadows(self, first: bool) -> bool:
        try:
            versions = self.read_versions()
        except Exception as exc:  # noqa: BLE001
            LOG.debug("could not read shadow versions: %s", exc)
            return first
        for thing in self.shadows.changed(versions, first):
            self.engine.workers.submit(thing, self.shadows.check, thing, versions[thing])
        return False

    def start(self) -> None:
        self.refresh_rules()
        self.client.connect_async(self.connection.host, self.connection.port, keepalive=30, clean_start=True)
        self.client.loop_start()

    def run(self, status_file: Path | None = None) -> None:
        """Poll rules and shadows until stop()."""
        first_shadow_poll = True
        next_rules = time.monotonic() + RULES_POLL_SECONDS
        while not self.stopping.is_set():
            if self.shadows is not None:
                first_shadow_poll = self.poll_shadows(first_shadow_poll)
            if time.monotonic() >= next_rules:
                next_rules = time.monotonic() + RULES_POLL_SECONDS
                self.refresh_rules()
                if status_file is not None:
                    self.write_status(status_file)
            self.stopping.wait(SHADOW_POLL_SECONDS)

    def status(self) -> dict:
        invoke_ms = sorted(self.engine.actions.invoke_ms)
        return {
            "pid": os.getpid(),
            "connected": self.connected.is_set(),
            "connects": self.connects,
            "client_id": self.connection.client_id,
            "rules": sorted(self.engine.rules),
            "filters": sorted(self.filters),
            "counts": {**self.engine.counts, **self.engine.actions.counts, "pending": self.engine.workers.pending()},
            "shadow": dict(self.shadows.counts) if self.shadows else None,
            "invoke_ms_p50": invoke_ms[len(invoke_ms) // 2] if invoke_ms else None,
            "last_error": self.last_error,
            "updated": time.time(),
        }

    def write_status(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.status()))
        os.replace(temporary, path)

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        self.engine.workers.stop()


def build(settings: Settings, connection: Connection) -> Bridge:
    """A bridge wired to the sandbox at `settings.endpoint` and the broker at `connection`."""
    function_errors_fail = os.environ.get(FUNCTION_ERRORS_ENV, "").lower() != "aws"
    holder: dict = {}

    def publish(topic, payload, qos=QOS):
        holder["bridge"].publish(topic, payload, qos)

    actions = Actions(lambda_invoker(settings), publish, log_writer(settings), function_errors_fail)
    engine = Engine(actions, Workers())
    iot = aws_client(settings, "iot")
    shadows = shadow_mod.ShadowService(aws_client(settings, "iot-data"), lambda t, p: publish(t, p, QOS))
    bridge = Bridge(connection, engine, shadows, RuleReader(iot), lambda: shadow_versions(settings))
    holder["bridge"] = bridge
    return bridge


# -- the process ----------------------------------------------------------------------------------


def pid_file(settings: Settings) -> Path:
    return settings.state_dir / "bridge.pid"


def log_file(settings: Settings) -> Path:
    return settings.state_dir / "bridge.log"


def status_file(settings: Settings) -> Path:
    return settings.state_dir / "bridge.json"


def running_pid(settings: Settings) -> int | None:
    return procs.running_pid(pid_file(settings), "sandbox.bridge", str(settings.state_dir), unreadable=False)


def read_status(settings: Settings) -> dict | None:
    try:
        return json.loads(status_file(settings).read_text())
    except (OSError, ValueError):
        return None


def command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sandbox.bridge",
        "--state-dir",
        str(settings.state_dir),
        "--port",
        str(settings.port),
        "--region",
        settings.region,
        "--mqtt-port",
        str(settings.mqtt_port),
    ]


def up(settings: Settings) -> int:
    """Start the bridge unless it runs (after the broker); 0 when started or running, 1 if it fails."""
    pid = running_pid(settings)
    if pid is not None:
        print(f"rules bridge already running (pid {pid})")
        return 0
    pid_file(settings).unlink(missing_ok=True)
    status_file(settings).unlink(missing_ok=True)
    try:
        from sandbox import broker
    except ImportError:
        print("rules bridge not started: there is no MQTT broker (sandbox/broker.py)")
        return 0
    if broker.running_pid(settings) is None:
        print("rules bridge not started: the MQTT broker is not running")
        return 0
    process = procs.spawn(command(settings), log_file(settings), pid_file(settings))
    status = {}

    def connected() -> bool:
        status.clear()
        status.update(read_status(settings) or {})
        return status.get("pid") == process.pid and bool(status.get("connected"))

    if procs.wait_ready(process, connected, START_TIMEOUT):
        print(f"rules bridge started (pid {process.pid}), {len(status['rules'])} rule(s)")
        return 0
    if process.returncode is not None:
        pid_file(settings).unlink(missing_ok=True)
        print(f"rules bridge failed to start (exit {process.returncode}); see {log_file(settings)}", file=sys.stderr)
        return 1
    print(f"rules bridge started (pid {process.pid}) but not connected to the broker yet; see {log_file(settings)}")
    return 0


def down(settings: Settings) -> None:
    pid = running_pid(settings)
    if procs.take_down(pid_file(settings), pid):
        print(f"rules bridge stopped (pid {pid})")


def status_line(settings: Settings) -> str:
    pid = running_pid(settings)
    if pid is None:
        return "rules bridge not running"
    status = read_status(settings)
    if not status or status.get("pid") != pid:
        return f"rules bridge starting (pid {pid})"
    link = "connected" if status.get("connected") else "not connected to the broker"
    counts = status.get("counts", {})
    return (
        f"rules bridge running (pid {pid}), {link}, {len(status.get('rules', []))} rule(s), "
        f"{counts.get('messages', 0)} message(s), {counts.get('failed', 0)} failed action(s)"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    settings = Settings(
        state_dir=Path(args.state_dir), port=args.port, region=args.region, mqtt_port=args.mqtt_port
    )
    bridge = build(settings, service_connection(settings))
    signal.signal(signal.SIGTERM, lambda signum, frame: bridge.stopping.set())
    bridge.start()
    bridge.write_status(status_file(settings))
    deadline = time.monotonic() + START_TIMEOUT
    while not bridge.connected.wait(0.2) and time.monotonic() < deadline:
        pass
    bridge.write_status(status_file(settings))
    try:
        bridge.run(status_file(settings))
    finally:
        bridge.stop()
        status_file(settings).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
