#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: iot_device_revocation
version_added: 0.1.0
short_description: Revoke AWS IoT devices so that they can no longer connect, idempotently
description:
  - For every thing in O(things), in one call, takes the device's trust away - in this order
  - 1. every certificate attached to the thing is set to O(certificate_status) (C(REVOKED) by default).
    A C(REVOKED) certificate stays C(REVOKED); no certificate is ever made C(ACTIVE) again.
  - 2. with O(devices_table), the device's row in the devices table gets C(status=revoked) (with O(devices_api),
    through the backend's GraphQL mutation C(revokeDevice)) (before its
    session is dropped, so that the disconnection it causes is not reported as an ordinary one).
  - 3. with O(drop_sessions), the device's live MQTT session (client id = thing name) is closed and
    its persistent session discarded (iot-data C(DeleteConnection)). No live session is fine.
  - 4. every IoT policy is detached from those certificates, then the thing is detached from them.
  - 5. the thing is added to O(quarantine_group) and removed from its other static thing groups; then the
    module waits until AWS has finished detaching the thing from its certificates (it detaches asynchronously).
  - 6. last, once everything else succeeded, its attribute C(revoked_at) records when it was revoked
    (ISO 8601, UTC, for example C(2025-01-31T12:00:00Z)). It is written once per revocation, not on every run.
  - With O(delete=true), steps 5 and 6 are replaced by deleting the certificates, then the thing.
  - A re-run changes nothing once a device is revoked. A device counts as newly revoked (RV(devices[].newly_revoked))
    when it had an C(ACTIVE) certificate or no C(revoked_at) attribute before the run; then, and only then,
    C(revoked_at) is (re)written.
  - A re-run is cheap - a few listings, no request per device. The things are listed once (C(ListThings), 250
    a page; C(DescribeThing) for a name the listing lacks), the thing groups and their members (C(ListThingGroups),
    C(ListThingsInThingGroup); C(ListThingGroupsForThing) per device instead when the account has more groups
    than there are devices), every certificate's status (C(ListCertificates)) and the devices table's rows. A device
    counts as already revoked when it has C(revoked_at), is in O(quarantine_group) and in no other static group,
    its row in the devices table (if any) says revoked, and no C(ACTIVE) certificate is attached to it. That last
    check costs whichever is fewer requests - one C(ListPrincipalThings) per C(ACTIVE) certificate of the account,
    or one C(ListThingPrincipals) per such device. Any other device is looked at closely and fixed, so a
    certificate re-activated and re-attached by hand is revoked again. Trade-off - a C(REVOKED) or C(INACTIVE)
    certificate re-attached to a revoked thing by hand is only seen on the per-device path; it cannot connect, and
    it is seen as soon as it is re-activated.
  - The devices to revoke have their certificates listed per device (C(ListThingPrincipals)); the policies attached
    to them are read from every policy's targets (C(ListPolicies), C(ListTargetsForPolicy)) when the account has no
    more policies than there are such devices, else per certificate (C(ListAttachedPolicies)).
  - The steps of the devices being revoked run in a thread pool, each API paced by its own token bucket, so they
    overlap - revoking N devices takes about N / 10 seconds (C(UpdateCertificate) and C(ListThingPrincipals) at
    10/s). The buckets start full and hold one second's worth of requests, as AWS's own buckets do.
  - Certificates are found through the thing. Once a run has detached them, later runs no longer see
    them, so a certificate left C(INACTIVE) by O(certificate_status=INACTIVE) is revoked for good with
    M(iotfleet.aws.iot_certificate) (its id is in RV(devices[].certificates)). Principals other than
    certificates are left alone.
  - Every thing is looked up before anything is written; an unknown thing fails the module, naming it,
    with nothing changed (unless O(missing=ignore)). Devices are then revoked in a thread pool of
    O(max_workers), every AWS API paced by its own client-side token bucket at O(rate_limits). A
    device that fails does not stop the others; the module then fails naming each failed device, and a
    re-run completes what is left. If only the session could not be dropped, the other steps are done
    anyway, but not step 6, so the device still counts as newly revoked on the re-run.
