# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Registering a fleet of devices in AWS IoT Core in one call: the engine of iot_fleet_registration.

First a few paginated listings (things with their attributes, the fleet group's members, the
certificates with their status, the policy's targets), then one task per device in a thread pool;
every AWS call is paced by a token bucket per API (ratelimit.RateLimiter). A device whose previous
certificate is passed back (`certificate_pem`) and still checks out costs no call of its own, so an
unchanged fleet costs O(pages) calls, not O(devices).

Plain Python (no AnsibleModule): the module and bench/fleet_register.py call the same code.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field

from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import IdentityError
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import certificate_id
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import certificate_public_key
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import common_name
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import load_certificate
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import load_csr
from ansible_collections.iotfleet.aws.plugins.module_utils.device_identity import public_key_der
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import ATTRIBUTE_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import ATTRIBUTE_VALUE_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import FLEET_THING_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import AnsibleIoTError
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import add_thing_to_thing_group
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import attach_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import attach_thing_principal
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import create_certificate_from_csr
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import create_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_certificate
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_certificate
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import detach_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import detach_thing_principal
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_certificate_summaries
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_policy_target_arns
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_group_member_names
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_principals
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_things_with_attributes
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_certificate_status
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_thing

# The IoT APIs a registration calls; each gets its own rate limit.
REGISTRATION_APIS = (
    "AddThingToThingGroup",
    "AttachPolicy",
    "AttachThingPrincipal",
    "CreateCertificateFromCsr",
    "CreateThing",
    "DeleteCertificate",
    "DescribeCertificate",
    "DetachPolicy",
    "DetachThingPrincipal",
    "ListCertificates",
    "ListTargetsForPolicy",
    "ListThingPrincipals",
    "ListThings",
    "ListThingsInThingGroup",
    "UpdateCertificate",
    "UpdateThing",
)
CSR_FIX = "pass the PEM text of the board's CSR, e.g. the csr that iotfleet.aws.device_keys returns"


class FleetInputError(ValueError):
    """Input that is wrong before any AWS call; the message names the option path (devices[3].csr)."""


class FleetSetupError(Exception):
    """The policy or the fleet group is missing: nothing can be registered."""


class DeviceFailure(Exception):
    """One device cannot be registered as asked; the others go on."""


@dataclass
class DeviceSpec:
    index: int
    thing_name: str
    csr: str
    public_key: bytes
    attributes: dict
    cached_certificate_pem: str = None
    cached_certificate_id: str = None
    rotate: bool = False


@dataclass
class Certificate:
    certificate_id: str
    certificate_arn: str
    status: str
    certificate_pem: str = None
    public_key: bytes = None
    created: object = None


@dataclass
class Listing:
    """What the paginated listings say about the account, before any write."""

    things: dict
    group_members: set
    certificates: dict
    policy_targets: set


@dataclass
class DeviceResult:
    thing_name: str
    thing_arn: str = None
    certificate: Certificate = None
    created_thing: bool = False
    issued_certificate: bool = False
    reused_certificate: bool = False
    retired_certificates: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    error: str = None
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)

    @property
    def changed(self):
        return bool(self.actions)

    def as_dict(self):
        certificate = self.certificate or Certificate(None, None, None)
        result = dict(
            thing_name=self.thing_name,
            thing_arn=self.thing_arn,
            certificate_id=certificate.certificate_id,
            certificate_arn=certificate.certificate_arn,
            certificate_pem=certificate.certificate_pem,
            created_thing=self.created_thing,
            issued_certificate=self.issued_certificate,
            reused_certificate=self.reused_certificate,
            retired_certificates=list(self.retired_certificates),
            actions=list(self.actions),
            changed=self.changed,
            failed=self.error is not None,
        )
        if self.error is not None:
            result["error"] = self.error
        return result


# Input checks (no AWS call).


