"""A short human summary of what exists in the sandbox, read through the ordinary AWS APIs.

It ends with the devices and their latest readings as the dashboard reads them: the GraphQL queries
(listDevices, telemetryByDevice) against the API the AppSync simulator serves, with its read-only API
key, and their results. While virtual devices run (sandbox/devices.py) it waits up to 15 s for each
of them to have a reading, so `make demo` shows live data right after starting them.
"""

import boto3
import botocore.exceptions

from sandbox.settings import Settings


def _pages(client, operation: str, key: str) -> list:
    return [item for page in client.get_paginator(operation).paginate() for item in page.get(key, [])]


def _policy(iot, policy: dict) -> str:
    versions = iot.list_policy_versions(policyName=policy["policyName"])["policyVersions"]
    return f"{policy['policyName']} ({len(versions)} version{'s' if len(versions) != 1 else ''})"


def _rule(rule: dict) -> str:
    return f"{rule['ruleName']} ({'disabled' if rule.get('ruleDisabled') else 'enabled'})"


def _certificate(cert: dict) -> str:
    return f"{cert['certificateId'][:12]}... {cert['status']}"


def _sections(iot, dynamodb, lambda_) -> list:
    return [
        ("IoT things", lambda: [t["thingName"] for t in _pages(iot, "list_things", "things")]),
        ("IoT thing groups", lambda: [g["groupName"] for g in _pages(iot, "list_thing_groups", "thingGroups")]),
        ("IoT policies", lambda: [_policy(iot, p) for p in _pages(iot, "list_policies", "policies")]),
        ("IoT topic rules", lambda: [_rule(r) for r in _pages(iot, "list_topic_rules", "rules")]),
        ("IoT certificates", lambda: [_certificate(c) for c in _pages(iot, "list_certificates", "certificates")]),
        ("DynamoDB tables", lambda: _pages(dynamodb, "list_tables", "TableNames")),
        ("Lambda functions", lambda: [f["FunctionName"] for f in _pages(lambda_, "list_functions", "Functions")]),
    ]


def summary(settings: Settings) -> int:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=settings.region)
    iot, dynamodb, lambda_ = (
        session.client(name, endpoint_url=settings.endpoint) for name in ("iot", "dynamodb", "lambda")
    )
    print(f"sandbox {settings.endpoint}, region {settings.region}")
    for title, read in _sections(iot, dynamodb, lambda_):
        try:
            items = read()
        except botocore.exceptions.EndpointConnectionError:
            print(f"sandbox not reachable at {settings.endpoint}")
            return 3
        except botocore.exceptions.ClientError as exc:
            print(f"{title}: cannot list ({exc})")
            continue
        print(f"{title} ({len(items)})" + "".join(f"\n  {item}" for item in items))
    return print_readings(settings)


# -- the devices' latest readings, through the GraphQL API (what `make demo` ends with) ------------

LIST_DEVICES = """query ListDevices {
  listDevices(limit: 100) { items { device_id owner location status last_seen } }
}"""
LATEST_READING = """query LatestReading($device_id: ID!) {
  telemetryByDevice(device_id: $device_id, limit: 1) { items { timestamp temperature humidity } }
}"""
READINGS_WAIT = 15.0  # seconds to wait for the running virtual devices' first readings


class GraphQLError(Exception):
    pass


def _graphql(url: str, api_key: str, query: str, variables: dict | None = None) -> dict:
    import json
    import urllib.request

    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "x-api-key": api_key}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result = json.loads(answer.read())
    if result.get("errors"):
        raise GraphQLError(json.dumps(result["errors"]))
    return result["data"]


def served_api(settings: Settings) -> dict | None:
    """{apiId, url, api_key} of the API the sandbox's GraphQL simulator serves (the newest), else None."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{settings.endpoint}/iotfleet-sandbox/appsync/apis", timeout=5) as answer:
            current = json.loads(answer.read()).get("current") or {}
    except (OSError, ValueError):
        return None
    if not current.get("apiId"):
        return None
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=settings.region)
    appsync = session.client("appsync", endpoint_url=settings.endpoint)
    keys = appsync.list_api_keys(apiId=current["apiId"])["apiKeys"]
    if not keys:
        return None
    return {
        "apiId": current["apiId"],
        "url": settings.appsync_endpoint + "/graphql",
        "api_key": max(keys, key=lambda k: k.get("expires", 0))["id"],
    }


def _running_things(settings: Settings) -> list:
    from sandbox import devices

    if devices.running_pid(settings) is None:
        return []
    return sorted(dev["thing"] for dev in devices.read_snapshot(settings).get("devices", {}).values())


def latest_readings(settings: Settings, wait: float = READINGS_WAIT) -> tuple[dict, list, dict]:
    """(api, devices, {device_id: latest reading or None}); waits up to `wait` s for the running devices' first."""
    import time

    api = served_api(settings)
    if api is None:
        return None, [], {}
    deadline = time.monotonic() + wait
    while True:
        listed = _graphql(api["url"], api["api_key"], LIST_DEVICES)["listDevices"]["items"]
        listed.sort(key=lambda device: device["device_id"])
        latest = {}
        for device in listed:
            answer = _graphql(api["url"], api["api_key"], LATEST_READING, {"device_id": device["device_id"]})
            items = answer["telemetryByDevice"]["items"]
            latest[device["device_id"]] = items[0] if items else None
        waiting = [thing for thing in _running_things(settings) if latest.get(thing) is None]
        if not waiting or time.monotonic() >= deadline:
            return api, listed, latest
        time.sleep(1.0)


def print_readings(settings: Settings, wait: float = READINGS_WAIT) -> int:
    """Print the GraphQL queries and their results: every device with its latest reading."""
    import json
    from datetime import UTC
    from datetime import datetime

    try:
        api, listed, latest = latest_readings(settings, wait)
    except (OSError, GraphQLError, botocore.exceptions.ClientError) as exc:
        print(f"GraphQL: cannot query ({exc})")
        return 1
    if api is None:
        print(f"GraphQL: no API served at {settings.appsync_endpoint}/graphql (is the stack deployed?)")
        return 0
    print(f"\nGraphQL {api['url']} (API {api['apiId']}, read-only API key):")
    print(LIST_DEVICES)
    rows = ",\n".join("    " + json.dumps(device) for device in listed)
    print('{"data": {"listDevices": {"items": [\n' + rows + "\n]}}}")
    print(LATEST_READING)
    for device_id, reading in latest.items():
        print(f"  variables {json.dumps({'device_id': device_id})} -> {json.dumps(reading)}")
    print("\nLatest readings")
    for device in listed:
        reading = latest[device["device_id"]]
        if reading is None:
            text = "no reading yet"
        else:
            when = datetime.fromtimestamp(reading["timestamp"] / 1000, UTC).strftime("%H:%M:%S UTC")
            text = f"{reading['temperature']:5.1f} °C {reading['humidity']:5.1f} %RH at {when}"
        print(f"  {device['device_id']}  {str(device.get('status') or '-'):12}  {text}")
    return 0
