# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Helpers shared by the iotfleet.aws IoT Core modules.

One error handler for the IoT service (amazon.aws's AWSErrorHandler pattern): "not found" becomes
None (or False for deletions), anything else raises AnsibleIoTError, which main() turns into
module.fail_json_aws_error(e).
"""

import re

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.common import set_collection_info
from ansible_collections.amazon.aws.plugins.module_utils.errors import AWSErrorHandler
from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

COLLECTION_NAME = "iotfleet.aws"
COLLECTION_VERSION = "0.1.0"

# AWS's own rule for thing names (CreateThing): 1-128 of letters, digits, ':', '_' and '-'.
THING_NAME_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
# The fleet's convention (DESIGN §2): a board's base MAC, 12 upper-case hex digits.
FLEET_THING_NAME_RE = re.compile(r"^[0-9A-F]{12}$")
# Thing groups and policies share the same character set as things.
GROUP_NAME_RE = THING_NAME_RE
POLICY_NAME_RE = re.compile(r"^[\w+=,.@-]{1,128}$")
# Topic rule names: letters, digits and underscores only.
RULE_NAME_RE = re.compile(r"^[a-zA-Z0-9_]{1,128}$")
CERTIFICATE_ID_RE = re.compile(r"^[0-9a-fA-F]{64}$")

# AWS keeps at most this many versions of an IoT policy.
MAX_POLICY_VERSIONS = 5


class AnsibleIoTError(AnsibleAWSError):
    pass


class IoTErrorHandler(AWSErrorHandler):
    _CUSTOM_EXCEPTION = AnsibleIoTError

    @classmethod
    def _is_missing(cls):
        return is_boto3_error_code("ResourceNotFoundException")


class IoTModule(AnsibleAWSModule):
    """AnsibleAWSModule that names iotfleet.aws in the AWS user agent."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        set_collection_info(collection_name=COLLECTION_NAME, collection_version=COLLECTION_VERSION)

    def iot_client(self, service="iot"):
        """A client whose calls retry throttling with jittered backoff when given aws_retry=True."""
        return self.client(service, retry_decorator=iot_retry_decorator())


def validate_name(module, option, value, pattern, what):
    """Fail before any AWS call when a name does not match AWS's pattern."""
    if value is not None and not pattern.match(value):
        module.fail_json(
            msg=(
                f"{option}: {value!r} is not a valid {what}; it must match {pattern.pattern}. "
                f"Use only the characters that pattern allows and at most 128 of them."
            )
        )


@IoTErrorHandler.common_error_handler("describe the IoT endpoint")
def describe_endpoint(client, endpoint_type):
    return client.describe_endpoint(endpointType=endpoint_type, aws_retry=True)["endpointAddress"]


# IoT policies (iot_policy).


@IoTErrorHandler.list_error_handler("get the IoT policy")
def get_iot_policy(client, name):
    return client.get_policy(policyName=name, aws_retry=True)


@IoTErrorHandler.list_error_handler("list the versions of the IoT policy", [])
def list_iot_policy_versions(client, name):
    # Not paginated: a policy has at most MAX_POLICY_VERSIONS versions.
    return client.list_policy_versions(policyName=name, aws_retry=True)["policyVersions"]


@IoTErrorHandler.list_error_handler("list the targets of the IoT policy", [])
@AWSRetry.jittered_backoff()
def list_iot_policy_targets(client, name):
    paginator = client.get_paginator("list_targets_for_policy")
    return paginator.paginate(policyName=name).build_full_result().get("targets", [])


@IoTErrorHandler.common_error_handler("create the IoT policy")
def create_iot_policy(client, name, document):
    return client.create_policy(policyName=name, policyDocument=document, aws_retry=True)


@IoTErrorHandler.common_error_handler("create a version of the IoT policy")
def create_iot_policy_version(client, name, document):
    return client.create_policy_version(policyName=name, policyDocument=document, setAsDefault=True, aws_retry=True)


@IoTErrorHandler.deletion_error_handler("delete a version of the IoT policy")
def delete_iot_policy_version(client, name, version_id):
    client.delete_policy_version(policyName=name, policyVersionId=version_id, aws_retry=True)
    return True


@IoTErrorHandler.deletion_error_handler("detach the IoT policy")
def detach_iot_policy(client, name, target):
    client.detach_policy(policyName=name, target=target, aws_retry=True)
    return True


@AWSRetry.jittered_backoff(retries=10, delay=5, max_delay=60, catch_extra_error_codes=["DeleteConflictException"])
def _delete_iot_policy_retrying_conflicts(client, name):
    client.delete_policy(policyName=name)


@IoTErrorHandler.deletion_error_handler("delete the IoT policy")
def delete_iot_policy(client, name, just_detached=False):
    """Delete a policy whose non-default versions and targets are gone.

    AWS may refuse (DeleteConflictException) for up to five minutes after a policy is detached
    (DeletePolicy API reference), so after a detach the conflict is retried; otherwise it fails fast.
    """
    if just_detached:
        _delete_iot_policy_retrying_conflicts(client, name)
    else:
        client.delete_policy(policyName=name, aws_retry=True)
    return True


# IoT topic rules (iot_topic_rule).


@IoTErrorHandler.common_error_handler("list the IoT topic rules")
@AWSRetry.jittered_backoff()
def list_topic_rule_names(client):
    paginator = client.get_paginator("list_topic_rules")
    return [rule["ruleName"] for rule in paginator.paginate().build_full_result().get("rules", [])]


@IoTErrorHandler.list_error_handler("get the IoT topic rule")
def get_topic_rule(client, name):
    """The GetTopicRule response, or None when the rule does not exist.

    AWS answers GetTopicRule for a missing rule with UnauthorizedException ("Access to topic rule
    ... was denied"), not ResourceNotFoundException, so existence is decided by ListTopicRules.
    """
    if name not in list_topic_rule_names(client):
        return None
    return client.get_topic_rule(ruleName=name, aws_retry=True)


@IoTErrorHandler.common_error_handler("create the IoT topic rule")
def create_topic_rule(client, name, payload):
    client.create_topic_rule(ruleName=name, topicRulePayload=payload, aws_retry=True)


@IoTErrorHandler.common_error_handler("replace the IoT topic rule")
def replace_topic_rule(client, name, payload):
    client.replace_topic_rule(ruleName=name, topicRulePayload=payload, aws_retry=True)


@IoTErrorHandler.common_error_handler("enable or disable the IoT topic rule")
def set_topic_rule_enabled(client, name, enabled):
    if enabled:
        client.enable_topic_rule(ruleName=name, aws_retry=True)
    else:
        client.disable_topic_rule(ruleName=name, aws_retry=True)


@IoTErrorHandler.deletion_error_handler("delete the IoT topic rule")
def delete_topic_rule(client, name):
    client.delete_topic_rule(ruleName=name, aws_retry=True)
    return True


# Things, thing groups and certificates (iot_thing, iot_thing_group, iot_certificate).


@IoTErrorHandler.list_error_handler("describe the thing")
def describe_thing(client, name):
    return client.describe_thing(thingName=name, aws_retry=True)


@IoTErrorHandler.list_error_handler("describe the thing type")
def describe_thing_type(client, name):
    return client.describe_thing_type(thingTypeName=name, aws_retry=True)


@IoTErrorHandler.common_error_handler("create the thing")
def create_thing(client, name, thing_type=None, attributes=None):
    params = dict(thingName=name, attributePayload=dict(attributes=attributes or {}))
    if thing_type:
        params["thingTypeName"] = thing_type
    return client.create_thing(aws_retry=True, **params)


@IoTErrorHandler.common_error_handler("update the thing")
def update_thing(client, name, **params):
    client.update_thing(thingName=name, aws_retry=True, **params)


@IoTErrorHandler.deletion_error_handler("delete the thing")
def delete_thing(client, name):
    client.delete_thing(thingName=name, aws_retry=True)
    return True


@IoTErrorHandler.list_error_handler("list the principals of the thing")
@AWSRetry.jittered_backoff()
def list_thing_principals(client, name):
    """Principal ARNs attached to the thing, or None when the thing does not exist."""
    paginator = client.get_paginator("list_thing_principals")
    return paginator.paginate(thingName=name).build_full_result().get("principals", [])


@IoTErrorHandler.common_error_handler("attach the certificate to the thing")
def attach_thing_principal(client, name, principal):
    client.attach_thing_principal(thingName=name, principal=principal, aws_retry=True)


@IoTErrorHandler.deletion_error_handler("detach the principal from the thing")
def detach_thing_principal(client, name, principal):
    client.detach_thing_principal(thingName=name, principal=principal, aws_retry=True)
    return True


@IoTErrorHandler.list_error_handler("list the thing groups of the thing")
@AWSRetry.jittered_backoff()
def list_thing_group_names_for_thing(client, name):
    paginator = client.get_paginator("list_thing_groups_for_thing")
    groups = paginator.paginate(thingName=name).build_full_result().get("thingGroups", [])
    return [group["groupName"] for group in groups]


@IoTErrorHandler.common_error_handler("update the thing groups of the thing")
def update_thing_groups_for_thing(client, name, to_add, to_remove):
    client.update_thing_groups_for_thing(
        thingName=name, thingGroupsToAdd=to_add, thingGroupsToRemove=to_remove, aws_retry=True
    )


@IoTErrorHandler.list_error_handler("describe the thing group")
def describe_thing_group(client, name):
    return client.describe_thing_group(thingGroupName=name, aws_retry=True)


@IoTErrorHandler.list_error_handler("list the child groups of the thing group", [])
@AWSRetry.jittered_backoff()
def list_child_thing_group_names(client, name):
    paginator = client.get_paginator("list_thing_groups")
    groups = paginator.paginate(parentGroup=name, recursive=False).build_full_result().get("thingGroups", [])
    return [group["groupName"] for group in groups]


@IoTErrorHandler.common_error_handler("create the thing group")
def create_thing_group(client, name, properties, parent=None):
    params = dict(thingGroupName=name, thingGroupProperties=properties)
    if parent:
        params["parentGroupName"] = parent
    return client.create_thing_group(aws_retry=True, **params)


@IoTErrorHandler.common_error_handler("update the thing group")
def update_thing_group(client, name, properties, expected_version):
    """Returns the group's new version; fails if someone else changed the group meanwhile."""
    return client.update_thing_group(
        thingGroupName=name, thingGroupProperties=properties, expectedVersion=expected_version, aws_retry=True
    )["version"]


@IoTErrorHandler.deletion_error_handler("delete the thing group")
def delete_thing_group(client, name):
    client.delete_thing_group(thingGroupName=name, aws_retry=True)
    return True


@IoTErrorHandler.list_error_handler("describe the certificate")
def describe_certificate(client, certificate_id):
    return client.describe_certificate(certificateId=certificate_id, aws_retry=True)["certificateDescription"]


@IoTErrorHandler.common_error_handler("list the certificates")
@AWSRetry.jittered_backoff()
def list_certificate_ids(client):
    paginator = client.get_paginator("list_certificates")
    return [cert["certificateId"] for cert in paginator.paginate().build_full_result().get("certificates", [])]


@IoTErrorHandler.common_error_handler("create a certificate from the CSR")
def create_certificate_from_csr(client, csr, active):
    return client.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=active, aws_retry=True)


