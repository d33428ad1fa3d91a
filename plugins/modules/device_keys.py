#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: device_keys
version_added: 0.1.0
short_description: Keep an EC P-256 key and a CSR per board in a key store on the controller
description:
  - For each thing name in O(things), makes sure the key store O(key_store) holds a private key
    (EC P-256, PKCS#8 PEM, C(<thing>.key), mode 0600) and a certificate signing request for it with
    CN = the thing name (C(<thing>.csr)), and returns the CSRs, ready for
    M(iotfleet.aws.iot_fleet_registration).
  - A key that exists is never regenerated (the module then reports no change), except for the things listed in
    O(rotate). A key file that cannot be read as an EC P-256 key is an error and is left untouched.
  - Keeps the certificates AWS issued, public, next to the keys (C(<thing>.crt)) when given
    O(certificates), and returns them, so that the next registration can confirm each device
    without a call per device.
  - The key store folder is created (or tightened) to mode 0700. Every file is written to a
    temporary file in the same folder and moved into place, with its final mode from the start.
  - No private key material ever appears in the result, in diffs or in messages. Keys leave the
    controller only inside each board's credentials image.
  - Run it on the controller, once for all boards (see the examples).
options:
  things:
    description:
      - Thing names, each the board's base MAC address as 12 upper-case hex digits (C(4827E2E59190)).
    type: list
    elements: str
    required: true
  key_store:
    description:
      - The key store folder. The fleet role sets it to C({{ playbook_dir }}/../keys/<prefix>); C(/keys/)
        is ignored by git.
    type: path
    required: true
  rotate:
    description:
      - Thing names whose key is replaced by a new one (with a new CSR), for example after a
        revocation. The old key is kept as C(<thing>.key.retired-<UTC time>) and the old CSR and
        certificate are removed.
      - Each run with a thing in this list makes a new key for it; list only what is to be rotated now.
    type: list
    elements: str
    default: []
  certificates:
    description:
      - Certificates to keep in the key store, as a list of dicts with C(thing_name) and C(certificate_pem),
        for example RV(iotfleet.aws.iot_fleet_registration#module:devices). Other keys are ignored, and so are
        entries without a certificate.
      - Each certificate must be for the thing's key.
    type: list
    elements: dict
    default: []
author:
  - iotfleet developers (@iotfleet)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
"""

EXAMPLES = r"""
- name: Keys and CSRs for every board, on the controller
  iotfleet.aws.device_keys:
    things: "{{ groups['esp32_boards'] | map('extract', hostvars, 'thing_name') | list }}"
    key_store: "{{ playbook_dir }}/../keys/{{ iotfleet_prefix }}"
  delegate_to: localhost
  run_once: true
  register: keys

- name: Register them
  iotfleet.aws.iot_fleet_registration:
    devices: "{{ keys.devices }}"
    policy_name: "{{ iotfleet_prefix }}_device"
    thing_group: "{{ iotfleet_prefix }}_fleet"
  run_once: true
  register: fleet

- name: Keep the issued certificates next to the keys
  iotfleet.aws.device_keys:
    things: "{{ keys.devices | map(attribute='thing_name') | list }}"
    key_store: "{{ playbook_dir }}/../keys/{{ iotfleet_prefix }}"
    certificates: "{{ fleet.devices }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
devices:
  description:
    - One entry per thing, in the order of O(things), in the shape that
      O(iotfleet.aws.iot_fleet_registration#module:devices) takes.
  returned: always
  type: list
  elements: dict
  contains:
    thing_name:
      description: The thing name.
      returned: always
      type: str
      sample: 4827E2E59190
    csr:
      description: The CSR (public), PEM. Null in check mode when the key would be created.
      returned: always
      type: str
      sample: "-----BEGIN CERTIFICATE REQUEST-----\nMIH...\n-----END CERTIFICATE REQUEST-----\n"
    certificate_pem:
      description: The certificate kept for the thing's current key, or null.
      returned: always
      type: str
      sample: null
files:
  description: Per thing name, the paths of its files in the key store.
  returned: always
  type: dict
  sample:
    4827E2E59190:
      key_path: /srv/fleet/keys/iotfleet/4827E2E59190.key
      csr_path: /srv/fleet/keys/iotfleet/4827E2E59190.csr
      certificate_path: null
created:
  description: Thing names whose key was created by this run.
  returned: always
  type: list
  elements: str
  sample: ["4827E2E59190"]
rotated:
  description: Thing names whose key was replaced by this run, with the path the old key was moved to.
  returned: always
  type: dict
  sample: {"4827E2E59190": "/srv/fleet/keys/iotfleet/4827E2E59190.key.retired-20250131T120000Z"}
key_store:
  description: The absolute path of the key store.
  returned: always
  type: str
  sample: /srv/fleet/keys/iotfleet
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.basic import missing_required_lib

from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import HAS_CRYPTOGRAPHY
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import KEY_MODE
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import PUBLIC_MODE
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import IdentityError
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import KeyStore
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import build_csr
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import certificate_public_key
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import ensure_mode
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import public_key_der
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import write_atomically
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import FLEET_THING_NAME_RE


def validate(module):
    params = module.params
    for option in ("things", "rotate"):
        for index, name in enumerate(params[option]):
            if not FLEET_THING_NAME_RE.match(name):
                module.fail_json(
                    msg=(
                        f"{option}[{index}]: {name!r} is not a fleet thing name; it must be the board's base MAC "
                        f"address as 12 upper-case hex digits ({FLEET_THING_NAME_RE.pattern}), e.g. 4827E2E59190."
                    )
                )
    for option in ("rotate",):
        unknown = sorted(set(params[option]) - set(params["things"]))
        if unknown:
            module.fail_json(msg=f"{option}: {unknown} are not listed in things.")
    certificates = {}
    for index, entry in enumerate(params["certificates"]):
        pem = entry.get("certificate_pem")
        if not pem:
            continue
        name = entry.get("thing_name")
        if name not in params["things"]:
            module.fail_json(msg=f"certificates[{index}].thing_name: {name!r} is not listed in things.")
        if "PRIVATE KEY" in pem:
            module.no_log_values.add(pem)
            module.fail_json(msg=f"certificates[{index}].certificate_pem: holds a private key; pass the certificate.")
        certificates[name] = pem
    return certificates


def ensure_csr(store, name, key):
    """The thing's CSR text, written if missing or not for this key; (csr, changed)."""
    csr = store.read_csr(name, key)
    if csr is not None:
        return csr, ensure_mode(store.csr_path(name), PUBLIC_MODE, store.check_mode)
    csr = build_csr(key, name)
    if not store.check_mode:
        write_atomically(store.csr_path(name), csr.encode("ascii"), PUBLIC_MODE)
    return csr, True


def ensure_certificate(module, store, name, key, pem):
    """Keep `pem` as the thing's certificate; (stored certificate text or None, changed)."""
    stored = store.read_certificate(name, key)
    if pem is None:
        if stored is not None:
            return stored, ensure_mode(store.certificate_path(name), PUBLIC_MODE, store.check_mode)
        return None, False
    if certificate_public_key(pem) != public_key_der(key):
        module.fail_json(
            msg=(
                f"certificates: the certificate given for {name} is not for its key in {store.key_path(name)}; pass "
                f"the certificate issued for this key's CSR."
            )
        )
    if stored is not None and stored.strip() == pem.strip():
        return stored, ensure_mode(store.certificate_path(name), PUBLIC_MODE, store.check_mode)
    if not store.check_mode:
        write_atomically(store.certificate_path(name), pem.encode("ascii"), PUBLIC_MODE)
    return pem, True


def ensure_device(module, store, name, certificate):
    """Make sure one thing's files are right; returns (device entry, before, after, created, retired path)."""
    try:
        key = store.load_key(name)
    except IdentityError as e:
        module.fail_json(msg=f"things: {name}: {e}")
    before = dict(
        key="present" if key is not None else "absent",
        csr=os.path.exists(store.csr_path(name)),
        certificate=os.path.exists(store.certificate_path(name)),
    )
    retired = None
    if key is not None and name in module.params["rotate"]:
        retired = store.retire_key(name)
        key = None
    created = key is None
    changed = created
    if created:
        key = store.create_key(name)
    else:
        changed |= ensure_mode(store.key_path(name), KEY_MODE, store.check_mode)
    if created and store.check_mode:
        csr = None
    else:
        csr, csr_changed = ensure_csr(store, name, key)
        changed |= csr_changed
    pem, cert_changed = ensure_certificate(module, store, name, key, certificate)
    changed |= cert_changed
    after = dict(key="new" if created else "present", csr=True, certificate=pem is not None)
    device = dict(thing_name=name, csr=csr, certificate_pem=pem)
    return device, changed, before, after, created, retired


def main():
    module = AnsibleModule(
        argument_spec=dict(
            things=dict(type="list", elements="str", required=True),
            key_store=dict(type="path", required=True, no_log=False),
            rotate=dict(type="list", elements="str", default=[]),
            certificates=dict(type="list", elements="dict", default=[]),
        ),
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"))
    certificates = validate(module)
    store = KeyStore(module.params["key_store"], check_mode=module.check_mode)
    try:
        changed = store.ensure_folder()
    except IdentityError as e:
        module.fail_json(msg=f"key_store: {e}")
    devices, files, created, rotated = [], {}, [], {}
    diff = dict(before={}, after={})
    for name in dict.fromkeys(module.params["things"]):
        device, device_changed, before, after, new, retired = ensure_device(module, store, name, certificates.get(name))
        devices.append(device)
        files[name] = dict(
            key_path=store.key_path(name),
            csr_path=store.csr_path(name),
            certificate_path=store.certificate_path(name) if device["certificate_pem"] else None,
        )
        if new:
            created.append(name)
        if retired:
            rotated[name] = retired
        if device_changed:
            diff["before"][name], diff["after"][name] = before, after
        changed |= device_changed
    result = dict(changed=changed, devices=devices, files=files, created=created, rotated=rotated, key_store=store.path)
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