options:
  things:
    description:
      - Names of the things to revoke (in the fleet, the board's base MAC address as 12 upper-case hex
        digits, for example C(4827E2E59190)). Duplicates are revoked once.
    type: list
    elements: str
    required: true
  certificate_status:
    description:
      - The status the things' certificates are set to.
      - C(REVOKED) is final. C(INACTIVE) can be undone by an administrator with
        M(iotfleet.aws.iot_certificate); a C(REVOKED) certificate is never changed to C(INACTIVE).
    type: str
    default: REVOKED
    choices: [REVOKED, INACTIVE]
  quarantine_group:
    description:
      - The static thing group the revoked things are moved to (by the iotfleet roles,
        C(<prefix>_quarantine)). It must exist. Not used with O(delete=true).
    type: str
    required: true
  missing:
    description:
      - What to do with a name in O(things) for which no thing exists.
      - With V(fail), the module fails naming every such thing, before anything is written.
      - With V(ignore), such things are reported (RV(devices[].missing=true)) and the others are revoked.
      - A thing deleted by an earlier run with O(delete=true) is missing too; re-run those with V(ignore).
    type: str
    default: fail
    choices: [fail, ignore]
  delete:
    description:
      - After revoking, delete the things' certificates, then the things (their C(revoked_at) attribute
        and quarantine membership with them).
      - The certificates are deleted once they are no longer C(ACTIVE) and detached from their policies
        and from the thing; a certificate that another thing still uses makes the device fail.
    type: bool
    default: false
  drop_sessions:
    description:
      - Close each device's live MQTT session with iot-data C(DeleteConnection) (client id = thing name,
        C(cleanSession) and C(preventWillMessage) set). A device without a live session is fine.
      - In check mode nothing is asked; the step is listed for every device that would be newly revoked.
    type: bool
    default: true
  data_endpoint:
    description:
      - The iot-data endpoint for C(DeleteConnection), for example
        C(https://a1b2c3d4e5f6g7-ats.iot.eu-north-1.amazonaws.com).
      - By default O(endpoint_url) when it is set (a local stand-in serves every API on one address), otherwise
        C(https://) and the account's C(iot:Data-ATS) endpoint (DescribeEndpoint).
    type: str
  devices_table:
    description:
      - Name of the backend's DynamoDB devices table (by the iotfleet roles, C(<prefix>_devices)). When given, each
        device's row gets C(status=revoked) and, unless it has one, C(revoked_at) (epoch milliseconds), the way the
        backend's GraphQL mutation C(revokeDevice) writes them. A device without a row is left without one.
      - Leave it out when the backend is not deployed; see O(devices_table_missing) for a table that may not exist yet.
      - With O(devices_api), the rows are written through the backend's GraphQL API instead.
    type: str
  devices_table_missing:
    description:
      - What to do when O(devices_table) does not exist.
      - With V(fail), the module fails before anything is written.
      - With V(ignore), the backend counts as not deployed - nothing is written to a table, and RV(devices_table) is
        null. This is how playbooks/revoke.yml finds out whether the backend is deployed, without a task of its own.
    type: str
    default: fail
    choices: [fail, ignore]
  devices_api:
    description:
      - Name of the backend's AppSync GraphQL API (by the iotfleet roles, C(<prefix>_api)). With O(devices_table),
        each row is then written with the API's C(revokeDevice) mutation, signed with SigV4 by the module's AWS
        credentials, so that the API's C(onUpdateDevice) subscription (the dashboard) sees it; the table is still
        read directly (one C(BatchGetItem) per 100 devices).
      - When no API has this name, the module warns and writes the rows directly (C(UpdateItem), same expression).
    type: str
  rate_limits:
    description:
      - Requests per second per AWS API, over the defaults. The defaults are AWS's default quotas as the
        collection knows them - C(DeleteCertificate) 10, C(DeleteThing) 100, C(DescribeCertificate) 10,
        C(DescribeThing) 350, C(DescribeThingGroup) 100, C(DetachPolicy) 15, C(DetachThingPrincipal) 100,
        C(ListCertificates) 10, C(ListPrincipalThings) 10, C(ListTargetsForPolicy) 10, C(ListThingGroups) 10,
        C(ListThingGroupsForThing) 100, C(ListThingPrincipals) 10, C(ListThings) 10, C(ListThingsInThingGroup) 25,
        C(UpdateCertificate) 10, C(UpdateThing) 100 - and a cautious 10 for the APIs whose default quota it has not
        confirmed - C(DeleteConnection), C(DescribeEndpoint), C(ListAttachedPolicies), C(ListPolicies),
        C(UpdateThingGroupsForThing).
      - Revoking a device costs one C(UpdateCertificate) per certificate, so at the defaults about 10 devices a second.
      - Raise them when your account's quotas are higher; lower them when other clients share the quotas.
    type: dict
    default: {}
  max_workers:
    description:
      - How many devices are revoked at the same time (1 to 64).
    type: int
    default: 16
  wait_timeout:
    description:
      - How many seconds to wait, per device, for AWS to finish detaching the thing from its certificates.
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
- name: Revoke two boards
  iotfleet.aws.iot_device_revocation:
    things:
      - 4827E2E59190
      - 240AC4123456
    quarantine_group: "{{ iotfleet_prefix }}_quarantine"
    devices_table: "{{ iotfleet_prefix }}_devices"
    devices_api: "{{ iotfleet_prefix }}_api"
  register: revocation

- name: Name the boards revoked by this run
  ansible.builtin.debug:
    msg: "{{ revocation.devices | selectattr('newly_revoked') | map(attribute='thing_name') | list }}"

- name: Deactivate (not revoke) a board's certificates, tolerating names that no longer exist
  iotfleet.aws.iot_device_revocation:
    things: "{{ suspicious_boards }}"
    certificate_status: INACTIVE
    quarantine_group: iotfleet_quarantine
    missing: ignore

- name: Revoke a board and delete its thing and certificates
  iotfleet.aws.iot_device_revocation:
    things: [4827E2E59190]
    quarantine_group: iotfleet_quarantine
    delete: true
"""

RETURN = r"""
devices:
  description:
    - One entry per thing, in the order of O(things), also when the module fails.
    - In check mode, what would be done.
  returned: always
  type: list
  elements: dict
  contains:
    thing_name:
      description: The thing name.
      returned: always
      type: str
      sample: 4827E2E59190
    missing:
      description: Whether no such thing exists (only with O(missing=ignore); nothing else is done for it).
      returned: always
      type: bool
      sample: false
    certificates:
      description:
        - The certificates that were attached to the thing, with their status before and after the run.
        - Empty on a re-run, since the first run detached them.
      returned: always
      type: list
      elements: dict
      contains:
        certificate_id:
          description: The id of the certificate.
          type: str
          returned: always
          sample: 3f1c0e6e6f4b2a7d9c8e5b1a0d2f4e6c8a9b7d5e3f1a2c4e6b8d0f2a4c6e8b0d
        status_before:
          description: Its status before the run.
          type: str
          returned: always
          sample: ACTIVE
        status_after:
          description: Its status after the run (also when O(delete=true) deleted it afterwards).
          type: str
          returned: always
          sample: REVOKED
    steps:
      description:
        - What was done (in check mode, what would be done) for the device, in order - C(revoke_certificate ID)
          or C(deactivate_certificate ID), C(mark_revoked_in_devices_table), C(drop_session),
          C(detach_policy POLICY ID), C(detach_thing_principal ID), C(add_to_thing_group GROUP),
          C(remove_from_thing_group GROUP), C(set_revoked_at), C(delete_certificate ID), C(delete_thing).
        - C(drop_session) is listed when a live session was closed (in check mode, when the device would be
          newly revoked).
        - Empty when the device was already revoked.
      returned: always
      type: list
      elements: str
      sample: ["revoke_certificate 3f1c0e6e", "drop_session", "detach_policy iotfleet_device_policy 3f1c0e6e"]
    revoked_at:
      description:
        - When the device was revoked (ISO 8601, UTC), from its C(revoked_at) attribute; when this run revoked it
          (or, in check mode, would), the time of this run. Null for a missing thing.
      returned: always
      type: str
      sample: "2025-01-31T12:00:00Z"
    newly_revoked:
      description:
        - Whether this run revoked the device - it had an C(ACTIVE) certificate or no C(revoked_at) attribute.
          False on a re-run; one notification per device is sent for these.
      returned: always
      type: bool
      sample: true
    thing_groups:
      description: The thing groups of the thing after the run, sorted; empty when the thing was deleted or is missing.
      returned: always
      type: list
      elements: str
      sample: ["iotfleet_quarantine"]
    devices_table_status:
      description:
        - The device's status in the devices table after the run; null without a table (RV(devices_table)) or a row.
      returned: always
      type: str
      sample: revoked
    changed:
      description: Whether anything was changed (in check mode, would be) for the device.
      returned: always
      type: bool
      sample: true
    failed:
      description: Whether the device could not be revoked completely.
      returned: always
      type: bool
      sample: false
    error:
      description: Why the device could not be revoked completely; the steps done before it are in RV(devices[].steps).
      returned: when RV(devices[].failed=true)
      type: str
      sample: "Failed to detach the IoT policy: ..."
devices_table:
  description:
    - The devices table that was written (in check mode, would be); null without O(devices_table), or when it does not
      exist and O(devices_table_missing=ignore).
  returned: always
  type: str
  sample: iotfleet_devices
summary:
  description: Counts over all devices, the AWS requests made per API and the time taken.
  returned: always
  type: dict
  contains:
    devices:
      description: How many distinct things were given.
      returned: always
      type: int
      sample: 100
    newly_revoked:
      description: How many devices this run revoked.
      returned: always
      type: int
      sample: 100
    changed:
      description: How many devices were changed (and did not fail).
      returned: always
      type: int
      sample: 100
    unchanged:
      description: How many existing devices were already revoked.
      returned: always
      type: int
      sample: 0
    missing:
      description: How many things do not exist.
      returned: always
      type: int
      sample: 0
    failed:
      description: How many devices failed.
      returned: always
      type: int
      sample: 0
    seconds:
      description: Wall-clock seconds the revocation took.
      returned: always
      type: float
      sample: 10.4
    api_calls:
      description: HTTP requests sent per AWS API (retries included).
      returned: always
      type: dict
      sample: {"DescribeThing": 100, "UpdateCertificate": 100}
    throttled:
      description: Throttling errors AWS answered per API (each one was retried).
      returned: always
      type: dict
      sample: {}
"""

import http.client
import json
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from urllib.parse import urlsplit

try:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
except ImportError:
    pass  # AnsibleAWSModule reports the missing library.

from ansible_collections.amazon.aws.plugins.module_utils.botocore import get_aws_connection_info
from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.iotfleet.aws.plugins.module_utils.dynamodb import DynamoDBErrorHandler
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import GROUP_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IOT_THROTTLING_CODES
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import LIST_PAGE_SIZE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import THING_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTErrorHandler
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_certificate
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_connection
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import delete_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_certificate
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_endpoint
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import describe_thing_group
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import detach_iot_policy
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import detach_thing_principal
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import iot_retry_decorator
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_attached_policy_names
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_certificate_summaries
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_policy_target_arns
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_principal_things
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_group_member_names
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_group_names_for_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_thing_principals
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import list_things_with_attributes
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_certificate_status
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import update_thing_groups_for_thing
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import validate_name
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import AWS_IOT_DEFAULT_RATES
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import RateLimiter
from ansible_collections.iotfleet.aws.plugins.module_utils.ratelimit import merge_rate_limits

MAX_WORKERS = 64
# The APIs this module calls on AWS IoT and iot-data. Their default rate is AWS's default quota
# where the collection's table has it; the others are not in AWS's published tables as far as we
# checked, so they get a cautious rate rather than a guessed quota.
CAUTIOUS_RATE = 10.0
CALLED_APIS = (
    "DeleteCertificate",
    "DeleteConnection",
    "DeleteThing",
    "DescribeCertificate",
    "DescribeEndpoint",
    "DescribeThing",
    "DescribeThingGroup",
    "DetachPolicy",
    "DetachThingPrincipal",
    "ListAttachedPolicies",
    "ListCertificates",
    "ListPolicies",
    "ListPrincipalThings",
    "ListThingGroups",
    "ListThingGroupsForThing",
    "ListThingPrincipals",
    "ListThings",
    "ListTargetsForPolicy",
    "ListThingsInThingGroup",
    "UpdateCertificate",
    "UpdateThing",
    "UpdateThingGroupsForThing",
)
DEFAULT_RATES = {api: AWS_IOT_DEFAULT_RATES.get(api, CAUTIOUS_RATE) for api in CALLED_APIS}
# botocore's event names use the service id, hyphenized: "iot-data" is "iot-data-plane" there.
DATA_PLANE_EVENT_SERVICE = "iot-data-plane"
REVOKED_AT = "revoked_at"
REVOKED_AT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# AWS lets a thing without a thing type have at most this many attributes.
MAX_ATTRIBUTES_WITHOUT_TYPE = 3
# BatchGetItem takes at most this many keys a call.
BATCH_GET_LIMIT = 100
STATUS_STEP = {"REVOKED": "revoke_certificate", "INACTIVE": "deactivate_certificate"}
# Client-side buckets start full and save up one second's worth of requests, like AWS's own token
# buckets (and the sandbox's --throttle mode): the first second of a run is not wasted.
BURST_SECONDS = 1.0
# Seconds between two looks at a certificate's things while waiting for the detachment.
DETACH_POLL_INTERVAL = 1


class DeviceFailure(Exception):
    """One device cannot be revoked completely; the others go on."""


@dataclass
class Certificate:
    certificate_id: str
    certificate_arn: str
    status_before: str
    status_after: str = None
    policies: list = field(default_factory=list)

    def __post_init__(self):
        self.status_after = self.status_before

    def as_dict(self):
        return dict(
            certificate_id=self.certificate_id, status_before=self.status_before, status_after=self.status_after
        )


@dataclass
class DeviceResult:
    thing_name: str
    missing: bool = False
    certificates: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    revoked_at: str = None
    newly_revoked: bool = False
    thing_groups: list = field(default_factory=list)
    devices_table_status: str = None
    error: str = None
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)

    @property
    def changed(self):
        return bool(self.steps)

    def as_dict(self):
        result = dict(
            thing_name=self.thing_name,
            missing=self.missing,
            certificates=[cert.as_dict() for cert in self.certificates],
            steps=list(self.steps),
            revoked_at=self.revoked_at,
            newly_revoked=self.newly_revoked,
            thing_groups=list(self.thing_groups),
            devices_table_status=self.devices_table_status,
            changed=self.changed,
            failed=self.error is not None,
        )
        if self.error is not None:
            result["error"] = self.error
        return result


# The backend's devices table (DESIGN §2): key device_id, status, revoked_at in epoch milliseconds.


@DynamoDBErrorHandler.list_error_handler("describe the devices table")
def describe_table(client, name):
    return client.describe_table(TableName=name, aws_retry=True)["Table"]


@DynamoDBErrorHandler.common_error_handler("read the devices' rows in the devices table")
def get_device_rows(client, table, device_ids):
    """device_id -> {status, certificate_id} for the devices that have a row (None for an attribute it lacks)."""
    rows = {}
    for start in range(0, len(device_ids), BATCH_GET_LIMIT):
        request = {
            table: dict(
                Keys=[{"device_id": {"S": device_id}} for device_id in device_ids[start : start + BATCH_GET_LIMIT]],
                ConsistentRead=True,
                ProjectionExpression="#device_id, #status, #certificate_id",
                ExpressionAttributeNames={
                    "#device_id": "device_id",
                    "#status": "status",
                    "#certificate_id": "certificate_id",
                },
            )
        }
        while request:
            answer = client.batch_get_item(RequestItems=request, aws_retry=True)
            for row in answer["Responses"].get(table, []):
                rows[row["device_id"]["S"]] = dict(
                    status=row.get("status", {}).get("S"), certificate_id=row.get("certificate_id", {}).get("S")
                )
            # Keys DynamoDB did not get to (throughput); asked again, as its documentation says.
            request = answer.get("UnprocessedKeys") or {}
    return rows


@DynamoDBErrorHandler.common_error_handler("mark the device revoked in the devices table")
def mark_device_revoked(client, table, device_id, revoked_at_ms, certificate_id=None):
    """What the GraphQL mutation revokeDevice writes (files/graphql/resolvers), under the same condition."""
    update = "SET #status = :revoked, #revoked_at = if_not_exists(#revoked_at, :timestamp)"
    names = {"#status": "status", "#revoked_at": "revoked_at", "#device_id": "device_id"}
    values = {":revoked": {"S": "revoked"}, ":timestamp": {"N": str(revoked_at_ms)}}
    if certificate_id:
        update += ", #revoked_certificate_id = if_not_exists(#revoked_certificate_id, :certificate_id)"
        names["#revoked_certificate_id"] = "revoked_certificate_id"
        values[":certificate_id"] = {"S": certificate_id}
    client.update_item(
        TableName=table,
        Key={"device_id": {"S": device_id}},
        UpdateExpression=update,
        ConditionExpression="attribute_exists(#device_id)",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        aws_retry=True,
    )


class BackendError(Exception):
    """The GraphQL API refused or did not answer a mutation."""


REVOKE_DEVICE_MUTATION = (
    "mutation RevokeDevice($device_id: ID!, $timestamp: Float!, $certificate_id: String) "
    "{ revokeDevice(device_id: $device_id, timestamp: $timestamp, certificate_id: $certificate_id) "
    "{ device_id status } }"
)


class BackendWriter:
    """The backend's revokeDevice mutation, signed with SigV4 (IAM auth), one request per device.

    Through the API, not DynamoDB, so that AppSync's onUpdateDevice subscription (the dashboard) sees it.
    The credentials are resolved once per run; each request is signed on its own.
    """

    def __init__(self, url, region, credentials, limiter=None, timeout=30):
        self.url = url
        self.region = region
        self.credentials = credentials
        self.limiter = limiter
        self.timeout = timeout
        self._split = urlsplit(url)
        self._local = threading.local()

    def _connection(self):
        """A kept-alive connection per thread (a new connection per request costs far more than the request)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            host, port = self._split.hostname, self._split.port
            if self._split.scheme == "https":
                context = ssl.create_default_context()
                connection = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=context)
            else:
                connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _drop_connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None

    def post(self, document, variables):
        payload = json.dumps({"query": document, "variables": variables})
        request = AWSRequest(method="POST", url=self.url, data=payload, headers={"Content-Type": "application/json"})
        SigV4Auth(self.credentials, "appsync", self.region).add_auth(request)
        headers = dict(request.headers.items())
        path = self._split.path or "/"
        if self.limiter is not None:
            self.limiter.acquire("GraphQL")
        text = None
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request("POST", path, body=payload.encode(), headers=headers)
                response = connection.getresponse()
                text = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                # The server closed the kept-alive connection: once more on a new one.
                self._drop_connection()
                if attempt:
                    raise BackendError(f"the GraphQL API {self.url} is unreachable: {e}") from None
            except (http.client.HTTPException, OSError) as e:
                self._drop_connection()
                raise BackendError(f"the GraphQL API {self.url} is unreachable: {e}") from None
        if response.getheader("Connection", "").lower() == "close":
            self._drop_connection()
        try:
            return json.loads(text)
        except ValueError:
            raise BackendError(
                f"the GraphQL API {self.url} answered HTTP {response.status}, not JSON: {text[:300]!r}"
            ) from None

    def revoke(self, device_id, timestamp, certificate_id=None):
        variables = dict(device_id=device_id, timestamp=timestamp, certificate_id=certificate_id)
        answer = self.post(REVOKE_DEVICE_MUTATION, variables)
        errors = answer.get("errors") or []
        if errors or not (answer.get("data") or {}).get("revokeDevice"):
            messages = "; ".join(str(error.get("message")) for error in errors) or "no device returned"
            raise BackendError(f"the GraphQL mutation revokeDevice failed: {messages}")


# Listings for the whole run (O(pages)), instead of one request per device.


@IoTErrorHandler.common_error_handler("list the thing groups")
@AWSRetry.jittered_backoff(catch_extra_error_codes=IOT_THROTTLING_CODES)
def list_all_thing_group_names(client):
    """Every thing group of the account and region, nested ones included (ListThingGroups)."""
    paginator = client.get_paginator("list_thing_groups")
    pages = paginator.paginate(PaginationConfig=dict(PageSize=LIST_PAGE_SIZE))
    return [group["groupName"] for group in pages.build_full_result().get("thingGroups", [])]


@IoTErrorHandler.common_error_handler("list the IoT policies")
@AWSRetry.jittered_backoff(catch_extra_error_codes=IOT_THROTTLING_CODES)
def list_policy_names(client):
    """Every IoT policy of the account and region (ListPolicies)."""
    paginator = client.get_paginator("list_policies")
    pages = paginator.paginate(PaginationConfig=dict(PageSize=LIST_PAGE_SIZE))
    return [policy["policyName"] for policy in pages.build_full_result().get("policies", [])]


def now_text():
    return datetime.now(UTC).strftime(REVOKED_AT_FORMAT)


def epoch_ms(revoked_at):
    """The attribute's time in epoch milliseconds; an attribute in another format counts as now."""
    try:
        moment = datetime.strptime(revoked_at, REVOKED_AT_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        moment = datetime.now(UTC)
    return int(moment.timestamp() * 1000)


def error_text(e):
    if isinstance(e, AnsibleAWSError):
        return f"{e.message}: {e.exception}" if e.exception is not None else e.message
    return str(e)


class Revocation:
    """Revokes things; `iot` (and `data`, `dynamodb` when used) are retrying clients with a RateLimiter installed.

    `backend`, when given, writes the devices table through the GraphQL API (BackendWriter); otherwise
    the row is written with DynamoDB UpdateItem (the same expression as the revokeDevice resolver).
    """

    def __init__(self, iot, params, check_mode, data=None, dynamodb=None, devices_table=None, backend=None):
        self.iot = iot
        self.data = data
        self.dynamodb = dynamodb
        self.devices_table = devices_table
        self.backend = backend
        self.params = params
        self.check_mode = check_mode
        self.table_rows = {}
        self.certificate_statuses = {}
        self.thing_groups = {}
        # Called on the main thread when there is something to revoke: the iot-data client and the BackendWriter
        # (or None: then the table is written directly).
        self.data_factory = None
        self.backend_factory = None
        # certificate ARN -> policy names, when the run listed every policy's targets (read_policies).
        self.certificate_policies = None
        self._dynamic_groups = {}
        self._groups_lock = threading.Lock()

    # Reading.

    def read_certificates(self, name):
        """The certificates attached to the thing, with their status (from the run's ListCertificates)."""
        principals = list_thing_principals(self.iot, name)
        if principals is None:
            raise DeviceFailure("the thing was deleted while it was being revoked")
        certificates = []
        for arn in sorted(principals):
            if ":cert/" not in arn:
                continue
            certificate_id = arn.rsplit("/", 1)[-1]
            status = self.certificate_statuses.get(certificate_id)
            if status is None:
                # Made after the run listed the certificates.
                described = describe_certificate(self.iot, certificate_id)
                if described is None:
                    continue
                status = described["status"]
            certificates.append(Certificate(certificate_id, arn, status))
        return certificates

    def is_dynamic_group(self, group):
        """Dynamic groups are kept: their query decides membership. Looked up once per group and run."""
        with self._groups_lock:
            if group not in self._dynamic_groups:
                described = describe_thing_group(self.iot, group) or {}
                self._dynamic_groups[group] = bool(described.get("queryString"))
            return self._dynamic_groups[group]

    def is_settled(self, thing):
        """Already revoked, as far as the run's listings tell: revoked_at recorded, in the quarantine group and
        in no other static group, the devices table (if any) says revoked. Whether a usable certificate is
        attached again is checked for all settled devices at once (attached_things)."""
        name = thing["thingName"]
        if REVOKED_AT not in (thing.get("attributes") or {}) or self.params["delete"]:
            return False
        groups = self.thing_groups.get(name, [])
        quarantine = self.params["quarantine_group"]
        if quarantine not in groups or any(g != quarantine and not self.is_dynamic_group(g) for g in groups):
            return False
        row = self.table_rows.get(name)
        return row is None or row.get("status") == "revoked"

    def attached_things(self, names, pool):
        """Which of `names` have a certificate attached that could connect (ACTIVE), or, on the per-thing path,
        any principal at all.

        Whichever is fewer requests: one ListPrincipalThings per ACTIVE certificate of the account, or one
        ListThingPrincipals per thing. A REVOKED or INACTIVE certificate re-attached by hand is only noticed on the
        per-thing path; it cannot connect, and it is noticed once re-activated.
        """
        if not names:
            return set()
        active = [c for c, status in self.certificate_statuses.items() if status == "ACTIVE"]
        if len(active) < len(names):
            arns = [self.certificate_arns[c] for c in active]
            found = set()
            for things in pool.map(lambda arn: list_principal_things(self.iot, arn), arns):
                found.update(things)
            return found & set(names)
        principals = pool.map(lambda name: list_thing_principals(self.iot, name), names)
        return {name for name, attached in zip(names, principals, strict=True) if attached}

    # Writing, one device at a time.

    def write(self, result, step, call, *args, **kwargs):
        """Make one write (not in check mode) and record it as done."""
        if not self.check_mode:
            call(*args, **kwargs)
        result.steps.append(step)

    def revoke(self, thing):
        name = thing["thingName"]
        result = DeviceResult(name)
        try:
            self.revoke_device(thing, result)
        except (DeviceFailure, AnsibleAWSError, BackendError) as e:
            result.error = error_text(e)
        return result

    def settled(self, thing):
        """The result of a device that is already revoked: nothing to do."""
        name = thing["thingName"]
        result = DeviceResult(name)
        result.revoked_at = thing["attributes"][REVOKED_AT]
        result.thing_groups = sorted(self.thing_groups.get(name, []))
        result.devices_table_status = "revoked" if name in self.table_rows else None
        return result

    def mark_revoked(self, result, name, certificates):
        row = self.table_rows.get(name)
        if row is None or row.get("status") == "revoked":
            return
        # The certificate the backend knows the device by, if it is one of those revoked; else the first revoked.
        ids = [c.certificate_id for c in certificates]
        certificate_id = row.get("certificate_id") if row.get("certificate_id") in ids else (ids[0] if ids else None)
        timestamp = epoch_ms(result.revoked_at)
        if self.backend is not None:
            self.write(result, "mark_revoked_in_devices_table", self.backend.revoke, name, timestamp, certificate_id)
        else:
            step = "mark_revoked_in_devices_table"
            self.write(
                result, step, mark_device_revoked, self.dynamodb, self.devices_table, name, timestamp, certificate_id
            )

    def revoke_device(self, thing, result):
        name = thing["thingName"]
        attributes = thing.get("attributes") or {}
        certificates = self.read_certificates(name)
        result.certificates = certificates
        result.newly_revoked = REVOKED_AT not in attributes or any(c.status_before == "ACTIVE" for c in certificates)
        result.revoked_at = now_text() if result.newly_revoked else attributes[REVOKED_AT]
        # Certificates first: from here on the device cannot open a connection, whatever happens next.
        self.ensure_certificate_status(certificates, result)
        groups = sorted(self.thing_groups.get(name, []))
        table_status = self.table_rows.get(name, {}).get("status")
        has_row = name in self.table_rows
        # Before the session is dropped: the backend then ignores the disconnection event it causes
        # instead of reporting it as an ordinary one.
        self.mark_revoked(result, name, certificates)
        result.devices_table_status = "revoked" if has_row else None
        session_error = self.drop_session(name, result)
        for cert in certificates:
            if self.certificate_policies is not None:
                cert.policies = sorted(self.certificate_policies.get(cert.certificate_arn, []))
            else:
                cert.policies = sorted(list_attached_policy_names(self.iot, cert.certificate_arn))
        result.before = self.view(certificates, groups, attributes.get(REVOKED_AT), table_status, before=True)
        self.detach(name, certificates, result)
        if not self.params["delete"]:
            result.thing_groups = self.ensure_quarantine(name, groups, result)
        # AWS detaches asynchronously; waited for after the quarantine so that the two overlap.
        if certificates and not self.check_mode:
            self.wait_for_detachment(name, certificates)
        if session_error:
            # The device cannot connect again, but it may still be connected: it is not done, so
            # neither revoked_at (which ends a revocation) nor the deletion happens before a re-run.
            raise DeviceFailure(
                f"{session_error}. The device can no longer connect (its certificates are no longer ACTIVE and are "
                f"detached); run again to drop the session and finish."
            )
        if self.params["delete"]:
            for cert in certificates:
                step = f"delete_certificate {cert.certificate_id}"
                self.write(result, step, delete_certificate, self.iot, cert.certificate_id)
            self.write(result, "delete_thing", delete_thing, self.iot, name)
            result.after = {}
            return
        self.ensure_revoked_at(thing, result)
        result.after = self.view(certificates, result.thing_groups, result.revoked_at, result.devices_table_status)

    def view(self, certificates, groups, revoked_at, table_status, before=False):
        """The device as --diff shows it."""
        shown = dict(
            certificates={
                c.certificate_id: dict(
                    status=c.status_before if before else c.status_after,
                    policies=c.policies if before else [],
                    attached_to_thing=before,
                )
                for c in certificates
            },
            thing_groups=groups,
            revoked_at=revoked_at,
        )
        if self.devices_table:
            shown["devices_table_status"] = table_status
        return shown

    def ensure_certificate_status(self, certificates, result):
        target = self.params["certificate_status"]
        for cert in certificates:
            # REVOKED is final: it is neither reactivated nor turned into INACTIVE.
            if cert.status_before in (target, "REVOKED"):
                continue
            step = f"{STATUS_STEP[target]} {cert.certificate_id}"
            self.write(result, step, update_certificate_status, self.iot, cert.certificate_id, target)
            cert.status_after = target

    def drop_session(self, name, result):
        """Close the device's live session; returns why that failed, or None."""
        if not self.params["drop_sessions"]:
            return None
        if self.check_mode:
            # Whether a session is live is only known by closing it; a device whose certificates are
            # no longer ACTIVE and already carries revoked_at cannot have opened one since.
            if result.newly_revoked:
                result.steps.append("drop_session")
            return None
        try:
            if delete_connection(self.data, name):
                result.steps.append("drop_session")
        except AnsibleAWSError as e:
            return error_text(e)
        return None

    def detach(self, name, certificates, result):
        for cert in certificates:
            for policy in cert.policies:
                step = f"detach_policy {policy} {cert.certificate_id}"
                self.write(result, step, detach_iot_policy, self.iot, policy, cert.certificate_arn)
        for cert in certificates:
            step = f"detach_thing_principal {cert.certificate_id}"
            self.write(result, step, detach_thing_principal, self.iot, name, cert.certificate_arn)

    def wait_for_detachment(self, name, certificates):
        """AWS detaches a principal from a thing asynchronously: wait until no certificate lists the thing."""
        deadline = time.monotonic() + self.params["wait_timeout"]
        pending = list(certificates)
        while True:
            pending = [c for c in pending if name in list_principal_things(self.iot, c.certificate_arn)]
            if not pending:
                return
            if time.monotonic() >= deadline:
                ids = [c.certificate_id for c in pending]
                raise DeviceFailure(
                    f"certificates {ids} were still attached to the thing after {self.params['wait_timeout']} s "
                    f"(AWS detaches asynchronously); run again or raise wait_timeout."
                )
            time.sleep(DETACH_POLL_INTERVAL)

    def ensure_quarantine(self, name, groups, result):
        """The quarantine group and no other static group; returns the groups after."""
        quarantine = self.params["quarantine_group"]
        to_add = [] if quarantine in groups else [quarantine]
        to_remove = [g for g in groups if g != quarantine and not self.is_dynamic_group(g)]
        if to_add or to_remove:
            if not self.check_mode:
                update_thing_groups_for_thing(self.iot, name, to_add, to_remove)
            result.steps.extend(f"add_to_thing_group {g}" for g in to_add)
            result.steps.extend(f"remove_from_thing_group {g}" for g in to_remove)
        return sorted((set(groups) | {quarantine}) - set(to_remove))

    def ensure_revoked_at(self, thing, result):
        attributes = thing.get("attributes") or {}
        if attributes.get(REVOKED_AT) == result.revoked_at:
            return
        if (
            REVOKED_AT not in attributes
            and not thing.get("thingTypeName")
            and len(attributes) >= MAX_ATTRIBUTES_WITHOUT_TYPE
        ):
            raise DeviceFailure(
                f"the thing has no thing type and already {len(attributes)} attributes ({sorted(attributes)}), AWS's "
                f"maximum, so revoked_at could not be recorded; everything else was done. Remove an attribute or "
                f"give the thing a thing type, then run again."
            )
        payload = dict(attributes={REVOKED_AT: result.revoked_at}, merge=True)
        self.write(result, "set_revoked_at", update_thing, self.iot, thing["thingName"], attributePayload=payload)

    def read_things(self, names, pool):
        """name -> the thing (thingName, attributes, thingTypeName) or None: one ListThings listing of the account
        (paged, 250 a page), and DescribeThing for a name it does not hold (made since, or missing)."""
        listed = {thing["thingName"]: thing for thing in list_things_with_attributes(self.iot)}
        unlisted = [name for name in names if name not in listed]
        described = dict(zip(unlisted, pool.map(lambda name: describe_thing(self.iot, name), unlisted), strict=True))
        return {name: listed.get(name) or described.get(name) for name in names}

    def read_groups(self, names, pool):
        """name -> its static and dynamic thing groups: the members of every group (ListThingGroups, then
        ListThingsInThingGroup per group, paged) when the account has no more groups than there are names,
        else ListThingGroupsForThing per name."""
        groups = list_all_thing_group_names(self.iot)
        if len(groups) > len(names):
            found = pool.map(lambda name: list_thing_group_names_for_thing(self.iot, name) or [], names)
            return dict(zip(names, found, strict=True))
        wanted = set(names)
        membership = {name: [] for name in names}
        members = pool.map(lambda group: list_thing_group_member_names(self.iot, group) or [], groups)
        for group, things in zip(groups, members, strict=True):
            for thing in wanted.intersection(things):
                membership[thing].append(group)
        return membership

    def make_clients(self, pending):
        if self.data is None and self.data_factory is not None:
            self.data = self.data_factory()
        rows = [self.table_rows.get(thing["thingName"]) for thing in pending]
        if self.backend is None and self.backend_factory is not None:
            if any(row is not None and row.get("status") != "revoked" for row in rows):
                self.backend = self.backend_factory()

    def read_policies(self, devices, pool):
        """The policies of every certificate at once (ListPolicies, then ListTargetsForPolicy per policy, paged) when
        the account has no more policies than there are devices to revoke; otherwise each certificate's own
        ListAttachedPolicies is asked later."""
        policies = list_policy_names(self.iot)
        if len(policies) > devices:
            return
        attached = {}
        targets = pool.map(lambda policy: list_policy_target_arns(self.iot, policy) or [], policies)
        for policy, arns in zip(policies, targets, strict=True):
            for arn in arns:
                attached.setdefault(arn, []).append(policy)
        self.certificate_policies = attached

    def run(self, names, max_workers):
        """Look every thing up, then revoke the existing ones; returns (DeviceResults in order, missing names).

        Reading costs a few listings (things, thing groups and their members, certificates, devices table);
        the 10/s APIs are only asked about devices that are not already revoked (see attached_things).
        """
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            listed = pool.submit(list_certificate_summaries, self.iot)
            things = self.read_things(names, pool)
            missing = [name for name in names if things[name] is None]
            if missing and self.params["missing"] == "fail":
                return None, missing
            existing = [things[name] for name in names if things[name] is not None]
            found = [thing["thingName"] for thing in existing]
            self.thing_groups = self.read_groups(found, pool) if found else {}
            if self.devices_table and found:
                self.table_rows = get_device_rows(self.dynamodb, self.devices_table, found)
            summaries = listed.result()
            self.certificate_statuses = {c["certificateId"]: c["status"] for c in summaries}
            self.certificate_arns = {c["certificateId"]: c["certificateArn"] for c in summaries}
            candidates = [thing for thing in existing if self.is_settled(thing)]
            attached = self.attached_things([thing["thingName"] for thing in candidates], pool)
            settled = {thing["thingName"] for thing in candidates if thing["thingName"] not in attached}
            pending = [thing for thing in existing if thing["thingName"] not in settled]
            if pending:
                self.read_policies(len(pending), pool)
                self.make_clients(pending)
            results = {thing["thingName"]: self.settled(thing) for thing in existing if thing["thingName"] in settled}
            results.update(zip((thing["thingName"] for thing in pending), pool.map(self.revoke, pending), strict=True))
        return [results.get(name) or DeviceResult(name, missing=True) for name in names], missing


# Checks before any AWS call, then before any write.


def unique_names(module):
    names = list(dict.fromkeys(module.params["things"]))
    for name in names:
        validate_name(module, "things", name, THING_NAME_RE, "thing name")
    return names


def rate_limits(module):
    try:
        return merge_rate_limits(DEFAULT_RATES, module.params["rate_limits"])
    except ValueError as e:
        module.fail_json(msg=str(e))


def validate(module):
    params = module.params
    validate_name(module, "quarantine_group", params["quarantine_group"], GROUP_NAME_RE, "thing group name")
    if not 1 <= params["max_workers"] <= MAX_WORKERS:
        module.fail_json(msg=f"max_workers: must be between 1 and {MAX_WORKERS}, got {params['max_workers']}.")
    if params["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout: must be 0 or more seconds.")
    return unique_names(module)


def check_setup(module, iot, dynamodb):
    """Fail before any write when the quarantine group or the devices table cannot be used; returns the table."""
    params = module.params
    group = params["quarantine_group"]
    if not params["delete"]:
        described = describe_thing_group(iot, group)
        if described is None:
            module.fail_json(
                msg=(
                    f"quarantine_group: no thing group {group!r} in this account/region; create it first "
                    f"(playbooks/cloud.yml, or iotfleet.aws.iot_thing_group). Nothing was changed."
                )
            )
        if described.get("queryString"):
            module.fail_json(
                msg=f"quarantine_group: {group!r} is a dynamic thing group; things can only be moved to a static one."
            )
    table = params["devices_table"]
    if not table or describe_table(dynamodb, table) is not None:
        return table
    if params["devices_table_missing"] == "ignore":
        return None
    module.fail_json(
        msg=(
            f"devices_table: no DynamoDB table {table!r} in this account/region. Leave the option out when the "
            f"backend is not deployed, or set devices_table_missing=ignore. Nothing was changed."
        )
    )


def data_plane_client(module, iot, config):
    """The iot-data client: data_endpoint, else endpoint_url, else the account's iot:Data-ATS endpoint."""
    endpoint = module.params["data_endpoint"]
    if not endpoint:
        _region, endpoint, _connection = get_aws_connection_info(module)
    if not endpoint:
        endpoint = "https://" + describe_endpoint(iot, "iot:Data-ATS")
    return module.client("iot-data", retry_decorator=iot_retry_decorator(), endpoint=endpoint, config=config)


def backend_writer(module, limiter):
    """The revokeDevice mutation of the API named devices_api, or None (a direct write) when there is no such API."""
    # Imported here: module_utils.appsync brings ansible's urls (and cryptography) along, 0.1-0.2 s of start-up
    # that a run without a table row to write does not need.
    from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import AnsibleAppSyncError
    from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import appsync_client
    from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import list_graphql_apis
    from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import signing_credentials

    name = module.params["devices_api"]
    try:
        matches = [api for api in list_graphql_apis(appsync_client(module)) if api["name"] == name]
    except AnsibleAppSyncError as e:
        module.fail_json_aws_error(e)
    if not matches:
        module.warn(
            f"devices_api: no AppSync API named {name!r}; the devices table is written directly (no onUpdateDevice "
            f"subscription fires)."
        )
        return None
    if len(matches) > 1:
        module.fail_json(msg=f"devices_api: {len(matches)} AppSync APIs are named {name!r}; nothing was changed.")
    region, credentials = signing_credentials(module)
    if credentials is None:
        module.fail_json(msg="devices_api: no AWS credentials to sign the GraphQL requests with; nothing was changed.")
    return BackendWriter(matches[0]["uris"]["GRAPHQL"], region, credentials, limiter)


def missing_message(missing):
    return (
        f"things: no thing named {', '.join(missing)} in this account/region; nothing was changed. Check the names "
        f"(a board's thing name is its base MAC address, 12 upper-case hex digits), or set missing=ignore to revoke "
        f"the others and report these as missing (a thing deleted by an earlier run with delete=true is missing too)."
    )


def summarize(results, seconds, limiter):
    present = [r for r in results if not r.missing]
    calls = limiter.summary()
    return dict(
        devices=len(results),
        newly_revoked=sum(1 for r in present if r.newly_revoked and r.error is None),
        changed=sum(1 for r in present if r.changed and r.error is None),
        unchanged=sum(1 for r in present if not r.changed and r.error is None),
        missing=len(results) - len(present),
        failed=sum(1 for r in present if r.error is not None),
        seconds=round(seconds, 3),
        api_calls=calls["calls"],
        throttled=calls["throttled"],
    )


def main():
    argument_spec = dict(
        things=dict(type="list", elements="str", required=True),
        certificate_status=dict(type="str", default="REVOKED", choices=["REVOKED", "INACTIVE"]),
        quarantine_group=dict(type="str", required=True),
        missing=dict(type="str", default="fail", choices=["fail", "ignore"]),
        delete=dict(type="bool", default=False),
        drop_sessions=dict(type="bool", default=True),
        data_endpoint=dict(type="str"),
        devices_table=dict(type="str"),
        devices_table_missing=dict(type="str", default="fail", choices=["fail", "ignore"]),
        devices_api=dict(type="str"),
        rate_limits=dict(type="dict", default={}),
        max_workers=dict(type="int", default=16),
        wait_timeout=dict(type="int", default=60),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    names = validate(module)
    limiter = RateLimiter(rate_limits(module), burst_seconds=BURST_SECONDS)
    # One HTTP connection per worker, and a few spare.
    config = dict(max_pool_connections=params["max_workers"] + 4)
    iot = module.client("iot", retry_decorator=iot_retry_decorator(), config=config)
    limiter.install(iot)
    dynamodb = None
    if params["devices_table"]:
        dynamodb = module.client("dynamodb", retry_decorator=AWSRetry.jittered_backoff(), config=config)
        limiter.install(dynamodb, service="dynamodb")
    started = time.monotonic()
    try:
        table = check_setup(module, iot, dynamodb)

        # Made only when a device is to be revoked (not on a no-change re-run), on this thread.
        def make_data():
            data = data_plane_client(module, iot, config)
            limiter.install(data, service=DATA_PLANE_EVENT_SERVICE)
            return data

        revocation = Revocation(iot, params, module.check_mode, dynamodb=dynamodb, devices_table=table)
        if params["drop_sessions"] and not module.check_mode:
            revocation.data_factory = make_data
        if table and params["devices_api"] and not module.check_mode:
            revocation.backend_factory = lambda: backend_writer(module, limiter)
        results, missing = revocation.run(names, params["max_workers"])
    except AnsibleAWSError as e:
        module.fail_json_aws_error(e)
    if results is None:
        module.fail_json(msg=missing_message(missing), missing=missing)

    result = dict(
        changed=any(r.changed for r in results),
        devices=[r.as_dict() for r in results],
        devices_table=table,
        summary=summarize(results, time.monotonic() - started, limiter),
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
            msg=(
                f"{len(failed)} of {len(results)} devices could not be revoked completely (the others were; a re-run "
                f"completes them): {details}"
            ),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