@IoTErrorHandler.common_error_handler("register the certificate")
def register_certificate(client, certificate_pem, status, ca_certificate_pem=None):
    if ca_certificate_pem:
        return client.register_certificate(
            certificatePem=certificate_pem, caCertificatePem=ca_certificate_pem, status=status, aws_retry=True
        )
    return client.register_certificate_without_ca(certificatePem=certificate_pem, status=status, aws_retry=True)


@IoTErrorHandler.common_error_handler("update the status of the certificate")
def update_certificate_status(client, certificate_id, status):
    client.update_certificate(certificateId=certificate_id, newStatus=status, aws_retry=True)


@IoTErrorHandler.deletion_error_handler("delete the certificate")
def delete_certificate(client, certificate_id):
    # forceDelete stays off: the caller detaches the policies itself, so a policy attached meanwhile
    # makes AWS refuse instead of silently dropping a grant someone just made.
    client.delete_certificate(certificateId=certificate_id, forceDelete=False, aws_retry=True)
    return True


@IoTErrorHandler.list_error_handler("list the things of the certificate", [])
@AWSRetry.jittered_backoff()
def list_principal_things(client, principal):
    paginator = client.get_paginator("list_principal_things")
    return paginator.paginate(principal=principal).build_full_result().get("things", [])


