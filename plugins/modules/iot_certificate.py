#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_certificate
version_added: 0.1.0
short_description: Issue, register, attach, deactivate and delete AWS IoT device certificates
description:
  - Gives a device an AWS IoT Core X.509 certificate in one of three ways, then keeps its status, the
    thing it is attached to and the IoT policies attached to it as requested.
  - With O(csr), AWS issues a certificate for a certificate signing request (CreateCertificateFromCsr).
    The private key stays wherever the CSR was made; no option of this module takes a private key,
    and text that contains one is refused without being echoed.
  - With O(certificate_pem), an existing certificate is registered (RegisterCertificate, or
    RegisterCertificateWithoutCA when O(ca_certificate_pem) is not given).
  - With O(certificate_id), an existing certificate is managed.
  - Issuing is idempotent through O(thing_name). When the thing already has a certificate for the
    CSR's public key that is ACTIVE (or already has the requested O(status)), that certificate is
    returned (RV(reused=true)) instead of issuing a duplicate. When the thing has an ACTIVE
    certificate for a different key, the module fails rather than issue a second identity or return
    a certificate the device's key cannot use.
  - A REVOKED certificate is never changed back; issue a new one instead.
  - Every input is checked (PEM texts, ids, that the thing and the policies exist) before anything
    is written.
options:
  state:
    description:
      - Whether the certificate should exist.
      - With V(absent) the certificate is deactivated if ACTIVE, its policies and things are detached
        (waiting until AWS has finished detaching the things, which it does asynchronously) and it is
        deleted. With O(csr), every certificate attached to O(thing_name) for the CSR's public key is deleted.
    type: str
    default: present
    choices: [present, absent]
  csr:
    description:
      - The PEM text of a PKCS#10 certificate signing request, for example
        C("{{ lookup('file', 'device.csr') }}").
      - Requires O(thing_name).
      - Mutually exclusive with O(certificate_pem) and O(certificate_id).
    type: str
  certificate_pem:
    description:
      - The PEM text of an existing certificate to register.
      - The module finds an already registered certificate by comparing certificates, whatever the
        whitespace of the PEM text.
      - Mutually exclusive with O(csr) and O(certificate_id).
    type: str
  ca_certificate_pem:
    description:
      - The PEM text of the CA certificate that signed O(certificate_pem). The CA must already be
        registered with AWS IoT.
      - Only with O(certificate_pem). Without it, the certificate is registered without a CA.
    type: str
  certificate_id:
    description:
      - The id (64 hexadecimal digits) of an existing certificate.
      - Mutually exclusive with O(csr) and O(certificate_pem).
    type: str
  thing_name:
    description:
      - The thing the certificate is attached to. The thing must exist.
      - With O(csr), also where the module looks for a certificate it issued before.
      - Other things attached to the certificate are left attached.
    type: str
  reuse_existing:
    description:
      - With O(csr), return the certificate the thing already has for the CSR's key instead of issuing
        a new one.
      - Set to V(false) to issue a new certificate on every run (for example to rotate certificates).
    type: bool
    default: true
  policies:
    description:
      - Names of IoT policies to attach to the certificate. They must exist.
      - When omitted, the certificate's policies are left as they are.
    type: list
    elements: str
  purge_policies:
    description:
      - Detach policies that are not listed in O(policies).
      - Only applies when O(policies) is given.
    type: bool
    default: false
  status:
    description:
      - The status of the certificate.
      - A new certificate is V(ACTIVE) unless told otherwise; when omitted, an existing certificate's
        status is left as it is.
      - A REVOKED certificate cannot be given another status.
    type: str
    choices: [ACTIVE, INACTIVE, REVOKED]
  wait_timeout:
    description:
      - With O(state=absent), how many seconds to wait for AWS to finish detaching the certificate's
        things before it is deleted.
    type: int
    default: 60
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: Issue a board's certificate from its CSR (the key never leaves the controller)
  iotfleet.aws.iot_certificate:
    csr: "{{ lookup('file', 'keys/4827E2E59190.csr') }}"
    thing_name: 4827E2E59190
    policies:
      - "{{ iotfleet_prefix }}_device"
  register: device_certificate

