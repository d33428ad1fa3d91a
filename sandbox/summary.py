"""A short human summary of what exists in the sandbox, read through the ordinary AWS APIs."""

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
    return 0