@IoTErrorHandler.list_error_handler("list the policies attached to the certificate", [])
@AWSRetry.jittered_backoff()
def list_attached_policy_names(client, target):
    paginator = client.get_paginator("list_attached_policies")
    policies = paginator.paginate(target=target, recursive=False).build_full_result().get("policies", [])
    return [policy["policyName"] for policy in policies]


@IoTErrorHandler.common_error_handler("attach the IoT policy")
def attach_iot_policy(client, name, target):
    client.attach_policy(policyName=name, target=target, aws_retry=True)


# Attribute rules of things and thing groups (AttributeName / AttributeValue in the IoT API model).
ATTRIBUTE_NAME_RE = re.compile(r"^[a-zA-Z0-9_.,@/:#-]{1,128}$")
ATTRIBUTE_VALUE_RE = re.compile(r"^[a-zA-Z0-9_.,@/:#=\[\]-]{1,800}$")


def validate_attributes(module, option, attributes):
    """The attributes as AWS stores them (str -> str), or fail naming the bad key before any AWS call.

    Numbers are accepted and turned into strings (YAML reads `floor: 3` as an int); anything else
    that is not a string fails, as do empty values, which AWS treats as "remove this attribute".
    """
    if attributes is None:
        return None
    result = {}
    for key, value in attributes.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            module.fail_json(msg=f"{option}.{key}: {value!r} is not a string; quote the value in YAML.")
        value = str(value)
        if not ATTRIBUTE_NAME_RE.match(key):
            module.fail_json(
                msg=f"{option}: {key!r} is not a valid attribute name; it must match {ATTRIBUTE_NAME_RE.pattern}."
            )
        if not ATTRIBUTE_VALUE_RE.match(value):
            module.fail_json(
                msg=(
                    f"{option}.{key}: {value!r} is not a valid attribute value; it must match "
                    f"{ATTRIBUTE_VALUE_RE.pattern} (no spaces, not empty). To remove an attribute, leave it "
                    f"out and set purge_attributes=true."
                )
            )
        result[key] = value
    return result