- name: Keep the certificate for flashing
  ansible.builtin.copy:
    content: "{{ device_certificate.certificate.certificate_pem }}"
    dest: keys/4827E2E59190.crt
    mode: "0644"

- name: Register a certificate signed by our own registered CA
  iotfleet.aws.iot_certificate:
    certificate_pem: "{{ lookup('file', 'device.crt') }}"
    ca_certificate_pem: "{{ lookup('file', 'ca.crt') }}"
    thing_name: 4827E2E59190

- name: Revoke a certificate
  iotfleet.aws.iot_certificate:
    certificate_id: "{{ device_certificate.certificate.certificate_id }}"
    status: REVOKED

- name: Delete a certificate (deactivated and detached first)
  iotfleet.aws.iot_certificate:
    certificate_id: "{{ device_certificate.certificate.certificate_id }}"
    state: absent
"""

RETURN = r"""
certificate:
  description:
    - The certificate after the module ran; empty when O(state=absent).
    - In check mode, when the certificate would be created, only the requested values.
  returned: always
  type: dict
  contains:
    certificate_id:
      description: The id of the certificate.
      returned: when O(state=present), except in check mode when the certificate would be created
      type: str
      sample: 3f1c0e6e6f4b2a7d9c8e5b1a0d2f4e6c8a9b7d5e3f1a2c4e6b8d0f2a4c6e8b0d
    certificate_arn:
      description: The ARN of the certificate.
      returned: when O(state=present), except in check mode when the certificate would be created
      type: str
      sample: arn:aws:iot:eu-north-1:123456789012:cert/3f1c0e6e6f4b2a7d9c8e5b1a0d2f4e6c8a9b7d5e3f1a2c4e6b8d0f2a4c6e8b0d
    status:
      description: The status of the certificate.
      returned: when O(state=present)
      type: str
      sample: ACTIVE
    certificate_pem:
      description: The certificate (public) in PEM format, to put on the device with its private key.
      returned: when O(state=present), except in check mode when the certificate would be issued from a CSR
      type: str
      sample: "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
    creation_date:
      description: When the certificate was created or registered, ISO 8601.
      returned: when O(state=present), except in check mode when the certificate would be created
      type: str
      sample: "2025-01-31T12:00:00+00:00"
    policies:
      description: The names of the IoT policies attached to the certificate, sorted.
      returned: when O(state=present)
      type: list
      elements: str
      sample: ["iotfleet_device"]
    things:
      description: The names of the things the certificate is attached to, sorted.
      returned: when O(state=present)
      type: list
      elements: str
      sample: ["4827E2E59190"]
reused:
  description: Whether an existing certificate for the CSR was returned instead of issuing a new one.
  returned: always
  type: bool
  sample: true
