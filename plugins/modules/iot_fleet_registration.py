#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_fleet_registration
version_added: 0.1.0
short_description: Register a whole fleet of devices in AWS IoT Core in one call
description:
  - For every device in O(devices), makes sure that its thing exists with the given attributes, that
    it is in the fleet thing group O(thing_group), and that it has an ACTIVE certificate for the
    public key of its CSR, with the IoT policy O(policy_name) attached to the certificate and the
    certificate attached to the thing.
  - One call for the whole inventory, instead of one task per board (a task costs 0.2 to 0.45 s
    per host on the controller). Devices are registered in a thread pool of O(max_workers); every
    AWS API is paced by its own client-side token bucket at O(rate_limits), and throttling errors
    are retried with jittered backoff.
  - A certificate already attached to the thing is reused when it is ACTIVE and its public key
    (SubjectPublicKeyInfo) equals the CSR's; otherwise a new one is issued from the CSR
    (CreateCertificateFromCsr). The private key never reaches this module or AWS.
  - The thing's other ACTIVE certificates for another key than the CSR's (all others, with O(rotate))
    are retired once its certificate is in place - set INACTIVE, then O(policy_name) detached, then the
    thing detached. They are kept (not deleted) for the audit trail. A board still flashed with the old
    key cannot connect until it is flashed with its new credentials.
  - A REVOKED certificate is never reactivated, and no certificate is ever issued again for a key
    whose certificate was REVOKED. A key whose certificate is INACTIVE (for example deactivated by a
    revocation) gets a new certificate only when the thing is listed in O(rotate).
  - "Fast no-change path: the module first reads the account through paginated listings (ListThings,
    ListThingsInThingGroup, ListCertificates, ListTargetsForPolicy; 250 items a call). A device whose
    C(certificate_pem) from the previous run is passed back and is still ACTIVE with the policy costs
    no call of its own. Without it, a device with an existing thing costs ListThingPrincipals plus one
    DescribeCertificate per ACTIVE certificate attached to it."
  - "Partial failure: every device is attempted; the module then fails with a message naming each
    failed thing, and still returns all devices. If attaching a newly issued certificate to its thing
    fails, the certificate is deactivated and deleted, so no ACTIVE certificate is left attached to
    nothing; if attaching the policy fails, the next run adopts the certificate. A re-run converges."
  - The policy and the fleet group must exist (M(iotfleet.aws.iot_policy), M(iotfleet.aws.iot_thing_group)).