# Fleet-wide listings and batch calls (iot_fleet_registration).

# The largest page the IoT list APIs accept: one call per this many items.
LIST_PAGE_SIZE = 250
# AWSRetry's own list does not include "ThrottlingException", which is the code AWS IoT throttles with.
IOT_THROTTLING_CODES = ["ThrottlingException"]


def iot_retry_decorator():
    """Jittered backoff that also retries IoT's ThrottlingException (AWSRetry's default list misses it)."""
    return AWSRetry.jittered_backoff(retries=10, delay=1, max_delay=30, catch_extra_error_codes=IOT_THROTTLING_CODES)


def _all_pages(client, operation, result_key, **params):
    paginator = client.get_paginator(operation)
    pages = paginator.paginate(PaginationConfig=dict(PageSize=LIST_PAGE_SIZE), **params)
    return pages.build_full_result().get(result_key, [])


@IoTErrorHandler.common_error_handler("list the things")
@AWSRetry.jittered_backoff(catch_extra_error_codes=IOT_THROTTLING_CODES)
def list_things_with_attributes(client):
    """Every thing of the account and region: thingName, thingArn, attributes, version (ListThings)."""
    return _all_pages(client, "list_things", "things")


@IoTErrorHandler.list_error_handler("list the things in the thing group")
@AWSRetry.jittered_backoff(catch_extra_error_codes=IOT_THROTTLING_CODES)
def list_thing_group_member_names(client, group):
    """Names of the things directly in the group, or None when the group does not exist."""
    return _all_pages(client, "list_things_in_thing_group", "things", thingGroupName=group, recursive=False)


@IoTErrorHandler.common_error_handler("list the certificates")
@AWSRetry.jittered_backoff(catch_extra_error_codes=IOT_THROTTLING_CODES)
def list_certificate_summaries(client):
    """Every certificate: certificateId, certificateArn, status, creationDate (ListCertificates)."""
    return _all_pages(client, "list_certificates", "certificates")


@IoTErrorHandler.list_error_handler("list the targets of the IoT policy")
@AWSRetry.jittered_backoff(catch_extra_error_codes=IOT_THROTTLING_CODES)
def list_policy_target_arns(client, name):
    """ARNs of the principals the policy is attached to, or None when the policy does not exist."""
    return _all_pages(client, "list_targets_for_policy", "targets", policyName=name)


@IoTErrorHandler.common_error_handler("add the thing to the thing group")
def add_thing_to_thing_group(client, group, thing):
    client.add_thing_to_thing_group(thingGroupName=group, thingName=thing, aws_retry=True)


# The MQTT data plane (iot-data) and revocation (iot_device_revocation).


@IoTErrorHandler.deletion_error_handler("drop the MQTT connection")
def delete_connection(data_client, client_id):
    """Disconnect the client and discard its persistent session; False when it has no connection.

    cleanSession drops its subscriptions and queued messages; preventWillMessage keeps the last
    will, which the device wrote, from being published on its behalf.
    """
    data_client.delete_connection(clientId=client_id, cleanSession=True, preventWillMessage=True, aws_retry=True)
    return True
