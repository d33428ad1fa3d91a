"""AWS IoT presence (lifecycle) events: parsing and the order in which they apply.

Connect/disconnect events may arrive out of order and more than once, and their `timestamp` is
only accurate to about +/- 2 minutes. Their `versionNumber` grows with each connection of a
client id (a connection's connect and disconnect share it) but resets to 0 after about an hour
without a connection. So two events are ordered:
  - by timestamp when they are more than ORDER_WINDOW_MS apart (clock error is far smaller), and
  - within that window by `sequence` = 2 * versionNumber + (1 for disconnected, 0 for connected),
    which no reset can disturb (a reset needs about an hour without a connection).
The comparison itself runs inside DynamoDB as the condition of `updateDeviceStatus` and
`markNotified`, so it is atomic; this module only computes the values the condition compares.
"""

from dataclasses import dataclass

from common import validation

STATUSES = ("connected", "disconnected")
ORDER_WINDOW_MS = 10 * 60 * 1000
MAX_REASON_CHARS = 64


@dataclass(frozen=True)
class Presence:
    device_id: str
    status: str
    timestamp: int
    version_number: int
    session_id: str
    disconnect_reason: str

    @property
    def sequence(self):
        return 2 * self.version_number + (1 if self.status == "disconnected" else 0)

    def mutation_input(self):
        """Variables for `updateDeviceStatus` and `markNotified` (input type `PresenceInput`)."""
        return {
            "device_id": self.device_id,
            "status": self.status,
            "timestamp": self.timestamp,
            "sequence": self.sequence,
            "window_start": self.timestamp - ORDER_WINDOW_MS,
            "window_end": self.timestamp + ORDER_WINDOW_MS,
            "session_id": self.session_id,
            "disconnect_reason": self.disconnect_reason,
        }


def optional_text(event, name):
    value = event.get(name)
    if isinstance(value, str) and value and len(value) <= MAX_REASON_CHARS and value.isprintable():
        return value
    return None


def parse_presence(event, now_ms):
    """The presence rule's output (`SELECT *, clientId() AS device_id`) as a Presence, or BadEvent."""
    validation.require_object(event)
    event_type = event.get("eventType")
    if event_type not in STATUSES:
        raise validation.BadEvent("eventType is not connected or disconnected", field="eventType", value=event_type)
    # The document's clientId is what AWS IoT published; the rule's device_id is only a fallback.
    client_id = event.get("clientId") if event.get("clientId") is not None else event.get("device_id")
    if client_id is None:
        raise validation.BadEvent("clientId is missing", field="clientId")
    device_id = validation.thing_name(client_id, "clientId")
    timestamp = validation.epoch_ms(validation.field(event, "timestamp"), "timestamp", now_ms)
    version_number = validation.integer(validation.field(event, "versionNumber"), "versionNumber")
    if version_number < 0:
        raise validation.BadEvent("versionNumber is negative", field="versionNumber", value=version_number)
    return Presence(
        device_id=device_id,
        status=event_type,
        timestamp=timestamp,
        version_number=version_number,
        session_id=optional_text(event, "sessionIdentifier"),
        disconnect_reason=optional_text(event, "disconnectReason") if event_type == "disconnected" else None,
    )
