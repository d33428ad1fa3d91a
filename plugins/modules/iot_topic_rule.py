#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_topic_rule
version_added: 0.1.0
short_description: Create, update, enable, disable and delete AWS IoT Core topic rules
description:
  - Creates an AWS IoT Core topic rule, keeps it as described, and deletes it.
  - The options describe the whole rule. When the SQL, the SQL version, the description, the
    actions or the error action differ from AWS, the rule is replaced (C(ReplaceTopicRule)) with
    all of them at once. When only O(enabled) differs, the rule is enabled or disabled.
  - Actions are compared key by key with what AWS returns. A key that AWS returns but that the
    action does not set (such as a default that AWS fills in) is ignored, so that AWS's defaults
    do not cause a change on every run. As a consequence, removing an optional key from an action
    is not seen as a change; set it to its default value instead.
  - Actions are checked against the AWS API's shape before anything is written.
options:
  name:
    description:
      - The name of the rule.
      - 1 to 128 letters, digits and underscores (AWS allows no other characters, not even C(-)).
    type: str
    required: true
  sql:
    description:
      - The rule's SQL statement, for example C(SELECT * FROM '+/telemetry').
      - Required when O(state=present). Leading and trailing white space is ignored.
    type: str
  aws_iot_sql_version:
    description:
      - The version of the SQL rules engine the rule uses.
    type: str
    default: "2016-03-23"
    choices: ["2015-10-08", "2016-03-23", "beta"]
  description:
    description:
      - The description of the rule.
    type: str
    default: ""
  actions:
    description:
      - The actions of the rule, in the shape of C(topicRulePayload.actions) of the boto3
        C(create_topic_rule) call, with AWS's camelCase keys.
      - "Each item names exactly one action type, for example
        C({lambda: {functionArn: arn:aws:lambda:eu-north-1:123456789012:function:CoreTelemetry}}) or
        C({republish: {topic: alerts, roleArn: ..., qos: 1}})."
      - Required when O(state=present); V([]) is a rule without actions.
    type: list
    elements: dict
  error_action:
    description:
      - The action AWS IoT runs when an action fails, in the same shape as one item of O(actions).
      - Omitted or empty means no error action; an existing one is removed.
    type: dict
  enabled:
    description:
      - Whether the rule is enabled.
    type: bool
    default: true
  state:
    description:
      - Whether the rule should exist.
    type: str
    default: present
    choices: [present, absent]
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: Telemetry rule with an error action
  iotfleet.aws.iot_topic_rule:
    name: "{{ iotfleet_prefix }}_telemetry"
    sql: "SELECT *, clientId() AS device_id, timestamp() AS timestamp FROM '+/telemetry'"
    description: Device telemetry to the CoreTelemetry Lambda
    actions:
      - lambda:
          functionArn: "{{ core_telemetry.configuration.function_arn }}"
    error_action:
      cloudwatchLogs:
        logGroupName: "/iot/{{ iotfleet_prefix }}/rule-errors"
        roleArn: "{{ iot_rule_errors_role.iam_role.arn }}"

- name: Presence events to two Lambdas
  iotfleet.aws.iot_topic_rule:
    name: "{{ iotfleet_prefix }}_presence"
    sql: "SELECT *, clientId() AS device_id FROM '$aws/events/presence/+/+'"
    actions:
      - lambda:
          functionArn: "{{ core_status_arn }}"
      - lambda:
          functionArn: "{{ discord_webhook_arn }}"

- name: Pause a rule without changing it
  iotfleet.aws.iot_topic_rule:
    name: "{{ iotfleet_prefix }}_presence"
    sql: "SELECT *, clientId() AS device_id FROM '$aws/events/presence/+/+'"
    actions:
      - lambda:
          functionArn: "{{ core_status_arn }}"
      - lambda:
          functionArn: "{{ discord_webhook_arn }}"
    enabled: false

- name: Delete a rule
  iotfleet.aws.iot_topic_rule:
    name: "{{ iotfleet_prefix }}_presence"
    state: absent
