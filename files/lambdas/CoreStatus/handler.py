"""CoreStatus: keep `devices.status` and `last_seen` in step with AWS IoT presence events.

Input (rule `SELECT *, clientId() AS device_id FROM '$aws/events/presence/+/+'`): the lifecycle
event document, e.g.
    {"clientId": "4827E2E59190", "timestamp": 1573002230757, "eventType": "connected",
     "sessionIdentifier": "...", "principalIdentifier": "...", "ipAddress": "192.0.2.0",
     "versionNumber": 0, "device_id": "..."}

`updateDeviceStatus` applies the event only if DynamoDB agrees, atomically, that the device is
registered, not revoked, and that the event is newer than the one stored (common.presence).
A refusal is a normal outcome ("ignored"), logged once with its reason.
"""

import time

import boto3
from common import validation
from common.graphql import INFRA_ERRORS
from common.graphql import ConditionFailed
from common.graphql import GraphQLClient
from common.logs import JsonLogger
from common.logs import describe
from common.operations import UPDATE_DEVICE_STATUS
from common.operations import refusal_reason
from common.presence import parse_presence
from common.settings import SettingsCache

LOGGER = JsonLogger("CoreStatus")
SESSION = boto3.Session()
SETTINGS = SettingsCache.from_environment(SESSION.client("ssm"))
GRAPHQL = GraphQLClient.from_environment(SETTINGS, SESSION)


def apply_presence(event, graphql, logger, now_ms):
    try:
        presence = parse_presence(event, now_ms)
    except validation.BadEvent as exc:
        logger.warning("presence_rejected", reason=exc.reason, field=exc.field, value=describe(exc.value))
        return {"outcome": "rejected", "reason": exc.reason}
    fields = {
        "device_id": presence.device_id,
        "status": presence.status,
        "timestamp": presence.timestamp,
        "version_number": presence.version_number,
    }
    try:
        graphql.execute(UPDATE_DEVICE_STATUS, {"input": presence.mutation_input()}, "UpdateDeviceStatus")
    except ConditionFailed:
        reason = refusal_reason(graphql, presence.device_id)
        logger.info("presence_ignored", reason=reason, **fields)
        return {"outcome": "ignored", "reason": reason, **fields}
    logger.info("presence_applied", disconnect_reason=presence.disconnect_reason, **fields)
    return {"outcome": "applied", **fields}


def handler(event, context):
    LOGGER.bind(context)
    try:
        return apply_presence(event, GRAPHQL, LOGGER, int(time.time() * 1000))
    except INFRA_ERRORS as exc:
        LOGGER.error("presence_failed", error=str(exc))
        raise