"""

import hashlib
import time

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.iotfleet.aws.plugins.module_utils.iot import CERTIFICATE_ID_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import POLICY_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import THING_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import attach_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import attach_thing_principal
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import create_certificate_from_csr
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_certificate
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_certificate
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import detach_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import detach_thing_principal
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import get_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_attached_policy_names
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_certificate_ids
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_principal_things
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_principals
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import register_certificate
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_certificate_status
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_name

CSR_FIX = "pass the PEM text of a PKCS#10 request, e.g. lookup('file', 'device.csr')"
# Seconds between two looks at the things still attached while waiting for detachment.
DETACH_POLL_INTERVAL = 2
# Keys of the returned certificate shown in --diff (the PEM text would only add noise).
DIFF_KEYS = ("certificate_id", "certificate_arn", "status", "creation_date", "policies", "things")


# Local checks: PEM texts, ids and names, before any AWS call.


def refuse_private_key(module, option):
    text = module.params[option]
    if text and "PRIVATE KEY" in text:
        # Mask the text everywhere in the result, invocation included, before saying no.
        module.no_log_values.add(text)
        module.fail_json(
            msg=(
                f"{option}: this text contains a private key, which this module never takes. "
                f"Keep the key where it is and pass only the public part (a CSR or a certificate)."
            )
        )


def load_csr(module):
    try:
        request = x509.load_pem_x509_csr(module.params["csr"].encode("utf-8"))
    except ValueError as e:
        module.fail_json(msg=f"csr: not a PEM certificate signing request ({e}); {CSR_FIX}.")
    if not request.is_signature_valid:
        module.fail_json(
            msg=f"csr: the request's signature does not match its public key (corrupted or edited); {CSR_FIX}."
        )
    return request


def load_certificate(module, option):
    try:
        return x509.load_pem_x509_certificate(module.params[option].encode("utf-8"))
    except ValueError as e:
        module.fail_json(
            msg=f"{option}: not a PEM X.509 certificate ({e}); pass the PEM text, e.g. lookup('file', 'device.crt')."
        )


def public_key_der(item):
    return item.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_der(pem):
    """The DER bytes of a PEM certificate, or None when AWS returned something that does not parse."""
    try:
        return x509.load_pem_x509_certificate(pem.encode("utf-8")).public_bytes(serialization.Encoding.DER)
    except ValueError:
        return None


def certificate_public_key(pem):
    try:
        return public_key_der(x509.load_pem_x509_certificate(pem.encode("utf-8")))
    except ValueError:
        return None


def validate_inputs(module):
    """Everything that can be checked without AWS; returns the parsed CSR or certificate."""
    params = module.params
    for option in ("csr", "certificate_pem", "ca_certificate_pem"):
        refuse_private_key(module, option)
    if params["csr"] is not None and not params["thing_name"]:
        module.fail_json(
            msg=(
                "thing_name: required with csr; the thing is where the module finds the certificate it issued "
                "before, so that a second run does not issue a duplicate."
            )
        )
    if params["certificate_id"] is not None and not CERTIFICATE_ID_RE.match(params["certificate_id"]):
        module.fail_json(msg=f"certificate_id: {params['certificate_id']!r} is not a certificate id (64 hex digits).")
    validate_name(module, "thing_name", params["thing_name"], THING_NAME_RE, "thing name")
    for policy in params["policies"] or []:
        validate_name(module, "policies", policy, POLICY_NAME_RE, "IoT policy name")
    if params["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout: must be 0 or more seconds.")
    if params["ca_certificate_pem"] is not None:
        load_certificate(module, "ca_certificate_pem")
    if params["csr"] is not None:
        return load_csr(module)
    if params["certificate_pem"] is not None:
        return load_certificate(module, "certificate_pem")
    return None


# Reading.


def read_certificate(client, certificate_id):
    """The module's view of the certificate, or None when it does not exist."""
    described = describe_certificate(client, certificate_id)
    if described is None:
        return None
    arn = described["certificateArn"]
    created = described.get("creationDate")
    return dict(
        certificate_id=described["certificateId"],
        certificate_arn=arn,
        status=described["status"],
        certificate_pem=described["certificatePem"],
        creation_date=created.isoformat() if hasattr(created, "isoformat") else created,
        policies=sorted(list_attached_policy_names(client, arn)),
        things=sorted(list_principal_things(client, arn)),
    )


