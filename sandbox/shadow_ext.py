"""Server side of the shadow service: GET /iotfleet-sandbox/shadows?region=R answers the version of every
classic (unnamed) shadow in moto's IoT backend, {"versions": {"<thing>": <version>}}.

The rules bridge polls it once a second (one request, whatever the fleet size) and fetches only the
shadows whose version changed without its doing, so a desired state written through the API
(UpdateThingShadow) reaches the connected device as `update/delta` within about a second.
"""

import json
from urllib.parse import parse_qs

from moto.core import DEFAULT_ACCOUNT_ID
from moto.iot.models import iot_backends

SHADOWS_PATH = "/iotfleet-sandbox/shadows"


def versions(region: str, account_id: str = DEFAULT_ACCOUNT_ID) -> dict[str, int]:
    """{thing name: version} of the existing (not deleted) classic shadows."""
    backend = iot_backends[account_id][region]
    for _attempt in range(10):
        try:  # moto's dicts may change under us (IoT requests run in other threads)
            things = list(backend.things.values())
            return {
                thing.thing_name: shadow.version
                for thing in things
                if (shadow := thing.thing_shadows.get(None)) is not None and not shadow.deleted
            }
        except RuntimeError:
            continue
    return {}


def route(environ, start_response) -> list[bytes]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    region = (query.get("region") or [""])[0]
    if environ.get("REQUEST_METHOD") != "GET" or not region:
        status, body = "400 Bad Request", {"message": "GET with ?region=<region>"}
    else:
        status, body = "200 OK", {"versions": versions(region)}
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
