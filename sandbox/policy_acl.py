"""IoT policies → the broker's access rules, and the state file the broker plugin reads.

AWS IoT authorises an MQTT client by its certificate: the certificate must be ACTIVE, and the
policies attached to it decide iot:Connect (`client/<clientId>`), iot:Publish and iot:Receive
(`topic/<topic>`) and iot:Subscribe (`topicfilter/<filter>`). An explicit Deny wins over any Allow;
nothing allowed is denied. This module renders that, per certificate, into patterns the broker
plugin (sandbox/mosquitto/iotfleet_auth.c) matches with `*` (any run of characters, `/` included)
and `?` (one character), as IoT policy resources are matched.

Policy variables:
- `${iot:Connection.Thing.ThingName}` (and `.ThingTypeName`, `.Attributes[name]`, `.IsAttached`)
  resolve only when the client id is the name of a thing attached to the certificate, as in AWS.
  So such statements are rendered once per attached thing, in a context that applies only to a
  connection whose client id is that thing's name.
- `${iot:ClientId}` is substituted with the thing name in those contexts; in the context that
  applies to any client id it is left in the pattern and the plugin substitutes the connection's
  client id.
- Any other variable (certificate fields, ...) cannot be resolved: the resource is left out (it
  grants nothing, and an unresolvable Deny resource denies nothing, as in AWS).
- `${*}`, `${?}` and `${$}` are the literal characters; the plugin has no escape for `*` and `?`,
  so a resource using them is matched as a wildcard (documented limitation).

Not evaluated: `Condition` blocks (an Allow with a Condition is left out, a Deny with one is kept
unconditionally: both err on the side of refusing), `NotAction`/`NotResource` (statement left out).

State file (text, UTF-8, one record per line, fields separated by TAB; written atomically):

    iotfleet-broker-acl 1
    arn <arn:partition:iot:region:account>      prefix the plugin puts before client/..., topic/...
    cert <certificateId> <STATUS>
    thing <thingName>                           one per thing attached to the certificate
    rule <context> <allow|deny> <action> <pattern>
                                                context: * (any client id) or a thing name
                                                action: connect, publish, subscribe, receive
    end                                         closes the certificate
"""

import contextlib
import fnmatch
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

FORMAT_HEADER = "iotfleet-broker-acl 1"
# The ARN prefix of a rules file that no IoT registry wrote (nothing but service clients get in).
NO_REGISTRY = "arn:aws:iot:-:-"
ANY_CLIENT = "*"
# MQTT action (as the plugin names it) -> IoT policy action.
ACTIONS = {"connect": "iot:Connect", "publish": "iot:Publish", "subscribe": "iot:Subscribe", "receive": "iot:Receive"}
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_THING_PREFIX = "iot:Connection.Thing."
CLIENT_ID_VARIABLE = "${iot:ClientId}"


@dataclass(frozen=True)
class Thing:
    name: str
    type_name: str | None = None
    attributes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    context: str  # ANY_CLIENT or a thing name
    effect: str  # allow | deny
    action: str  # connect | publish | subscribe | receive
    pattern: str


