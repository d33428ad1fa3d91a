"""The device's configuration: /config.json and the certificate paths, with validation.

Shared by the device (reads it at boot) and the controller (fsimage.py validates what it writes), so
a board never receives a configuration it would refuse.
"""

import json

CONFIG_PATH = "/config.json"
CERT_PATH = "/certs/device.crt"
KEY_PATH = "/certs/device.key"
ROOT_CA_PATH = "/certs/root-ca.pem"

# sendIntervalSeconds accepted from the shadow or the config: at least 1 s, at most an hour.
MIN_INTERVAL = 1
MAX_INTERVAL = 3600
SENSOR_TYPES = ("DHT11", "DHT22")
HEX_DIGITS = "0123456789ABCDEF"

DEFAULTS = {
    "port": 8883,
    "sensor_type": "DHT11",
    "sensor_pin": 7,  # the seed's board: DHT11 on pin 7 of a Heltec WiFi LoRa 32 V3
    "send_interval_seconds": 10,
    "keepalive_seconds": 60,
    "watchdog_timeout_ms": 60000,
    "backoff_base_seconds": 1,
    "backoff_cap_seconds": 300,
}
REQUIRED = ("thing_name", "endpoint", "wifi_ssid")
OPTIONAL = ("wifi_password",)


class ConfigError(ValueError):
    pass


def is_thing_name(name):
    """DESIGN section 2: the board's MAC, 12 upper-case hex digits, no separators."""
    return isinstance(name, str) and len(name) == 12 and all(c in HEX_DIGITS for c in name)


def valid_interval(value):
    """An interval from the shadow: an integer (not a bool) within bounds, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not MIN_INTERVAL <= value <= MAX_INTERVAL:  # also false for NaN, so NaN and infinities end here
        return None
    if value != int(value):  # 2.5 s is not an interval we support
        return None
    return int(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def validate(raw):
    """Return the full configuration (defaults applied) or raise ConfigError naming every problem."""
    if not isinstance(raw, dict):
        raise ConfigError("configuration must be a JSON object")
    problems = []
    for key in REQUIRED:
        if key not in raw:
            problems.append(f"{key} is required")
    known = set(REQUIRED) | set(OPTIONAL) | set(DEFAULTS)
    for key in sorted(raw):
        if key not in known:
            problems.append(f"unknown setting {key}")
    config = dict(DEFAULTS)
    config["wifi_password"] = ""
    config.update(raw)
    if "thing_name" in raw and not is_thing_name(raw["thing_name"]):
        problems.append("thing_name must be 12 upper-case hex digits (the board's MAC)")
    if "endpoint" in raw and (not isinstance(raw["endpoint"], str) or not raw["endpoint"]):
        problems.append("endpoint must be a host name")
    for key in ("wifi_ssid", "wifi_password"):
        if not isinstance(config.get(key, ""), str):
            problems.append(f"{key} must be a string")
    if not _is_int(config["port"]) or not 0 < config["port"] < 65536:
        problems.append("port must be an integer 1..65535")
    if config["sensor_type"] not in SENSOR_TYPES:
        problems.append("sensor_type must be one of " + ", ".join(SENSOR_TYPES))
    if not _is_int(config["sensor_pin"]) or config["sensor_pin"] < 0:
        problems.append("sensor_pin must be a GPIO number")
    if valid_interval(config["send_interval_seconds"]) is None or not _is_int(config["send_interval_seconds"]):
        problems.append(f"send_interval_seconds must be an integer {MIN_INTERVAL}..{MAX_INTERVAL}")
    for key in ("keepalive_seconds", "watchdog_timeout_ms", "backoff_base_seconds", "backoff_cap_seconds"):
        if not _is_int(config[key]) or config[key] <= 0:
            problems.append(f"{key} must be a positive integer")
    if not problems and config["backoff_cap_seconds"] < config["backoff_base_seconds"]:
        problems.append("backoff_cap_seconds must not be below backoff_base_seconds")
    if problems:
        raise ConfigError("invalid device configuration: " + "; ".join(problems))
    return config


def encode(raw):
    """The bytes of /config.json: validated, sorted keys, no whitespace, so builds are reproducible.

    Controller side only (MicroPython's json.dumps has no sort_keys).
    """
    validate(raw)
    return json.dumps(raw, sort_keys=True, separators=(",", ":")).encode("utf-8")


def load(platform):
    """Read and validate /config.json through the platform's filesystem."""
    try:
        raw = json.loads(platform.read_file(CONFIG_PATH))
    except ValueError as err:
        raise ConfigError(f"{CONFIG_PATH} is not valid JSON: {err}") from None
    return validate(raw)
