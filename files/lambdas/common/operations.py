"""The GraphQL documents the functions send. Constants only: values go in variables.

Subscribers to `onCreateTelemetry` / `onUpdateDevice` receive exactly the fields a mutation
selects, so the mutations select every field of their type.
"""

GET_DEVICE = """query GetDevice($device_id: ID!) {
  getDevice(device_id: $device_id) { device_id owner status last_seen }
}"""

CREATE_TELEMETRY = """mutation CreateTelemetry($input: CreateTelemetryInput!) {
  createTelemetry(input: $input) { device_id timestamp temperature humidity owner expires_at }
}"""

UPDATE_DEVICE_STATUS = """mutation UpdateDeviceStatus($input: PresenceInput!) {
  updateDeviceStatus(input: $input) {
    device_id owner location status last_seen certificate_id session_id disconnect_reason revoked_at registered_at
    notified_status
  }
}"""

MARK_NOTIFIED = """mutation MarkNotified($input: PresenceInput!) {
  markNotified(input: $input) { device_id status previous_status }
}"""


def get_device(graphql, device_id):
    """The device record, or None when the device is not registered."""
    return graphql.execute(GET_DEVICE, {"device_id": device_id}, "GetDevice").get("getDevice")


def refusal_reason(graphql, device_id):
    """Why a conditional presence write was refused; read after the fact, for the log line only."""
    device = get_device(graphql, device_id)
    if device is None:
        return "unknown device"
    if device.get("status") == "revoked":
        return "device revoked"
    return "stale or duplicate event"