"""

RETURN = r"""
rule:
  description:
    - The rule as it is in AWS after the task.
    - Empty when the rule does not exist (after O(state=absent), or in check mode before it is created).
    - In check mode it shows AWS unchanged; the C(diff) shows what would change.
  returned: always
  type: dict
  contains:
    rule_name:
      description: The name of the rule.
      type: str
      returned: when the rule exists
      sample: iotfleet_telemetry
    rule_arn:
      description: The ARN of the rule.
      type: str
      returned: when the rule exists
      sample: arn:aws:iot:eu-north-1:123456789012:rule/iotfleet_telemetry
    sql:
      description: The rule's SQL statement.
      type: str
      returned: when the rule exists
      sample: "SELECT *, clientId() AS device_id FROM '+/telemetry'"
    aws_iot_sql_version:
      description: The SQL version of the rule.
      type: str
      returned: when the rule exists
      sample: "2016-03-23"
    description:
      description: The description of the rule (empty when it has none).
      type: str
      returned: when the rule exists
      sample: Device telemetry to the CoreTelemetry Lambda
    actions:
      description: The actions as AWS returns them, with AWS's camelCase keys (not converted to snake_case).
      type: list
      elements: dict
      returned: when the rule exists
      sample: [{"lambda": {"functionArn": "arn:aws:lambda:eu-north-1:123456789012:function:CoreTelemetry"}}]
    error_action:
      description: The error action as AWS returns it, with camelCase keys; empty when the rule has none.
      type: dict
      returned: when the rule exists
      sample:
        cloudwatchLogs:
          logGroupName: /iot/iotfleet/rule-errors
          roleArn: arn:aws:iam::123456789012:role/iot-rule-errors
    rule_disabled:
      description: Whether the rule is disabled.
      type: bool
      returned: when the rule exists
      sample: false
diff:
  description:
    - The rule before and after the task, with the keys C(sql), C(aws_iot_sql_version),
      C(description), C(actions), C(error_action) and C(enabled); empty when there is no rule.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: The rule before the task.
      type: dict
      returned: when diff mode is on
    after:
      description: The rule after the task.
      type: dict
      returned: when diff mode is on
"""

try:
    from botocore.validate import ParamValidator
except ImportError:
    pass  # IoTModule reports the missing library.

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

from ansible_collections.iotfleet.aws.plugins.module_utils.iot import RULE_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import create_topic_rule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_topic_rule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import get_topic_rule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import replace_topic_rule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import set_topic_rule_enabled
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_name

SQL_VERSIONS = ["2015-10-08", "2016-03-23", "beta"]


def validate_actions(module, client, actions, error_action):
    """Fail before any write when an action does not have the shape the AWS API accepts."""
    problems = []
    named = [(f"actions[{i}]", action) for i, action in enumerate(actions)]
    if error_action:
        named.append(("error_action", error_action))
    for where, action in named:
        if len(action) != 1:
            problems.append(f"{where} must name exactly one action type, it names {len(action)}: {sorted(action)}")
    payload_shape = client.meta.service_model.operation_model("CreateTopicRule").input_shape.members["topicRulePayload"]
    payload = dict(sql="SELECT 1", actions=actions)
    if error_action:
        payload["errorAction"] = error_action
    report = ParamValidator().validate(payload, payload_shape)
    if report.has_errors():
        problems.extend(line.replace("errorAction", "error_action") for line in report.generate_report().splitlines())
    if problems:
        module.fail_json(
            msg=(
                "actions/error_action: "
                + "; ".join(problems)
                + ". Write each action as in boto3 create_topic_rule topicRulePayload.actions, with camelCase keys, "
                "e.g. {lambda: {functionArn: ...}}."
            )
        )


def covers(current, desired):
    """True when current holds every value desired sets; keys only AWS sets are ignored."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(k in current and covers(current[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(covers(current[i], item) for i, item in enumerate(desired))
        )
    return current == desired


