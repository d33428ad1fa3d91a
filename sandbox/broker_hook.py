"""The moto server's side of the MQTT broker: access rules from the registry, DeleteConnection.

- After every IoT registry change that can alter who may connect or what they may do (certificate
  create/register/update/delete, policy or thing attached/detached, policy versions, thing
  changes), the access rules are rendered from the in-memory backend (sandbox/policy_acl.py) and
  written atomically to the broker's state file, debounced (DEBOUNCE_S) in a background thread. The
  broker plugin reloads the file when it changes, so it follows the registry within a second with
  no polling of the API.
- iot-data DeleteConnection: 404 ResourceNotFoundException when the client id is not connected to
  the broker, else the broker drops the session (the call returns once it is gone, or after
  DELETE_WAIT_S).

Configured by moto_ext.apply() from the environment that control.py passes (broker.BROKER_DIR_ENV,
broker.BROKER_REGION_ENV); without it nothing is written and DeleteConnection always answers 404.
"""

import contextlib
import functools
import logging
import threading
import time
import urllib.parse
from pathlib import Path

from moto.core import DEFAULT_ACCOUNT_ID
from moto.iot.models import IoTBackend
from moto.iot.models import iot_backends
from moto.iotdata.exceptions import ResourceNotFoundException as DataPlaneResourceNotFound
from moto.iotdata.responses import IoTDataPlaneResponse

from sandbox import broker
from sandbox import policy_acl

DEBOUNCE_S = 0.05
DELETE_WAIT_S = 3.0
# IoTBackend methods after which the rules are rewritten.
# (CreateCertificateFromCsr is moto_ext's, which registers the certificate through register_certificate.)
MUTATIONS = (
    "create_keys_and_certificate",
    "register_certificate",
    "register_certificate_without_ca",
    "update_certificate",
    "delete_certificate",
    "attach_policy",
    "detach_policy",
    "attach_principal_policy",
    "detach_principal_policy",
    "attach_thing_principal",
    "detach_thing_principal",
    "create_policy_version",
    "set_default_policy_version",
    "delete_policy_version",
    "delete_policy",
    "update_thing",
    "delete_thing",
)

log = logging.getLogger(__name__)


class _Writer:
    """Debounced, single-threaded writer of the rules file."""

    def __init__(self):
        self.folder: Path | None = None
        self.region: str | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.writes = 0

    def configure(self, folder: Path | None, region: str | None) -> None:
        self.folder = Path(folder) if folder else None
        self.region = region or None
        if self.folder is not None:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.write_now()

    def _backend(self) -> IoTBackend | None:
        if self.region is None:
            return None
        return iot_backends[DEFAULT_ACCOUNT_ID][self.region]

    def write_now(self) -> bool:
        """Render and write the rules now; True if the file changed."""
        if self.folder is None:
            return False
        backend = self._backend()
        with self._lock:
            for _attempt in range(5):
                try:
                    if backend is None:
                        prefix, certificates = policy_acl.NO_REGISTRY, []
                    else:
                        prefix, certificates = policy_acl.from_backend(backend)
                    break
                except RuntimeError:  # a request changed a dict while we read it: read again
                    time.sleep(0.01)
            else:
                return False
            changed = policy_acl.write_state(
                broker.acl_file(self.folder), policy_acl.format_state(prefix, certificates)
            )
            self.writes += changed
            return changed

    def changed(self, backend: IoTBackend) -> None:
        if self.folder is None:
            return
        if self.region is None:
            self.region = backend.region_name
        if backend.region_name != self.region or backend.account_id != DEFAULT_ACCOUNT_ID:
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="broker-acl-writer", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(DEBOUNCE_S)  # let a burst of changes land before rendering
            self._wake.clear()
            try:
                self.write_now()
            except Exception:  # noqa: BLE001 - keep the writer alive; the next change retries
                log.exception("writing the broker's access rules failed")


writer = _Writer()


def _after(method):
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        writer.changed(self)
        return result

    return wrapped


# iot-data DeleteConnection (DELETE /connections/{clientId}).
def delete_connection_response(self: IoTDataPlaneResponse) -> str:
    client_id = urllib.parse.unquote(self.path.split("?")[0].rstrip("/").split("/connections/", 1)[-1])
    folder = writer.folder
    if folder is None or client_id not in broker.connected_clients(folder):
        raise DataPlaneResourceNotFound()
    session = broker.connected_clients(folder)[client_id]["session_id"]
    broker.request_disconnect(folder, client_id)
    deadline = time.monotonic() + DELETE_WAIT_S
    while time.monotonic() < deadline:
        current = broker.connected_clients(folder).get(client_id)
        if current is None or current["session_id"] != session:
            break
        time.sleep(0.02)
    return "{}"


def configure(folder: Path | None, region: str | None) -> None:
    writer.configure(folder, region)


def install(patch) -> None:
    """Wrap the registry mutations with `patch(owner, name, replacement)` (moto_ext._patch)."""
    for name in MUTATIONS:
        patch(IoTBackend, name, _after(getattr(IoTBackend, name)))
    patch(IoTDataPlaneResponse, "delete_connection", delete_connection_response)


def reset() -> None:
    with contextlib.suppress(Exception):
        writer.configure(None, None)
