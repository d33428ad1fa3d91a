#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_endpoint_info
version_added: 0.1.0
short_description: Discover the AWS IoT data endpoint, the account id and the region
description:
  - Returns the account's AWS IoT Core data endpoint (ATS by default), the AWS account id of the
    caller and the region, which the device policy and the device firmware need.
  - Reads only; never changes anything.
options:
  endpoint_type:
    description:
      - The kind of endpoint to describe.
      - C(iot:Data-ATS) is the endpoint devices connect to with Amazon Trust Services certificates.
    type: str
    default: iot:Data-ATS
    choices: [iot:Data-ATS, iot:Data, iot:CredentialProvider, iot:Jobs]
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
    details: The module changes nothing.
  action_group:
    description: Use C(group/iotfleet.aws.aws) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - iotfleet.aws.aws
"""

EXAMPLES = r"""
- name: Discover where devices connect and which account they belong to
  iotfleet.aws.iot_endpoint_info:
  register: iot_endpoint

- name: Show the MQTT endpoint
  ansible.builtin.debug:
    msg: "mqtts://{{ iot_endpoint.endpoint_address }}:8883 in {{ iot_endpoint.account_id }}/{{ iot_endpoint.region }}"
"""

RETURN = r"""
endpoint_address:
  description: The host name devices connect to.
  returned: always
  type: str
  sample: a1b2c3d4e5f6g7-ats.iot.eu-north-1.amazonaws.com
endpoint_type:
  description: The endpoint type that was described.
  returned: always
  type: str
  sample: iot:Data-ATS
account_id:
  description: The AWS account id of the caller.
  returned: always
  type: str
  sample: "123456789012"
region:
  description: The region the endpoint belongs to.
  returned: always
  type: str
  sample: eu-north-1
partition:
  description: The AWS partition of the caller (C(aws), C(aws-cn), C(aws-us-gov)).
  returned: always
  type: str
  sample: aws
"""

from ansible_collections.amazon.aws.plugins.module_utils.iam import get_aws_account_info

from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_endpoint


def main():
    argument_spec = dict(
        endpoint_type=dict(
            type="str",
            default="iot:Data-ATS",
            choices=["iot:Data-ATS", "iot:Data", "iot:CredentialProvider", "iot:Jobs"],
        ),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    client = module.iot_client()
    endpoint_type = module.params["endpoint_type"]
    try:
        address = describe_endpoint(client, endpoint_type)
    except AnsibleIoTError as e:
        module.fail_json_aws_error(e)
    account_id, partition = get_aws_account_info(module)
    module.exit_json(
        changed=False,
        endpoint_address=address,
        endpoint_type=endpoint_type,
        account_id=account_id,
        partition=partition,
        region=module.region,
    )


if __name__ == "__main__":
    main()
