"""CoreTelemetry: store one reading from the telemetry rule, through AppSync.

Input (rule `SELECT *, clientId() AS device_id, timestamp() AS timestamp FROM '+/telemetry'`):
    {"temperature": 21.5, "humidity": 40.0, "device_id": "4827E2E59190", "timestamp": 1732665600000}

Outcomes, one JSON log line each:
  - rejected: malformed reading (returned, never raised: a retry cannot fix it);
  - dropped: unknown or revoked device, nothing stored;
  - stored: `createTelemetry` with `owner` from the device and `expires_at` for the TTL.
An AppSync or SSM failure raises, so Lambda's asynchronous retries and failure destination see it.
"""

import os
import time
from dataclasses import dataclass

import boto3
from common import validation
from common.graphql import INFRA_ERRORS
from common.graphql import GraphQLClient
from common.logs import JsonLogger
from common.logs import describe
from common.operations import CREATE_TELEMETRY
from common.operations import get_device
from common.settings import SettingsCache
from common.settings import SettingsError

RETENTION_ENV = "IOTFLEET_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30
TEMPERATURE_RANGE = (-40, 125)
HUMIDITY_RANGE = (0, 100)


def retention_days(environ):
    value = environ.get(RETENTION_ENV, str(DEFAULT_RETENTION_DAYS))
    if not value.isdigit() or int(value) < 1:
        raise SettingsError(f"{RETENTION_ENV} must be a whole number of days >= 1, got {value!r}")
    return int(value)


LOGGER = JsonLogger("CoreTelemetry")
SESSION = boto3.Session()
SETTINGS = SettingsCache.from_environment(SESSION.client("ssm"))
GRAPHQL = GraphQLClient.from_environment(SETTINGS, SESSION)
RETENTION_DAYS = retention_days(os.environ)


@dataclass(frozen=True)
class Reading:
    device_id: str
    timestamp: int
    temperature: float
    humidity: float


def parse_reading(event, now_ms):
    validation.require_object(event)
    device_id = validation.thing_name(validation.field(event, "device_id"))
    return Reading(
        device_id=device_id,
        timestamp=validation.epoch_ms(validation.field(event, "timestamp"), "timestamp", now_ms),
        temperature=validation.number_in_range(
            validation.field(event, "temperature"), "temperature", *TEMPERATURE_RANGE
        ),
        humidity=validation.number_in_range(validation.field(event, "humidity"), "humidity", *HUMIDITY_RANGE),
    )


def telemetry_input(reading, owner, days):
    """Variables for `createTelemetry`; `expires_at` is epoch seconds, as DynamoDB TTL wants."""
    return {
        "device_id": reading.device_id,
        "timestamp": reading.timestamp,
        "temperature": reading.temperature,
        "humidity": reading.humidity,
        "owner": owner,
        "expires_at": reading.timestamp // 1000 + days * 86400,
    }


def store_reading(event, graphql, logger, days, now_ms):
    try:
        reading = parse_reading(event, now_ms)
    except validation.BadEvent as exc:
        logger.warning("telemetry_rejected", reason=exc.reason, field=exc.field, value=describe(exc.value))
        return {"outcome": "rejected", "reason": exc.reason}
    device = get_device(graphql, reading.device_id)
    if device is None or device.get("status") == "revoked":
        reason = "unknown device" if device is None else "device revoked"
        logger.warning("telemetry_dropped", reason=reason, device_id=reading.device_id)
        return {"outcome": "dropped", "reason": reason}
    item = telemetry_input(reading, device.get("owner"), days)
    graphql.execute(CREATE_TELEMETRY, {"input": item}, "CreateTelemetry")
    logger.info("telemetry_stored", device_id=reading.device_id, timestamp=reading.timestamp)
    return {"outcome": "stored", "device_id": reading.device_id, "timestamp": reading.timestamp}


def handler(event, context):
    LOGGER.bind(context)
    try:
        return store_reading(event, GRAPHQL, LOGGER, RETENTION_DAYS, int(time.time() * 1000))
    except INFRA_ERRORS as exc:
        LOGGER.error("telemetry_failed", error=str(exc))
        raise
