"""Settings from the SSM parameters that also serve as the Amplify secrets, cached per container.

The function's environment names the folder (`IOTFLEET_SETTINGS_PATH=/amplify/shared/<app-id>/`);
every parameter directly under it is a setting named after the last path segment
(`CUSTOM_LAMBDA_GRAPHQL_ENDPOINT`, `CUSTOM_LAMBDA_GRAPHQL_KEY`, `CUSTOM_DISCORD_ENDPOINT`).
"""

import os
import time

PATH_ENV = "IOTFLEET_SETTINGS_PATH"
TTL_ENV = "IOTFLEET_SETTINGS_TTL_SECONDS"
DEFAULT_TTL_SECONDS = 300

GRAPHQL_ENDPOINT = "CUSTOM_LAMBDA_GRAPHQL_ENDPOINT"
GRAPHQL_KEY = "CUSTOM_LAMBDA_GRAPHQL_KEY"
DISCORD_ENDPOINT = "CUSTOM_DISCORD_ENDPOINT"


class SettingsError(Exception):
    """The deployment is incomplete: a required setting or the settings path is missing."""


class SettingsCache:
    """`GetParametersByPath` (decrypted) once, then again only after `ttl_seconds`."""

    def __init__(self, ssm_client, path, ttl_seconds=DEFAULT_TTL_SECONDS, clock=time.monotonic):
        if not path or not path.startswith("/"):
            raise SettingsError(f"{PATH_ENV} must be an absolute SSM path, got {path!r}")
        self.ssm = ssm_client
        self.path = path if path.endswith("/") else path + "/"
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.values = None
        self.loaded_at = None

    @classmethod
    def from_environment(cls, ssm_client, environ=None):
        environ = os.environ if environ is None else environ
        ttl = environ.get(TTL_ENV, "")
        return cls(ssm_client, environ.get(PATH_ENV, ""), int(ttl) if ttl.isdigit() else DEFAULT_TTL_SECONDS)

    def load(self):
        values = {}
        paginator = self.ssm.get_paginator("get_parameters_by_path")
        for page in paginator.paginate(Path=self.path, Recursive=False, WithDecryption=True):
            for parameter in page["Parameters"]:
                values[parameter["Name"].rsplit("/", 1)[-1]] = parameter["Value"]
        return values

    def all(self):
        now = self.clock()
        if self.values is None or now - self.loaded_at >= self.ttl_seconds:
            self.values = self.load()
            self.loaded_at = now
        return self.values

    def get(self, name):
        """The setting's value, or None when no such parameter exists."""
        return self.all().get(name)

    def require(self, name):
        value = self.get(name)
        if not value:
            raise SettingsError(f"SSM parameter {self.path}{name} is missing or empty")
        return value
