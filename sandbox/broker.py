"""The sandbox's MQTT data plane: Mosquitto 2.0 with TLS client certificates, authorised like AWS IoT.

`up` starts `mosquitto -c <state>/broker/mosquitto.conf` detached (own session, pid file, log) on
127.0.0.1:settings.mqtt_port, TLS only, with a server certificate from the sandbox CA and client
certificates required, and waits until it completes a TLS handshake. Authorisation is the
iotfleet_auth plugin (sandbox/mosquitto/iotfleet_auth.c, built here with gcc when the .so is
missing or older than its source) that reads the access rules the moto server process writes from
its IoT registry (sandbox/policy_acl.py, moto_ext's registry hook).

`service_identity(settings)` is the certificate the sandbox's own clients (the rules bridge) use:
any client id starting `iotfleet-`, publish/subscribe anything.
"""

import contextlib
import hashlib
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

from sandbox import policy_acl
from sandbox import procs
from sandbox.ca import CA
from sandbox.ca import ensure_ca
from sandbox.settings import ROOT
from sandbox.settings import Settings

# Passed to the moto server process: the broker's folder, where it writes the access rules, reads
# the connected clients and drops DeleteConnection requests.
BROKER_DIR_ENV = "IOTFLEET_SANDBOX_BROKER_DIR"
# ... and the region whose IoT registry the broker serves.
BROKER_REGION_ENV = "IOTFLEET_SANDBOX_BROKER_REGION"
MOSQUITTO = "mosquitto"
PLUGIN_SOURCE = ROOT / "sandbox" / "mosquitto" / "iotfleet_auth.c"
PLUGIN_BUILD_DIR = ROOT / ".build" / "mosquitto"
SERVICE_COMMON_NAME = "iotfleet-rules-engine"
SERVICE_CLIENT_PREFIX = "iotfleet-"
# The user property the broker adds to every device publish (MQTT v5): the publisher's client id.
CLIENT_ID_PROPERTY = "iotfleet-client-id"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
CERT_VALIDITY = timedelta(days=825)
ACL_FILE = "acl.txt"
CLIENTS_FILE = "clients.txt"
VERSIONS_FILE = "presence-versions.txt"
REQUESTS_DIR = "requests"


@dataclass(frozen=True)
class Identity:
    ca: Path
    cert: Path
    key: Path


def broker_dir(settings: Settings) -> Path:
    return settings.state_dir / "broker"


def pid_file(settings: Settings) -> Path:
    return broker_dir(settings) / "mosquitto.pid"


def log_file(settings: Settings) -> Path:
    return broker_dir(settings) / "mosquitto.log"


def conf_file(settings: Settings) -> Path:
    return broker_dir(settings) / "mosquitto.conf"


def acl_file(folder: Path) -> Path:
    return Path(folder) / ACL_FILE


def clients_file(folder: Path) -> Path:
    return Path(folder) / CLIENTS_FILE


def requests_dir(folder: Path) -> Path:
    return Path(folder) / REQUESTS_DIR


def connected_clients(folder: Path) -> dict[str, dict]:
    """The clients connected now, as the broker lists them: {clientId: {certificate_id, session_id, kind}}."""
    try:
        text = clients_file(folder).read_text()
    except FileNotFoundError:
        return {}
    clients = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 4:
            clients[fields[0]] = {"certificate_id": fields[1], "session_id": fields[2], "kind": fields[3]}
    return clients


def request_disconnect(folder: Path, client_id: str) -> None:
    """Ask the broker to drop `client_id`'s session (it handles requests on its next tick)."""
    folder = requests_dir(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".")
    with os.fdopen(fd, "w") as handle:
        handle.write(client_id + "\n")
    os.replace(tmp, folder / f"{os.getpid()}-{time.monotonic_ns()}")


# ---------------------------------------------------------------- certificates