def validate_attributes(option, attributes):
    """The attributes as AWS stores them (str -> str); FleetInputError names the bad one."""
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise FleetInputError(f"{option}: must be a dict of attribute names to values.")
    result = {}
    for name, value in attributes.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise FleetInputError(f"{option}.{name}: {value!r} is not a string; quote the value in YAML.")
        value = str(value)
        if not ATTRIBUTE_NAME_RE.match(str(name)):
            raise FleetInputError(f"{option}: {name!r} is not a valid attribute name ({ATTRIBUTE_NAME_RE.pattern}).")
        if not ATTRIBUTE_VALUE_RE.match(value):
            raise FleetInputError(
                f"{option}.{name}: {value!r} is not a valid attribute value ({ATTRIBUTE_VALUE_RE.pattern}: no spaces, "
                f"not empty)."
            )
        result[str(name)] = value
    return result


def build_specs(devices, rotate=()):
    """Check every device entry and return DeviceSpecs; FleetInputError lists every problem found."""
    problems = []
    specs = []
    seen_names = {}
    seen_keys = {}
    for index, device in enumerate(devices):
        where = f"devices[{index}]"
        try:
            specs.append(_build_spec(index, device, where))
        except FleetInputError as e:
            problems.append(str(e))
            continue
        spec = specs[-1]
        if spec.thing_name in seen_names:
            problems.append(f"{where}.thing_name: {spec.thing_name} is also devices[{seen_names[spec.thing_name]}].")
        seen_names.setdefault(spec.thing_name, index)
        if spec.public_key in seen_keys:
            problems.append(
                f"{where}.csr: same public key as devices[{seen_keys[spec.public_key]}].csr; every board needs "
                f"its own key."
            )
        seen_keys.setdefault(spec.public_key, index)
    unknown = sorted(set(rotate or ()) - set(seen_names))
    if unknown:
        problems.append(f"rotate: {unknown} are not thing names listed in devices.")
    if problems:
        raise FleetInputError(" ".join(problems))
    rotate = set(rotate or ())
    for spec in specs:
        spec.rotate = spec.thing_name in rotate
    return specs


def _build_spec(index, device, where):
    name = device.get("thing_name")
    if not isinstance(name, str) or not FLEET_THING_NAME_RE.match(name):
        raise FleetInputError(
            f"{where}.thing_name: {name!r} is not a fleet thing name; it must be the board's base MAC address as "
            f"12 upper-case hex digits ({FLEET_THING_NAME_RE.pattern}), e.g. 4827E2E59190."
        )
    try:
        request = load_csr(device.get("csr"))
    except IdentityError as e:
        raise FleetInputError(f"{where}.csr ({name}): {e}; {CSR_FIX}.") from None
    subject = common_name(request)
    if subject is not None and subject != name:
        raise FleetInputError(
            f"{where}.csr ({name}): the CSR is for CN={subject}, not for this thing; pass this board's own CSR."
        )
    spec = DeviceSpec(
        index=index,
        thing_name=name,
        csr=device["csr"],
        public_key=public_key_der(request),
        attributes=validate_attributes(f"{where}.attributes", device.get("attributes")),
    )
    cached = device.get("certificate_pem")
    if cached:
        try:
            certificate = load_certificate(cached)
        except IdentityError as e:
            raise FleetInputError(f"{where}.certificate_pem ({name}): {e}.") from None
        # A certificate for another key is a leftover of an earlier key: not this board's any more.
        if public_key_der(certificate) == spec.public_key:
            spec.cached_certificate_pem = cached
            spec.cached_certificate_id = certificate_id(certificate)
    return spec


def error_text(e):
    if isinstance(e, AnsibleIoTError):
        return f"{e.message}: {e.exception}" if e.exception is not None else e.message
    return str(e)


# The registration.