@dataclass
class CertificateAccess:
    certificate_id: str
    status: str
    things: list[Thing] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _load(document) -> dict:
    if isinstance(document, dict):
        return document
    try:
        parsed = json.loads(document or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _substitute(resource: str, thing: Thing | None) -> str | None:
    """The resource with the variables resolved for `thing` (None: any client id); None if it cannot be."""
    unresolved = False

    def replace(match: re.Match) -> str:
        nonlocal unresolved
        name = match.group(1)
        if name in ("*", "?", "$"):
            return name
        if name == "iot:ClientId":
            return thing.name if thing is not None else CLIENT_ID_VARIABLE
        if name.startswith(_THING_PREFIX) and thing is not None:
            key = name[len(_THING_PREFIX) :]
            if key == "ThingName":
                return thing.name
            if key == "IsAttached":
                return "true"
            if key == "ThingTypeName" and thing.type_name:
                return thing.type_name
            if key.startswith("Attributes[") and key.endswith("]"):
                value = (thing.attributes or {}).get(key[len("Attributes[") : -1])
                if value is not None:
                    return str(value)
        unresolved = True
        return ""

    rendered = _VARIABLE.sub(replace, resource)
    if unresolved or "\t" in rendered or "\n" in rendered:
        return None
    return rendered


def _uses_thing(resource: str) -> bool:
    return any(match.group(1).startswith(_THING_PREFIX) for match in _VARIABLE.finditer(resource))


def _actions(statement: dict) -> list[str]:
    patterns = [str(action).lower() for action in _as_list(statement.get("Action"))]
    return [
        ours
        for ours, theirs in ACTIONS.items()
        if any(fnmatch.fnmatchcase(theirs.lower(), pattern) for pattern in patterns)
    ]


def render_rules(documents: Iterable, things: Iterable[Thing]) -> list[Rule]:
    """The rules of the policy documents (JSON text or dicts) for a certificate with `things` attached."""
    things = list(things)
    rules: list[Rule] = []
    for document in documents:
        for statement in _as_list(_load(document).get("Statement")):
            if not isinstance(statement, dict):
                continue
            effect = str(statement.get("Effect", "")).lower()
            if effect not in ("allow", "deny") or "NotAction" in statement or "NotResource" in statement:
                continue
            if "Condition" in statement and effect == "allow":
                continue
            actions = _actions(statement)
            for resource in (str(item) for item in _as_list(statement.get("Resource"))):
                contexts = [(thing.name, thing) for thing in things] if _uses_thing(resource) else [(ANY_CLIENT, None)]
                for context, thing in contexts:
                    pattern = _substitute(resource, thing)
                    if pattern is None:
                        continue
                    rules.extend(Rule(context, effect, action, pattern) for action in actions)
    return list(dict.fromkeys(rules))


def _matches(pattern: str, value: str, client_id: str) -> bool:
    """What the plugin does: `*` any run, `?` one character, nothing else special."""
    pattern = pattern.replace(CLIENT_ID_VARIABLE, client_id)
    regex = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def is_allowed(access: CertificateAccess, arn_prefix: str, client_id: str, action: str, name: str) -> bool:
    """The plugin's decision, in Python (tests and tools): may this connection do `action` on `name`?

    `name` is the client id (connect), the topic (publish, receive) or the topic filter (subscribe).
    """
    if access.status != "ACTIVE":
        return False
    kind = {"connect": "client", "publish": "topic", "receive": "topic", "subscribe": "topicfilter"}[action]
    resource = f"{arn_prefix}:{kind}/{name}"
    applicable = [
        rule
        for rule in access.rules
        if rule.action == action and (rule.context == ANY_CLIENT or rule.context == client_id)
    ]
    if any(rule.effect == "deny" and _matches(rule.pattern, resource, client_id) for rule in applicable):
        return False
    return any(rule.effect == "allow" and _matches(rule.pattern, resource, client_id) for rule in applicable)


def format_state(arn_prefix: str, certificates: Iterable[CertificateAccess]) -> str:
    lines = [FORMAT_HEADER, f"arn\t{arn_prefix}"]
    for cert in certificates:
        lines.append(f"cert\t{cert.certificate_id}\t{cert.status}")
        lines.extend(f"thing\t{thing.name}" for thing in cert.things)
        lines.extend(f"rule\t{r.context}\t{r.effect}\t{r.action}\t{r.pattern}" for r in cert.rules)
        lines.append("end")
    return "\n".join(lines) + "\n"


def parse_state(text: str) -> tuple[str, list[CertificateAccess]]:
    """The inverse of format_state (for tests and tools)."""
    lines = text.splitlines()
    if not lines or lines[0] != FORMAT_HEADER:
        raise ValueError("not a broker ACL state file")
    arn_prefix, certificates, current = "", [], None
    for line in lines[1:]:
        kind, *fields = line.split("\t")
        if kind == "arn":
            arn_prefix = fields[0]
        elif kind == "cert":
            current = CertificateAccess(fields[0], fields[1])
            certificates.append(current)
        elif kind == "thing" and current is not None:
            current.things.append(Thing(fields[0]))
        elif kind == "rule" and current is not None:
            current.rules.append(Rule(*fields))
        elif kind == "end":
            current = None
    return arn_prefix, certificates


def write_state(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically (temp file + rename); False if it already held exactly that."""
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


def from_backend(backend) -> tuple[str, list[CertificateAccess]]:
    """Every certificate of a moto IoTBackend with its things and rendered rules (call under the IoT lock)."""
    certificates = list(backend.certificates.values())
    partition = certificates[0].arn.split(":")[1] if certificates else "aws"
    arn_prefix = f"arn:{partition}:iot:{backend.region_name}:{backend.account_id}"
    things_of: dict[str, list[Thing]] = {}
    policies_of: dict[str, list] = {}
    for (principal_arn, _name), (_principal, thing) in list(backend.principal_things.items()):
        things_of.setdefault(principal_arn, []).append(
            Thing(thing.thing_name, thing.thing_type.thing_type_name if thing.thing_type else None, thing.attributes)
        )
    for (principal_arn, _name), (_principal, policy) in list(backend.principal_policies.items()):
        policies_of.setdefault(principal_arn, []).append(policy.document)
    result = []
    for cert in certificates:
        things = sorted(things_of.get(cert.arn, []), key=lambda thing: thing.name)
        rules = render_rules(policies_of.get(cert.arn, []), things)
        result.append(CertificateAccess(cert.certificate_id, str(cert.status), things, rules))
    return arn_prefix, result