def _write_private(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _issued_by(cert_path: Path, key_path: Path, ca: CA) -> bool:
    """True if `cert_path` is a certificate from `ca` for the key in `key_path`, valid for another day."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca.cert)
    except (OSError, ValueError, TypeError, Exception):  # noqa: BLE001 - any failure means "make a new one"
        return False
    return cert.public_key() == key.public_key() and cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=1)


def _issue(ca: CA, common_name: str, server: bool) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _ensure_pair(ca: CA, folder: Path, name: str, common_name: str, server: bool) -> tuple[Path, Path]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    if not _issued_by(cert_path, key_path, ca):
        cert_pem, key_pem = _issue(ca, common_name, server)
        _write_private(key_path, key_pem)
        _write_private(cert_path, cert_pem)
        cert_path.chmod(0o644)
    return cert_path, key_path


def certificate_id(cert_path: Path) -> str:
    """AWS's certificate id: SHA-256 of the DER certificate."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def service_identity(settings: Settings) -> Identity:
    """The (ca, cert, key) paths of the sandbox's service client certificate (made on first use, key 0600).

    It is issued by the sandbox CA directly (never through CreateCertificateFromCsr, so it is in no
    registry) and may connect with any client id starting `iotfleet-` and publish/subscribe anything.
    """
    ca = ensure_ca(settings.ca_dir)
    cert, key = _ensure_pair(ca, broker_dir(settings) / "tls", "service", SERVICE_COMMON_NAME, server=False)
    return Identity(ca=ca.cert_path, cert=cert, key=key)


def _server_identity(settings: Settings) -> Identity:
    ca = ensure_ca(settings.ca_dir)
    cert, key = _ensure_pair(ca, broker_dir(settings) / "tls", "server", "localhost", server=True)
    return Identity(ca=ca.cert_path, cert=cert, key=key)


# ---------------------------------------------------------------- plugin, configuration


def plugin_path() -> Path:
    return PLUGIN_BUILD_DIR / "iotfleet_auth.so"


def ensure_plugin() -> Path:
    """Build the plugin with gcc when the .so is missing or older than its source; RuntimeError if it cannot."""
    target = plugin_path()
    if target.is_file() and target.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        raise RuntimeError("gcc is needed to build the broker plugin")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}"
    command = [
        compiler,
        "-std=gnu11",
        "-O2",
        "-Wall",
        "-fPIC",
        "-shared",
        "-o",
        str(tmp),
        str(PLUGIN_SOURCE),
        "-lcrypto",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"building {PLUGIN_SOURCE.name} failed (are mosquitto-dev and libssl-dev installed?):\n{result.stderr}"
        )
    os.replace(tmp, target)
    return target


def _run_as_user() -> str:
    """Mosquitto drops root to `user`; as root we keep root, so it can read the 0700 state dir."""
    return pwd.getpwuid(os.getuid()).pw_name


def write_config(settings: Settings, plugin: Path) -> Path:
    folder = broker_dir(settings)
    server = _server_identity(settings)
    service = service_identity(settings)
    requests_dir(folder).mkdir(mode=0o700, exist_ok=True)
    lines = [
        "# Written by sandbox/broker.py on every `up`; edits are lost.",
        "per_listener_settings false",
        "allow_anonymous false",
        "persistence false",
        f"user {_run_as_user()}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "connection_messages true",
        "max_keepalive 1200",
        f"plugin {plugin}",
        f"plugin_opt_acl_file {acl_file(folder)}",
        f"plugin_opt_clients_file {clients_file(folder)}",
        f"plugin_opt_versions_file {folder / VERSIONS_FILE}",
        f"plugin_opt_requests_dir {requests_dir(folder)}",
        f"plugin_opt_service_certs {certificate_id(service.cert)}",
        f"plugin_opt_service_prefix {SERVICE_CLIENT_PREFIX}",
        f"listener {settings.mqtt_port} {settings.host}",
        "protocol mqtt",
        f"cafile {server.ca}",
        f"certfile {server.cert}",
        f"keyfile {server.key}",
        "require_certificate true",
        "use_identity_as_username false",
    ]
    path = conf_file(settings)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------- process


def is_broker_process(pid: int, settings: Settings) -> bool:
    """True if `pid` is our mosquitto with this state dir's configuration (a stale pid file may name another)."""
    return procs.is_ours(pid, str(conf_file(settings)))


