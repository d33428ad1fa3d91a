"""Checks for untrusted event fields. Each raises BadEvent with a reason fit for one log line."""

import math
import re

THING_NAME = re.compile(r"[0-9A-F]{12}")
# Epoch milliseconds we accept: from 2020-01-01 to one day ahead of the function's clock.
EARLIEST_EPOCH_MS = 1_577_836_800_000
MAX_FUTURE_MS = 24 * 3600 * 1000


class BadEvent(ValueError):
    """The event is malformed: log it once and drop it, never retry it."""

    def __init__(self, reason, field=None, value=None):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.value = value


def require_object(event):
    if not isinstance(event, dict):
        raise BadEvent("event is not a JSON object", value=event)
    return event


def field(event, name):
    if name not in event or event[name] is None:
        raise BadEvent(f"{name} is missing", field=name)
    return event[name]


def thing_name(value, name="device_id"):
    if not isinstance(value, str) or not THING_NAME.fullmatch(value):
        raise BadEvent(f"{name} is not a thing name (12 upper-case hex digits)", field=name, value=value)
    return value


def integer(value, name):
    # bool is an int subclass in Python; JSON true/false is never a count or a time.
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadEvent(f"{name} is not an integer", field=name, value=value)
    return value


def epoch_ms(value, name, now_ms):
    integer(value, name)
    if not EARLIEST_EPOCH_MS <= value <= now_ms + MAX_FUTURE_MS:
        raise BadEvent(f"{name} is not a plausible epoch time in milliseconds", field=name, value=value)
    return value


def number_in_range(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadEvent(f"{name} is not a number", field=name, value=value)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadEvent(f"{name} is not a finite number", field=name, value=value)
    if not low <= value <= high:
        raise BadEvent(f"{name} is outside {low}..{high}", field=name, value=value)
    return float(value)
