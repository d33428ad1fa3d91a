"""Structured JSON logging: one line per decision, written to stdout (CloudWatch Logs keeps it as is)."""

import json
import math
import sys
import time

MAX_VALUE_CHARS = 120


def describe(value):
    """A short, log-safe rendering of an untrusted value (type and repr, truncated)."""
    text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "..."
    return f"{type(value).__name__}:{text}"


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


class JsonLogger:
    """Minimal Powertools-style logger: fixed keys, then the decision's own fields."""

    def __init__(self, service, stream=None):
        self.service = service
        self.stream = stream
        self.request_id = None
        self.function_name = None

    def bind(self, context):
        """Remember the invocation's identifiers so every line of it carries them."""
        self.request_id = getattr(context, "aws_request_id", None)
        self.function_name = getattr(context, "function_name", None)

    def line(self, level, message, fields):
        record = {
            "level": level,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "service": self.service,
            "function_name": self.function_name,
            "function_request_id": self.request_id,
            "message": message,
        }
        for key, value in _json_safe(fields).items():
            # A decision's own field never hides a fixed key: `timestamp` becomes `event_timestamp`.
            record[f"event_{key}" if key in record else key] = value
        return json.dumps(record, default=str, allow_nan=False, sort_keys=False)

    def emit(self, level, message, fields):
        stream = self.stream or sys.stdout
        stream.write(self.line(level, message, fields) + "\n")
        stream.flush()

    def info(self, message, **fields):
        self.emit("INFO", message, fields)

    def warning(self, message, **fields):
        self.emit("WARNING", message, fields)

    def error(self, message, **fields):
        self.emit("ERROR", message, fields)