def running_pid(settings: Settings) -> int | None:
    return procs.running_pid(pid_file(settings), str(conf_file(settings)))


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def tls_handshake(settings: Settings, timeout: float = 2.0) -> bool:
    """True if the broker accepts the service identity over TLS: handshake, CONNECT, CONNACK 0, DISCONNECT."""
    identity = service_identity(settings)
    context = ssl.create_default_context(cafile=str(identity.ca))
    context.load_cert_chain(str(identity.cert), str(identity.key))
    # MQTT 3.1.1 CONNECT, clean session, keepalive 10 s, client id iotfleet-health-<pid>.
    body = _mqtt_string("MQTT") + bytes([4, 0x02, 0, 10]) + _mqtt_string(f"{SERVICE_CLIENT_PREFIX}health-{os.getpid()}")
    try:
        with socket.create_connection((settings.host, settings.mqtt_port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=settings.host) as tls:
                tls.sendall(bytes([0x10, len(body)]) + body)
                answer = b""
                while len(answer) < 4:
                    chunk = tls.recv(4 - len(answer))
                    if not chunk:
                        return False
                    answer += chunk
                accepted = answer[0] == 0x20 and answer[3] == 0
                if accepted:
                    tls.sendall(bytes([0xE0, 0]))
                return accepted
    except (OSError, ssl.SSLError):
        return False


def _stop(pid: int) -> None:
    procs.stop(pid, timeout=STOP_TIMEOUT, poll=0.05)


def _start(settings: Settings, binary: str) -> int:
    plugin = ensure_plugin()
    conf = write_config(settings, plugin)
    if not acl_file(broker_dir(settings)).exists():
        # Until the moto server writes the registry's rules, nobody but the service client gets in.
        policy_acl.write_state(acl_file(broker_dir(settings)), policy_acl.format_state(policy_acl.NO_REGISTRY, []))
    note = f"starting on mqtts://{settings.host}:{settings.mqtt_port}"
    command = [binary, "-c", str(conf)]
    process = procs.spawn(command, log_file(settings), pid_file(settings), note, cwd=broker_dir(settings))
    if procs.wait_ready(process, lambda: tls_handshake(settings, timeout=1.0), START_TIMEOUT, poll=0.1):
        return process.pid
    if process.returncode is not None:
        pid_file(settings).unlink(missing_ok=True)
        raise RuntimeError(f"mosquitto exited with code {process.returncode}")
    procs.take_down(pid_file(settings), process.pid, _stop)
    raise RuntimeError(
        f"mosquitto did not accept TLS on {settings.host}:{settings.mqtt_port} within {START_TIMEOUT:.0f} s"
    )


def up(settings: Settings) -> int:
    """Start the broker unless it runs (0); 1 if it fails. Without mosquitto installed it is left out (0)."""
    folder = broker_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid = running_pid(settings)
    if pid is not None and tls_handshake(settings):
        print(f"mqtt broker already running (pid {pid}) at mqtts://{settings.host}:{settings.mqtt_port}")
        return 0
    if pid is not None:
        _stop(pid)
    pid_file(settings).unlink(missing_ok=True)
    binary = shutil.which(MOSQUITTO) or next(
        (path for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(path, os.X_OK)), None
    )
    if binary is None:
        print("mqtt broker not started: mosquitto is not installed (make system-deps)")
        return 0
    try:
        pid = _start(settings, binary)
    except (RuntimeError, OSError) as exc:
        tail = procs.log_tail(log_file(settings))
        print(
            f"mqtt broker failed to start: {exc}\n--- last lines of {log_file(settings)}:\n{tail}",
            file=sys.stderr,
        )
        return 1
    print(f"mqtt broker started (pid {pid}) at mqtts://{settings.host}:{settings.mqtt_port}")
    if f"arn\t{policy_acl.NO_REGISTRY}\n" in acl_file(broker_dir(settings)).read_text():
        # A moto server started before the broker existed does not write its rules: only `down` + `up` helps.
        print("mqtt broker: the running sandbox server does not feed it the registry; `down` and `up` to fix that")
    return 0


def down(settings: Settings) -> None:
    pid = procs.read_pid(pid_file(settings))
    if pid is None:
        return
    if procs.take_down(pid_file(settings), pid if is_broker_process(pid, settings) else None, _stop):
        print(f"mqtt broker stopped (pid {pid})")


def status_line(settings: Settings) -> str:
    pid = running_pid(settings)
    if pid is None:
        return "mqtt broker not running"
    if not tls_handshake(settings):
        return f"mqtt broker process {pid} is alive but does not accept TLS; see {log_file(settings)}"
    health = f"{SERVICE_CLIENT_PREFIX}health-"
    clients = {
        name: client for name, client in connected_clients(broker_dir(settings)).items() if not name.startswith(health)
    }
    devices = sum(1 for client in clients.values() if client["kind"] == "device")
    return (
        f"mqtt broker running (pid {pid}) at mqtts://{settings.host}:{settings.mqtt_port}, "
        f"{devices} device(s) and {len(clients) - devices} service client(s) connected"
    )
