# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Helpers shared by the iotfleet.aws IoT Core modules.

One error handler for the IoT service (amazon.aws's AWSErrorHandler pattern): "not found" becomes
None (or False for deletions), anything else raises AnsibleIoTError, which main() turns into
module.fail_json_aws_error(e).
"""

import re

try:
    import botocore  # noqa: F401  (imported for the error handler)
except ImportError:
    pass  # AnsibleAWSModule reports the missing library.

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
        return self.client(service, retry_decorator=AWSRetry.jittered_backoff(retries=10, delay=1, max_delay=30))


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