options:
  devices:
    description:
      - The devices to register.
    type: list
    elements: dict
    required: true
    suboptions:
      thing_name:
        description:
          - The thing name, the board's base MAC address as 12 upper-case hex digits (C(4827E2E59190)).
        type: str
        required: true
      csr:
        description:
          - The PEM text of the board's certificate signing request (PKCS#10), made on the controller
            by M(iotfleet.aws.device_keys). Its key must be RSA of at least 2048 bits or EC on P-256, P-384 or P-521.
          - When the CSR has a subject CN, it must be the thing name.
        type: str
        required: true
      attributes:
        description:
          - Thing attributes to set, for example C(owner) and C(location). Other attributes of the thing
            are left as they are.
          - AWS allows at most three attributes on a thing without a thing type.
        type: dict
      certificate_pem:
        description:
          - The certificate (public PEM) that this module returned for the device last time, for example
            as kept in the key store by M(iotfleet.aws.device_keys).
          - Lets a re-run confirm the device from the listings alone, without calls per device. Ignored
            when it is not for the CSR's key; never trusted beyond what the listings confirm.
        type: str
  policy_name:
    description:
      - The IoT policy attached to every device's certificate.
    type: str
    required: true
  thing_group:
    description:
      - The fleet thing group every thing is added to (static group). Other group memberships are left as they are.
    type: str
    required: true
  rotate:
    description:
      - Thing names whose certificate is replaced by a new one issued from the CSR, even when an
        ACTIVE certificate for the same key exists. Their other ACTIVE certificates are retired.
      - This is how a revoked board comes back - with a new key
        (M(iotfleet.aws.device_keys) O(iotfleet.aws.device_keys#module:rotate)) and a new certificate.
      - Each run with a thing in this list issues a new certificate for it; list only what is to be rotated now.
    type: list
    elements: str
    default: []
  rate_limits:
    description:
      - Requests per second per AWS IoT API, over the defaults, which are AWS's default quotas -
        C(CreateThing) 100, C(UpdateThing) 100, C(ListThings) 10,
        C(AddThingToThingGroup) 100, C(ListThingsInThingGroup) 25, C(CreateCertificateFromCsr) 15,
        C(ListCertificates) 10, C(DescribeCertificate) 10, C(UpdateCertificate) 10, C(DeleteCertificate) 10,
        C(AttachPolicy) 15, C(DetachPolicy) 15, C(ListTargetsForPolicy) 10, C(AttachThingPrincipal) 100,
        C(DetachThingPrincipal) 100, C(ListThingPrincipals) 10.
      - Raise them when your account's quotas are higher; the rate is per module run, so lower them
        when other clients share the account's quota.
    type: dict
    default: {}
  max_workers:
    description:
      - How many devices are registered at the same time.
    type: int
    default: 16
  verify_attachments:
    description:
      - Check with AWS that each device's certificate is still attached to its thing, even when the
        listings already confirm the certificate (one ListThingPrincipals per device, 10 a second by
        default - 100 s for 1,000 devices).
      - Without it, that attachment is taken from the run that returned O(devices[].certificate_pem).
    type: bool
    default: false
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: Make a key and CSR per board on the controller
  iotfleet.aws.device_keys:
    things: "{{ groups['esp32_boards'] | map('extract', hostvars, 'thing_name') | list }}"
    key_store: "{{ playbook_dir }}/../keys/{{ iotfleet_prefix }}"
  register: keys

- name: Register every board in one call
  iotfleet.aws.iot_fleet_registration:
    devices: "{{ keys.devices }}"
    policy_name: "{{ iotfleet_prefix }}_device"
    thing_group: "{{ iotfleet_prefix }}_fleet"
  register: fleet

- name: Bring a revoked board back with a new key and certificate
  iotfleet.aws.iot_fleet_registration:
    devices:
      - thing_name: 4827E2E59190
        csr: "{{ lookup('file', 'keys/iotfleet/4827E2E59190.csr') }}"
        attributes:
          owner: alice
    policy_name: iotfleet_device
    thing_group: iotfleet_fleet
    rotate:
      - 4827E2E59190
"""

RETURN = r"""
devices:
  description:
    - One entry per device, in the order of O(devices), also when the module fails.
  returned: always
  type: list
  elements: dict
  contains:
    thing_name:
      description: The thing name.
      returned: always
      type: str
      sample: 4827E2E59190
    thing_arn:
      description: The ARN of the thing; null in check mode when the thing would be created.
      returned: always
      type: str
      sample: arn:aws:iot:eu-north-1:123456789012:thing/4827E2E59190
    certificate_id:
      description:
        - The id of the device's ACTIVE certificate.
        - Null in check mode when one would be issued, and when the device failed before it had one.
      returned: always
      type: str
      sample: 3f1c0e6e6f4b2a7d9c8e5b1a0d2f4e6c8a9b7d5e3f1a2c4e6b8d0f2a4c6e8b0d
    certificate_arn:
      description: The ARN of that certificate.
      returned: always
      type: str
      sample: arn:aws:iot:eu-north-1:123456789012:cert/3f1c0e6e6f4b2a7d9c8e5b1a0d2f4e6c8a9b7d5e3f1a2c4e6b8d0f2a4c6e8b0d
    certificate_pem:
      description:
        - That certificate (public) in PEM format, to flash with the board's key and to pass back as
          O(devices[].certificate_pem) next time.
      returned: always
      type: str
      sample: "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
    created_thing:
      description: Whether the thing was created.
      returned: always
      type: bool
      sample: false
    issued_certificate:
      description: Whether a new certificate was issued from the CSR.
      returned: always
      type: bool
      sample: false
    reused_certificate:
      description: Whether an existing ACTIVE certificate for the CSR's key was kept.
      returned: always
      type: bool
      sample: true
    retired_certificates:
      description: Ids of the certificates set INACTIVE and detached for this device.
      returned: always
      type: list
      elements: str
      sample: []
    actions:
      description:
        - What was done (or, in check mode, would be done) for the device, in order, for example
          C(create_thing), C(update_attributes), C(add_to_thing_group), C(issue_certificate),
          C(attach_thing_principal), C(attach_policy), C(deactivate_certificate <id>),
          C(detach_policy <id>), C(detach_thing_principal <id>). Empty when the device was already right.
      returned: always
      type: list
      elements: str
      sample: ["issue_certificate", "attach_thing_principal", "attach_policy"]
    changed:
      description: Whether anything was changed for the device.
      returned: always
      type: bool
      sample: true
    failed:
      description: Whether the device could not be registered.
      returned: always
      type: bool
      sample: false
    error:
      description: Why the device could not be registered.
      returned: when RV(devices[].failed=true)
      type: str
      sample: "Failed to attach the certificate to the thing: ..."
summary:
  description: Counts over all devices, the AWS calls made per API and the time taken.
  returned: always
  type: dict
  contains:
    devices:
      description: How many devices were given.
      returned: always
      type: int
      sample: 1000
    changed:
      description: How many devices were changed (and did not fail).
      returned: always
      type: int
      sample: 3
    unchanged:
      description: How many devices were already right.
      returned: always
      type: int
      sample: 997
    failed:
      description: How many devices failed.
      returned: always
      type: int
      sample: 0
    created_things:
      description: How many things were created.
      returned: always
      type: int
      sample: 3
    issued_certificates:
      description: How many certificates were issued.
      returned: always
      type: int
      sample: 3
    reused_certificates:
      description: How many existing certificates were kept.
      returned: always
      type: int
      sample: 997
    retired_certificates:
      description: How many certificates were set INACTIVE and detached.
      returned: always
      type: int
      sample: 0
    seconds:
      description: Wall-clock seconds the registration took, listings included.
      returned: always
      type: float
      sample: 4.2
    api_calls:
      description: HTTP requests sent per AWS API (retries included).
      returned: always
      type: dict
      sample: {"ListCertificates": 4, "ListTargetsForPolicy": 4, "ListThings": 4, "ListThingsInThingGroup": 4}
    throttled:
      description: Throttling errors AWS answered per API (each one was retried).
      returned: always
      type: dict
      sample: {}
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import HAS_CRYPTOGRAPHY
from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import REGISTRATION_APIS
from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import FleetInputError
from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import FleetRegistration
from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import FleetSetupError
from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import build_specs
from ansible_collections.iotfleet.aws.plugins.module_utils.fleet_registration import summarize
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import GROUP_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import POLICY_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import iot_retry_decorator
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_name
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import AWS_IOT_DEFAULT_RATES
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import RateLimiter
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import merge_rate_limits

MAX_WORKERS = 64


def refuse_private_keys(module):
    """Fail, masking the text everywhere in the result, when a PEM field holds a private key."""
    for index, device in enumerate(module.params["devices"]):
        for option in ("csr", "certificate_pem"):
            text = device.get(option)
            if text and "PRIVATE KEY" in text:
                module.no_log_values.add(text)
                module.fail_json(
                    msg=(
                        f"devices[{index}].{option}: this text contains a private key, which this module never "
                        f"takes. Keep the key on the controller and pass only the CSR."
                    )
                )


def rate_limits(module):
    try:
        defaults = {api: AWS_IOT_DEFAULT_RATES[api] for api in REGISTRATION_APIS}
        return merge_rate_limits(defaults, module.params["rate_limits"])
    except ValueError as e:
        module.fail_json(msg=str(e))


def validate(module):
    params = module.params
    validate_name(module, "policy_name", params["policy_name"], POLICY_NAME_RE, "IoT policy name")
    validate_name(module, "thing_group", params["thing_group"], GROUP_NAME_RE, "thing group name")
    if not 1 <= params["max_workers"] <= MAX_WORKERS:
        module.fail_json(msg=f"max_workers: must be between 1 and {MAX_WORKERS}, got {params['max_workers']}.")
    refuse_private_keys(module)
    try:
        return build_specs(params["devices"], params["rotate"])
    except FleetInputError as e:
        module.fail_json(msg=str(e))


def main():
    argument_spec = dict(
        devices=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                thing_name=dict(type="str", required=True),
                csr=dict(type="str", required=True),
                attributes=dict(type="dict"),
                certificate_pem=dict(type="str"),
            ),
        ),
        policy_name=dict(type="str", required=True),
        thing_group=dict(type="str", required=True),
        rotate=dict(type="list", elements="str", default=[]),
        rate_limits=dict(type="dict", default={}),
        max_workers=dict(type="int", default=16),
        verify_attachments=dict(type="bool", default=False),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"))
    specs = validate(module)
    limiter = RateLimiter(rate_limits(module))
    # One HTTP connection per worker, plus the listings that run side by side at the start.
    pool = dict(max_pool_connections=module.params["max_workers"] + 4)
    client = module.client("iot", retry_decorator=iot_retry_decorator(), config=pool)
    limiter.install(client)
    registration = FleetRegistration(
        client,
        module.params["policy_name"],
        module.params["thing_group"],
        check_mode=module.check_mode,
        verify_attachments=module.params["verify_attachments"],
        max_workers=module.params["max_workers"],
    )
    try:
        results, seconds = registration.run(specs)
    except FleetSetupError as e:
        module.fail_json(msg=str(e))
    except AnsibleIoTError as e:
        module.fail_json_aws_error(e)

    result = dict(
        changed=any(r.changed for r in results),
        devices=[r.as_dict() for r in results],
        summary=summarize(results, seconds, limiter),
    )
    if module._diff:
        changed = [r for r in results if r.changed]
        result["diff"] = dict(
            before={r.thing_name: r.before for r in changed},
            after={r.thing_name: r.after for r in changed},
        )
    failed = [r for r in results if r.error is not None]
    if failed:
        details = "; ".join(f"{r.thing_name}: {r.error}" for r in failed)
        module.fail_json(
            msg=f"{len(failed)} of {len(results)} devices could not be registered (the others were): {details}",
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