def rule_view(response):
    """The comparable view of a GetTopicRule response (the diff shows this)."""
    if response is None:
        return {}
    rule = response["rule"]
    return dict(
        sql=rule["sql"].strip(),
        aws_iot_sql_version=rule.get("awsIotSqlVersion"),
        description=rule.get("description") or "",
        actions=rule.get("actions") or [],
        error_action=rule.get("errorAction") or {},
        enabled=not rule.get("ruleDisabled", False),
    )


def payload_differs(current, desired):
    return (
        any(current[k] != desired[k] for k in ("sql", "aws_iot_sql_version", "description"))
        or not covers(current["actions"], desired["actions"])
        or bool(current["error_action"]) != bool(desired["error_action"])
        or not covers(current["error_action"], desired["error_action"])
    )


def topic_rule_payload(desired):
    payload = dict(
        sql=desired["sql"],
        awsIotSqlVersion=desired["aws_iot_sql_version"],
        description=desired["description"],
        actions=desired["actions"],
        ruleDisabled=not desired["enabled"],
    )
    if desired["error_action"]:
        payload["errorAction"] = desired["error_action"]
    return payload


def describe_rule(client, name):
    """The rule as the module returns it, or {} when it does not exist."""
    response = get_topic_rule(client, name)
    if response is None:
        return {}
    # Action payloads are opaque AWS structures: keep their camelCase keys.
    rule = camel_dict_to_snake_dict(response["rule"], ignore_list=["actions", "errorAction"])
    return dict(
        rule_name=rule["rule_name"],
        rule_arn=response["ruleArn"],
        sql=rule["sql"],
        aws_iot_sql_version=rule.get("aws_iot_sql_version"),
        description=rule.get("description") or "",
        actions=rule.get("actions") or [],
        error_action=rule.get("error_action") or {},
        rule_disabled=rule.get("rule_disabled", False),
    )


def ensure_present(module, client, name, desired):
    current = rule_view(get_topic_rule(client, name))
    if not current:
        if not module.check_mode:
            create_topic_rule(client, name, topic_rule_payload(desired))
        return True, current, desired
    if payload_differs(current, desired):
        if not module.check_mode:
            replace_topic_rule(client, name, topic_rule_payload(desired))
        return True, current, desired
    if current["enabled"] != desired["enabled"]:
        if not module.check_mode:
            set_topic_rule_enabled(client, name, desired["enabled"])
        return True, current, dict(current, enabled=desired["enabled"])
    return False, current, current


def ensure_absent(module, client, name):
    current = rule_view(get_topic_rule(client, name))
    if not current:
        return False, {}, {}
    if not module.check_mode:
        delete_topic_rule(client, name)
    return True, current, {}


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        sql=dict(type="str"),
        aws_iot_sql_version=dict(type="str", default="2016-03-23", choices=SQL_VERSIONS),
        description=dict(type="str", default=""),
        actions=dict(type="list", elements="dict"),
        error_action=dict(type="dict"),
        enabled=dict(type="bool", default=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    module = IoTModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ["sql", "actions"])],
        supports_check_mode=True,
    )
    name = module.params["name"]
    state = module.params["state"]
    validate_name(module, "name", name, RULE_NAME_RE, "IoT topic rule name")

    client = module.iot_client()
    if state == "present":
        for option in ("sql", "actions"):
            if module.params[option] is None:
                module.fail_json(msg=f"{option}: missing; it is required when state is present")
        sql = module.params["sql"].strip()
        if not sql:
            module.fail_json(msg="sql: must not be empty; pass the rule's SELECT statement")
        desired = dict(
            sql=sql,
            aws_iot_sql_version=module.params["aws_iot_sql_version"],
            description=module.params["description"],
            actions=module.params["actions"],
            error_action=module.params["error_action"] or {},
            enabled=module.params["enabled"],
        )
        validate_actions(module, client, desired["actions"], desired["error_action"])

    try:
        if state == "present":
            changed, before, after = ensure_present(module, client, name, desired)
        else:
            changed, before, after = ensure_absent(module, client, name)
        result = dict(changed=changed, rule=describe_rule(client, name))
    except AnsibleIoTError as e:
        module.fail_json_aws_error(e)

    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