def find_by_certificate(client, certificate):
    """The registered certificate equal to `certificate`, compared as DER, not as PEM text."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    # AWS names a certificate after the SHA-256 of its DER form: one call when that holds. The
    # listing below does not rely on it (moto, for one, hashes the PEM text instead).
    likely_id = hashlib.sha256(der).hexdigest()
    for certificate_id in [likely_id] + [i for i in list_certificate_ids(client) if i != likely_id]:
        described = describe_certificate(client, certificate_id)
        if described and certificate_der(described["certificatePem"]) == der:
            return read_certificate(client, certificate_id)
    return None


def certificates_of_thing_for_key(client, thing_name, key):
    """Certificates attached to the thing, split into those for `key` and the others."""
    matching, others = [], []
    for principal in list_thing_principals(client, thing_name) or []:
        if ":cert/" not in principal:
            continue
        certificate = read_certificate(client, principal.rsplit("/", 1)[-1])
        if certificate is None:
            continue
        if certificate_public_key(certificate["certificate_pem"]) == key:
            matching.append(certificate)
        else:
            others.append(certificate)
    return matching, others


def reusable_certificate(module, client, request):
    """The thing's certificate for the CSR's key that can be returned as is, or None to issue one."""
    thing_name = module.params["thing_name"]
    wanted_status = module.params["status"] or "ACTIVE"
    matching, others = certificates_of_thing_for_key(client, thing_name, public_key_der(request))
    for status in (wanted_status, "ACTIVE"):
        for certificate in sorted(matching, key=lambda c: c["creation_date"] or "", reverse=True):
            if certificate["status"] == status:
                return certificate
    active_others = sorted(c["certificate_id"] for c in others if c["status"] == "ACTIVE")
    if active_others:
        module.fail_json(
            msg=(
                f"thing_name: thing {thing_name!r} already has ACTIVE certificate(s) {active_others} for another "
                f"key than csr's, so the device's key cannot use them and a new one would be a second identity. "
                f"Revoke or deactivate the old certificate first (iotfleet.aws.iot_certificate certificate_id=... "
                f"status=REVOKED), or set reuse_existing=false to issue another certificate anyway."
            )
        )
    return None


# Checks against AWS, before any write.


def check_thing_and_policies(module, client):
    thing_name = module.params["thing_name"]
    if thing_name and describe_thing(client, thing_name) is None:
        module.fail_json(
            msg=(
                f"thing_name: no thing {thing_name!r} in this account/region; create it first (iotfleet.aws.iot_thing)."
            )
        )
    for policy in sorted(set(module.params["policies"] or [])):
        if get_iot_policy(client, policy) is None:
            module.fail_json(
                msg=(
                    f"policies: no IoT policy {policy!r} in this account/region; "
                    f"create it first (iotfleet.aws.iot_policy)."
                )
            )


def check_not_revoked(module, certificate):
    status = module.params["status"]
    if certificate["status"] == "REVOKED" and status not in (None, "REVOKED"):
        module.fail_json(
            msg=(
                f"status: certificate {certificate['certificate_id']} is REVOKED and a revoked certificate is never "
                f"made {status} again. Issue a new certificate instead (csr=...)."
            )
        )


# Writing.


def create(module, client, certificate):
    """Issue or register the certificate; in check mode, only the requested values."""
    status = module.params["status"] or "ACTIVE"
    thing_name = module.params["thing_name"]
    predicted = dict(status=status, policies=[], things=[])
    if module.params["certificate_pem"] is not None:
        predicted["certificate_pem"] = module.params["certificate_pem"]
    if module.check_mode:
        return predicted
    initial = "ACTIVE" if status == "ACTIVE" else "INACTIVE"
    if module.params["csr"] is not None:
        created = create_certificate_from_csr(client, module.params["csr"], active=initial == "ACTIVE")
    else:
        created = register_certificate(
            client, module.params["certificate_pem"], initial, module.params["ca_certificate_pem"]
        )
    created_view = read_certificate(client, created["certificateId"])
    if thing_name:
        # Attach at once, so that the next run finds this certificate through the thing.
        attach_thing_principal(client, thing_name, created_view["certificate_arn"])
        created_view["things"] = sorted(set(created_view["things"]) | {thing_name})
    return created_view


def ensure_status(module, client, certificate):
    status = module.params["status"]
    if status is None or status == certificate["status"]:
        return False
    if not module.check_mode:
        update_certificate_status(client, certificate["certificate_id"], status)
    certificate["status"] = status
    return True


def ensure_thing(module, client, certificate):
    thing_name = module.params["thing_name"]
    if not thing_name or thing_name in certificate["things"]:
        return False
    if not module.check_mode:
        attach_thing_principal(client, thing_name, certificate["certificate_arn"])
    certificate["things"] = sorted(certificate["things"] + [thing_name])
    return True


def ensure_policies(module, client, certificate):
    policies = module.params["policies"]
    if policies is None:
        return False
    current = set(certificate["policies"])
    to_attach = set(policies) - current
    to_detach = current - set(policies) if module.params["purge_policies"] else set()
    if not to_attach and not to_detach:
        return False
    if not module.check_mode:
        for policy in sorted(to_attach):
            attach_iot_policy(client, policy, certificate["certificate_arn"])
        for policy in sorted(to_detach):
            detach_iot_policy(client, policy, certificate["certificate_arn"])
    certificate["policies"] = sorted((current | to_attach) - to_detach)
    return True


def diff_view(certificate):
    return {key: certificate[key] for key in DIFF_KEYS if key in certificate}


def ensure_present(module, client, parsed):
    params = module.params
    reused = False
    check_thing_and_policies(module, client)
    if params["certificate_id"] is not None:
        current = read_certificate(client, params["certificate_id"])
        if current is None:
            module.fail_json(msg=f"certificate_id: no certificate {params['certificate_id']} in this account/region.")
    elif params["certificate_pem"] is not None:
        current = find_by_certificate(client, parsed)
    else:
        current = None
        if params["reuse_existing"]:
            current = reusable_certificate(module, client, parsed)
            reused = current is not None
    if current is not None:
        check_not_revoked(module, current)

    before = diff_view(current) if current else {}
    changed = current is None
    certificate = create(module, client, parsed) if current is None else dict(current)
    changed |= ensure_status(module, client, certificate)
    changed |= ensure_thing(module, client, certificate)
    changed |= ensure_policies(module, client, certificate)
    if not module.check_mode:
        certificate = read_certificate(client, certificate["certificate_id"])
    return changed, reused, before, certificate


def wait_for_things_detached(module, client, certificate):
    deadline = time.monotonic() + module.params["wait_timeout"]
    while True:
        remaining = list_principal_things(client, certificate["certificate_arn"])
        if not remaining:
            return
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=(
                    f"wait_timeout: things {sorted(remaining)} were still attached to certificate "
                    f"{certificate['certificate_id']} after {module.params['wait_timeout']} s; the certificate was "
                    f"not deleted. Run again or raise wait_timeout."
                )
            )
        time.sleep(DETACH_POLL_INTERVAL)


def remove(module, client, certificate):
    cert_id, arn = certificate["certificate_id"], certificate["certificate_arn"]
    # Deactivate first: from here on the device cannot connect, whatever happens next.
    if certificate["status"] == "ACTIVE":
        update_certificate_status(client, cert_id, "INACTIVE")
    for policy in certificate["policies"]:
        detach_iot_policy(client, policy, arn)
    for thing_name in certificate["things"]:
        detach_thing_principal(client, thing_name, arn)
    if certificate["things"]:
        wait_for_things_detached(module, client, certificate)
    delete_certificate(client, cert_id)


def ensure_absent(module, client, parsed):
    params = module.params
    if params["certificate_id"] is not None:
        found = [read_certificate(client, params["certificate_id"])]
    elif params["certificate_pem"] is not None:
        found = [find_by_certificate(client, parsed)]
    else:
        found = certificates_of_thing_for_key(client, params["thing_name"], public_key_der(parsed))[0]
    found = [certificate for certificate in found if certificate is not None]
    if not found:
        return False, {}
    if not module.check_mode:
        for certificate in found:
            remove(module, client, certificate)
    if len(found) == 1:
        return True, diff_view(found[0])
    return True, dict(certificates=[diff_view(certificate) for certificate in found])


def main():
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        csr=dict(type="str"),
        certificate_pem=dict(type="str"),
        ca_certificate_pem=dict(type="str"),
        certificate_id=dict(type="str"),
        thing_name=dict(type="str"),
        reuse_existing=dict(type="bool", default=True),
        policies=dict(type="list", elements="str"),
        purge_policies=dict(type="bool", default=False),
        status=dict(type="str", choices=["ACTIVE", "INACTIVE", "REVOKED"]),
        wait_timeout=dict(type="int", default=60),
    )
    module = IoTModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[("csr", "certificate_pem", "certificate_id")],
        required_one_of=[("csr", "certificate_pem", "certificate_id")],
        required_by=dict(ca_certificate_pem="certificate_pem"),
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"))
    parsed = validate_inputs(module)
    client = module.iot_client()
    try:
        if module.params["state"] == "present":
            changed, reused, before, certificate = ensure_present(module, client, parsed)
            after = diff_view(certificate)
        else:
            changed, before = ensure_absent(module, client, parsed)
            reused, certificate, after = False, {}, {}
    except AnsibleIoTError as e:
        module.fail_json_aws_error(e)
    result = dict(changed=changed, certificate=certificate, reused=reused)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