class FleetRegistration:
    """Registers DeviceSpecs with one policy and one fleet thing group.

    `client` is a boto3 IoT client wrapped by Ansible's RetryingBotoClientWrapper (module.client(...,
    retry_decorator=iot_retry_decorator())), with a RateLimiter installed on it.
    """

    def __init__(self, client, policy_name, thing_group, check_mode=False, verify_attachments=False, max_workers=16):
        self.client = client
        self.policy_name = policy_name
        self.thing_group = thing_group
        self.check_mode = check_mode
        self.verify_attachments = verify_attachments
        self.max_workers = max_workers
        self.listing = None
        self._retired_keys = None
        self._retired_keys_lock = threading.Lock()

    # Reading.

    def read_listing(self):
        with ThreadPoolExecutor(max_workers=4) as pool:
            things = pool.submit(list_things_with_attributes, self.client)
            members = pool.submit(list_thing_group_member_names, self.client, self.thing_group)
            certificates = pool.submit(list_certificate_summaries, self.client)
            targets = pool.submit(list_policy_target_arns, self.client, self.policy_name)
            things, members, certificates, targets = (
                things.result(),
                members.result(),
                certificates.result(),
                targets.result(),
            )
        if targets is None:
            raise FleetSetupError(
                f"policy_name: no IoT policy {self.policy_name!r} in this account/region; create it first "
                f"(iotfleet.aws.iot_policy)."
            )
        if members is None:
            raise FleetSetupError(
                f"thing_group: no thing group {self.thing_group!r} in this account/region; create it first "
                f"(iotfleet.aws.iot_thing_group)."
            )
        self.listing = Listing(
            things={
                thing["thingName"]: dict(arn=thing["thingArn"], attributes=thing.get("attributes") or {})
                for thing in things
            },
            group_members=set(members),
            certificates={
                cert["certificateId"]: Certificate(
                    cert["certificateId"], cert["certificateArn"], cert["status"], created=cert.get("creationDate")
                )
                for cert in certificates
            },
            policy_targets=set(targets),
        )
        return self.listing

    def attached_certificates(self, spec):
        """The certificates attached to the thing, with the public key of each one that matters.

        Costs ListThingPrincipals, plus DescribeCertificate for each ACTIVE one whose key is not
        known from the cached certificate. REVOKED and INACTIVE ones are not described here: their
        keys are checked against the account-wide index (retired_keys).
        """
        attached = []
        for principal in list_thing_principals(self.client, spec.thing_name) or []:
            if ":cert/" not in principal:
                continue
            cert_id = principal.rsplit("/", 1)[-1]
            known = self.listing.certificates.get(cert_id)
            if cert_id == spec.cached_certificate_id and known is not None:
                cert = Certificate(
                    cert_id, principal, known.status, spec.cached_certificate_pem, spec.public_key, known.created
                )
            elif known is not None and known.status != "ACTIVE":
                cert = Certificate(cert_id, principal, known.status, created=known.created)
            else:
                described = describe_certificate(self.client, cert_id)
                if described is None:
                    continue
                cert = Certificate(
                    cert_id,
                    principal,
                    described["status"],
                    described["certificatePem"],
                    certificate_public_key(described["certificatePem"]),
                    described.get("creationDate"),
                )
            attached.append(cert)
        return attached

    def retired_keys(self):
        """Public key -> (status, certificate id) for every REVOKED or INACTIVE certificate of the account.

        Read once per run, and only when some device needs a new certificate: one DescribeCertificate
        per such certificate.
        """
        with self._retired_keys_lock:
            if self._retired_keys is None:
                index = {}
                for cert in self.listing.certificates.values():
                    if cert.status not in ("REVOKED", "INACTIVE"):
                        continue
                    described = describe_certificate(self.client, cert.certificate_id)
                    key = described and certificate_public_key(described["certificatePem"])
                    if key is not None and index.get(key, ("",))[0] != "REVOKED":
                        index[key] = (cert.status, cert.certificate_id)
                self._retired_keys = index
            return self._retired_keys

    # Writing, one device at a time.

    def register(self, spec):
        result = DeviceResult(spec.thing_name)
        try:
            self.ensure_thing(spec, result)
            # The certificate before the fleet group: a device whose key is refused (revoked) stays
            # out of the group instead of joining it and then failing.
            self.ensure_certificate(spec, result)
            self.ensure_group(spec, result)
        except (DeviceFailure, AnsibleIoTError) as e:
            result.error = error_text(e)
        return result

    def write(self, result, action, call, *args, **kwargs):
        """Make one write (not in check mode) and record it as done; returns what the call returned."""
        answer = None if self.check_mode else call(self.client, *args, **kwargs)
        result.actions.append(action)
        return answer

    def ensure_thing(self, spec, result):
        thing = self.listing.things.get(spec.thing_name)
        if thing is None:
            result.before["thing"] = None
            result.after["thing"] = dict(attributes=dict(spec.attributes))
            created = self.write(result, "create_thing", create_thing, spec.thing_name, attributes=spec.attributes)
            result.created_thing = True
            result.thing_arn = created and created["thingArn"]
            return
        result.thing_arn = thing["arn"]
        changes = {name: value for name, value in spec.attributes.items() if thing["attributes"].get(name) != value}
        result.before["thing"] = dict(attributes=dict(thing["attributes"]))
        result.after["thing"] = dict(attributes={**thing["attributes"], **changes})
        if changes:
            payload = dict(attributes=changes, merge=True)
            self.write(result, "update_attributes", update_thing, spec.thing_name, attributePayload=payload)

    def ensure_group(self, spec, result):
        member = spec.thing_name in self.listing.group_members
        result.before["in_thing_group"] = member
        result.after["in_thing_group"] = True
        if not member:
            self.write(result, "add_to_thing_group", add_thing_to_thing_group, self.thing_group, spec.thing_name)

    def trusted_cached_certificate(self, spec):
        """The cached certificate when the listings alone prove it is this device's ACTIVE one, else None.

        That it is still attached to the thing is taken from the run that returned it (AWS has no
        listing of attachments across things); verify_attachments=true checks it per device.
        """
        if spec.rotate or self.verify_attachments or spec.thing_name not in self.listing.things:
            return None
        known = self.listing.certificates.get(spec.cached_certificate_id)
        if known is None or known.status != "ACTIVE":
            return None
        return Certificate(
            known.certificate_id,
            known.certificate_arn,
            "ACTIVE",
            spec.cached_certificate_pem,
            spec.public_key,
            known.created,
        )

    def ensure_certificate(self, spec, result):
        current = self.trusted_cached_certificate(spec)
        attached = []
        if current is None and spec.thing_name in self.listing.things:
            attached = self.attached_certificates(spec)
            matching = [c for c in attached if c.status == "ACTIVE" and c.public_key == spec.public_key]
            if matching and not spec.rotate:
                current = max(matching, key=lambda c: str(c.created or ""))
        shown = attached if current is None or attached else [current]
        result.before["certificates"] = {c.certificate_id: c.status for c in shown}
        if current is not None:
            result.reused_certificate = True
        else:
            self.check_key_not_retired(spec, attached)
            current = self.issue(spec, result)
        result.certificate = current
        self.ensure_policy(current, result)
        for cert in attached:
            if cert.status == "ACTIVE" and cert.certificate_id != current.certificate_id:
                if spec.rotate or cert.public_key != spec.public_key:
                    self.retire(spec, cert, result)
        after = {c.certificate_id: c.status for c in shown}
        after.update({cert_id: "INACTIVE" for cert_id in result.retired_certificates})
        after[current.certificate_id or "(new)"] = "ACTIVE"
        result.after["certificates"] = after

    def check_key_not_retired(self, spec, attached):
        """Refuse to issue for a key whose certificate was revoked, or deactivated unless rotating.

        A revoked device's thing still exists (revocation quarantines it), so the account-wide index
        is only read for things that exist; a new thing's key has no history to check.
        """
        found = [(c.status, c.certificate_id) for c in attached if c.public_key == spec.public_key]
        known = self.listing.certificates.get(spec.cached_certificate_id)
        if known is not None:
            found.append((known.status, known.certificate_id))
        exists = spec.thing_name in self.listing.things
        if exists and not any(status == "REVOKED" for status, _id in found):
            entry = self.retired_keys().get(spec.public_key)
            found += [entry] if entry else []
        for status, cert_id in sorted(found, key=lambda entry: entry[0] != "REVOKED"):
            if status == "REVOKED":
                raise DeviceFailure(
                    f"certificate {cert_id} for this CSR's key is REVOKED, so the key is no longer trusted and no "
                    f"certificate is issued for it again. Make a new key and CSR (iotfleet.aws.device_keys with "
                    f"rotate) and list the thing in rotate."
                )
            if status == "INACTIVE" and not spec.rotate:
                raise DeviceFailure(
                    f"certificate {cert_id} for this CSR's key is INACTIVE (deactivated, e.g. by a revocation) and is "
                    f"never reactivated here. List the thing in rotate to issue a new certificate."
                )

    def issue(self, spec, result):
        """CreateCertificateFromCsr, then attach it to the thing (the policy follows in ensure_policy).

        The thing comes first: if that fails the new certificate is deactivated and deleted, so no
        ACTIVE certificate is left attached to nothing. If the policy fails afterwards, the
        certificate is ACTIVE and attached to the thing, and the next run adopts it.
        """
        result.issued_certificate = True
        created = self.write(result, "issue_certificate", create_certificate_from_csr, spec.csr, active=True)
        if created is None:
            cert = Certificate(None, None, "ACTIVE", public_key=spec.public_key)
        else:
            cert = Certificate(
                created["certificateId"],
                created["certificateArn"],
                "ACTIVE",
                created["certificatePem"],
                spec.public_key,
            )
        try:
            self.write(result, "attach_thing_principal", attach_thing_principal, spec.thing_name, cert.certificate_arn)
        except AnsibleIoTError as e:
            raise DeviceFailure(
                f"{error_text(e)}. The new certificate {cert.certificate_id} {self.discard(cert)}; a re-run issues "
                f"another one."
            ) from None
        return cert

    def discard(self, cert):
        """Deactivate and delete a certificate that was just issued and is attached to nothing; say what happened."""
        try:
            update_certificate_status(self.client, cert.certificate_id, "INACTIVE")
        except AnsibleIoTError as e:
            return f"could not be deactivated ({error_text(e)}) and is ACTIVE but attached to nothing: delete it"
        try:
            delete_certificate(self.client, cert.certificate_id)
        except AnsibleIoTError as e:
            return (
                f"was deactivated but could not be deleted ({error_text(e)}); delete it, or the next run will refuse "
                f"this key as deactivated unless the thing is listed in rotate"
            )
        return "was deactivated and deleted"

    def ensure_policy(self, cert, result):
        attached = not result.issued_certificate and cert.certificate_arn in self.listing.policy_targets
        result.before["policy_attached"] = attached
        result.after["policy_attached"] = True
        if not attached:
            self.write(result, "attach_policy", attach_iot_policy, self.policy_name, cert.certificate_arn)

    def retire(self, spec, cert, result):
        """Another key's certificate (or any other, when rotating): INACTIVE, policy and thing detached; kept."""
        arn = cert.certificate_arn
        self.write(
            result,
            f"deactivate_certificate {cert.certificate_id}",
            update_certificate_status,
            cert.certificate_id,
            "INACTIVE",
        )
        result.retired_certificates.append(cert.certificate_id)
        if arn in self.listing.policy_targets:
            self.write(result, f"detach_policy {cert.certificate_id}", detach_iot_policy, self.policy_name, arn)
        self.write(
            result, f"detach_thing_principal {cert.certificate_id}", detach_thing_principal, spec.thing_name, arn
        )

    def run(self, specs):
        """Register every device; return (DeviceResults in input order, seconds taken)."""
        started = time.monotonic()
        if self.listing is None:
            self.read_listing()
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            results = list(pool.map(self.register, specs))
        return results, time.monotonic() - started


def summarize(results, seconds, limiter=None):
    summary = dict(
        devices=len(results),
        changed=sum(1 for r in results if r.changed and r.error is None),
        unchanged=sum(1 for r in results if not r.changed and r.error is None),
        failed=sum(1 for r in results if r.error is not None),
        created_things=sum(1 for r in results if r.created_thing),
        issued_certificates=sum(1 for r in results if r.issued_certificate),
        reused_certificates=sum(1 for r in results if r.reused_certificate),
        retired_certificates=sum(len(r.retired_certificates) for r in results),
        seconds=round(seconds, 3),
    )
    if limiter is not None:
        limits = limiter.summary()
        summary["api_calls"] = limits["calls"]
        summary["throttled"] = limits["throttled"]
    return summary
