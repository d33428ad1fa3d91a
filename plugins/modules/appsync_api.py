#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: appsync_api
version_added: 0.1.0
short_description: Manage an AWS AppSync GraphQL API with its schema, data sources, resolvers and API key
description:
  - Creates, updates and deletes an AWS AppSync GraphQL API as one unit; its authentication modes,
    logging, tags, schema, data sources, unit resolvers (VTL mapping templates) and an API key that
    is renewed before it expires.
  - The API is found by its name. AppSync allows two APIs with the same name; when there are two,
    the module fails and names their ids instead of guessing.
  - The schema is compared with the live one (C(GetIntrospectionSchema), SDL) by meaning, not by
    text. Layout, commas, comments, descriptions, the order of definitions, a C(schema) block with
    the default root type names and declarations of AppSync's own scalars and directives do not count
    as a change. A change of descriptions alone is therefore not applied. A changed schema is sent
    with C(StartSchemaCreation) and the module waits until AppSync reports success, or fails with
    AppSync's error details.
  - Every input is checked before anything is written, including that each resolver's data source is
    listed in O(data_sources) (or, when O(data_sources) is omitted or not purged, exists on the API),
    and, when the schema is known, that each resolver's type and field are in it.
  - Order of writes, so that nothing refers to something missing; the API and its settings, the
    schema, data sources created or updated, resolvers created, updated or deleted, data sources
    deleted, the API key.
options:
  name:
    description:
      - The name of the GraphQL API; 1 to 65 letters, digits, spaces, C(_) or C(-).
    type: str
    required: true
  state:
    description:
      - Whether the API should exist. V(absent) deletes the API with everything it holds.
    type: str
    default: present
    choices: [present, absent]
  authentication_type:
    description:
      - The default authentication mode of the API.
      - Modes that need a configuration of their own (Cognito user pools, OIDC, Lambda) are not supported.
    type: str
    default: AWS_IAM
    choices: [AWS_IAM, API_KEY]
  additional_authentication_providers:
    description:
      - Further authentication modes, set exactly to this list (an empty list removes them all).
      - When omitted, the API's additional modes are left as they are.
    type: list
    elements: str
    choices: [AWS_IAM, API_KEY]
  log_config:
    description:
      - Field-level logging to CloudWatch Logs. When omitted, the API's logging is left as it is.
    type: dict
    suboptions:
      field_log_level:
        description: Which fields are logged.
        type: str
        required: true
        choices: [NONE, ERROR, INFO, DEBUG, ALL]
      cloudwatch_logs_role_arn:
        description: The IAM role AppSync assumes to write to CloudWatch Logs.
        type: str
        required: true
      exclude_verbose_content:
        description: Leave headers, context and evaluated mapping templates out of the logs.
        type: bool
        default: false
  schema:
    description:
      - The GraphQL schema, as SDL text (for example from C(lookup('ansible.builtin.file', 'schema.graphql'))).
      - When omitted, the API's schema is left as it is.
    type: str
  data_sources:
    description:
      - The data sources of the API. Each is created, or updated when it differs.
      - When omitted, the API's data sources are left as they are.
    type: list
    elements: dict
    suboptions:
      name:
        description: The name of the data source; a letter or C(_), then letters, digits or C(_).
        type: str
        required: true
      type:
        description: The kind of data source.
        type: str
        required: true
        choices: [AMAZON_DYNAMODB, AWS_LAMBDA, NONE]
      description:
        description: A description of the data source.
        type: str
      table_name:
        description: The DynamoDB table. Required with O(data_sources[].type=AMAZON_DYNAMODB).
        type: str
      table_region:
        description:
          - The region of the DynamoDB table. Defaults to the region of the API (O(region)).
        type: str
      function_arn:
        description: The ARN of the Lambda function. Required with O(data_sources[].type=AWS_LAMBDA).
        type: str
      service_role_arn:
        description:
          - The IAM role AppSync assumes to reach the table or the function.
          - Required with V(AMAZON_DYNAMODB) and V(AWS_LAMBDA); not allowed with V(NONE).
        type: str
  purge_data_sources:
    description:
      - Delete data sources of the API that are not in O(data_sources) (after the resolvers that used them).
      - Only applies when O(data_sources) is given.
    type: bool
    default: true
  resolvers:
    description:
      - The unit resolvers of the API, with VTL request and response mapping templates. Each is
        created, or updated when its data source or a template differs (templates are compared
        exactly). Read template files with a lookup; the module takes their text.
      - When omitted, the API's resolvers are left as they are.
    type: list
    elements: dict
    suboptions:
      type_name:
        description: The GraphQL type, such as C(Query), C(Mutation) or C(Device).
        type: str
        required: true
      field_name:
        description: The field of that type the resolver resolves.
        type: str
        required: true
      data_source:
        description: The name of the data source the resolver uses.
        type: str
        required: true
      request_template:
        description: The VTL request mapping template.
        type: str
        required: true
      response_template:
        description: The VTL response mapping template.
        type: str
        required: true
  purge_resolvers:
    description:
      - Delete resolvers of the API that are not in O(resolvers). Only applies when O(resolvers) is given.
      - Resolvers are looked for on the object types of the live schema, of O(schema) and of O(resolvers).
    type: bool
    default: true
  api_key:
    description:
      - Keep a valid API key. Requires V(API_KEY) among the API's authentication modes.
      - When no key expires more than O(api_key.renew_before_days) from now, a new key valid for
        O(api_key.validity_days) is created. Older keys that are still valid are kept, so clients
        using them keep working until they expire; expired keys are deleted.
      - The key id returned in RV(api_key.id) is the secret clients send; run the task with
        C(no_log=true) and keep it out of logs. It never appears in the diff.
      - When omitted, the API's keys are left as they are and RV(api_key) is not returned.
    type: dict
    suboptions:
      description:
        description: The description of the key. The current key's description is updated when it differs.
        type: str
      validity_days:
        description: How long a new key is valid, 1 to 365 days (AWS's limits).
        type: int
        default: 365
      renew_before_days:
        description:
          - Create a new key when the current one expires within this many days.
          - Less than O(api_key.validity_days).
        type: int
        default: 30
  wait_timeout:
    description: How many seconds to wait for AppSync to apply a new schema.
    type: int
    default: 300
notes:
  - The key id in RV(api_key.id) is a secret that the module cannot hide from the task result; use C(no_log=true).
  - In check mode, the returned API shows AWS unchanged; the diff shows what would change.
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: The fleet's GraphQL API, IAM by default and a read-only API key for the dashboard
  iotfleet.aws.appsync_api:
    name: "{{ iotfleet_prefix }}-api"
    authentication_type: AWS_IAM
    additional_authentication_providers: [API_KEY]
    schema: "{{ lookup('ansible.builtin.file', 'graphql/schema.graphql') }}"
    data_sources:
      - name: telemetry
        type: AMAZON_DYNAMODB
        table_name: "{{ iotfleet_prefix }}-telemetry"
        service_role_arn: "{{ appsync_role.iam_role.arn }}"
      - name: devices
        type: AMAZON_DYNAMODB
        table_name: "{{ iotfleet_prefix }}-devices"
        service_role_arn: "{{ appsync_role.iam_role.arn }}"
    resolvers:
      - type_name: Query
        field_name: getDevice
        data_source: devices
        request_template: "{{ lookup('ansible.builtin.file', 'graphql/Query.getDevice.req.vtl') }}"
        response_template: "{{ lookup('ansible.builtin.file', 'graphql/Query.getDevice.res.vtl') }}"
    api_key:
      description: dashboard (read only)
      validity_days: 365
      renew_before_days: 30
    tags:
      project: iotfleet
  no_log: true  # the result carries the API key
  register: graphql

- name: Delete the API
  iotfleet.aws.appsync_api:
    name: "{{ iotfleet_prefix }}-api"
    state: absent
"""

RETURN = r"""
api:
  description:
    - The API as it is in AWS after the task; empty when it does not exist (after O(state=absent),
      or in check mode before it is created).
  returned: always
  type: dict
  contains:
    api_id:
      description: The id of the API.
      type: str
      returned: when the API exists
      sample: 4cx7ekkf5fdqdl5pjxhxgsnjzi
    arn:
      description: The ARN of the API.
      type: str
      returned: when the API exists
      sample: arn:aws:appsync:eu-north-1:123456789012:apis/4cx7ekkf5fdqdl5pjxhxgsnjzi
    name:
      description: The name of the API.
      type: str
      returned: when the API exists
      sample: iotfleet-api
    uris:
      description: The endpoints of the API, keyed C(GRAPHQL) and C(REALTIME) as AWS names them.
      type: dict
      returned: when the API exists
      sample: {"GRAPHQL": "https://abc.appsync-api.eu-north-1.amazonaws.com/graphql",
               "REALTIME": "wss://abc.appsync-realtime-api.eu-north-1.amazonaws.com/graphql"}
    authentication_type:
      description: The default authentication mode.
      type: str
      returned: when the API exists
      sample: AWS_IAM
    additional_authentication_providers:
      description: The additional authentication modes.
      type: list
      elements: str
      returned: when the API exists
      sample: [API_KEY]
    log_config:
      description: Field-level logging, or null when it is off.
      type: dict
      returned: when the API exists
      sample: {"field_log_level": "ERROR", "cloudwatch_logs_role_arn": "arn:aws:iam::123456789012:role/logs",
               "exclude_verbose_content": true}
    tags:
      description: The tags of the API.
      type: dict
      returned: when the API exists
      sample: {"project": "iotfleet"}
api_key:
  description:
    - The current API key (the one that expires last); empty when there is none yet.
    - C(id) is the secret that clients send in the C(x-api-key) header; keep it out of logs (C(no_log=true)).
  returned: when O(api_key) is given
  type: dict
  contains:
    id:
      description: The API key, a secret.
      type: str
      returned: when a key exists
      sample: da2-abcdefghijklmnopqrstuvwxyz
    description:
      description: The description of the key.
      type: str
      returned: when a key exists
      sample: dashboard (read only)
    expires:
      description: When the key expires, in seconds since the epoch (AWS rounds it down to the hour).
      type: int
      returned: when a key exists
      sample: 1767225600
data_sources:
  description: The data sources of the API, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name of the data source.
      type: str
      returned: always
      sample: telemetry
    type:
      description: The kind of data source.
      type: str
      returned: always
      sample: AMAZON_DYNAMODB
    arn:
      description: The ARN of the data source.
      type: str
      returned: always
      sample: arn:aws:appsync:eu-north-1:123456789012:apis/4cx7ekkf5fdqdl5pjxhxgsnjzi/datasources/telemetry
resolvers:
  description: The resolvers of the API as C(Type.field), sorted.
  returned: always
  type: list
  elements: str
  sample: [Mutation.createTelemetry, Query.getDevice]
diff:
  description:
    - What changed (or would change in check mode), one entry per part that changes, C(api), C(tags),
      C(schema) (as SDL text, canonical layout), C(data_sources), C(resolvers) (only those created,
      updated or deleted) and C(api_key) (expiry only, never the key).
  returned: when diff mode is on
  type: list
  elements: dict
  contains:
    before_header:
      description: Which part of the API this entry is about.
      type: str
      returned: always
      sample: schema
    after_header:
      description: The same as C(before_header).
      type: str
      returned: always
      sample: schema
    before:
      description: That part before the task.
      type: raw
      returned: always
    after:
      description: That part after the task.
      type: raw
      returned: always
"""

import time

from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import API_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import DATA_SOURCE_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import GRAPHQL_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import AnsibleAppSyncError
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import SchemaSyntaxError
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import appsync_client
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import canonical_schema
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import create_api_key
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import create_data_source
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import create_graphql_api
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import create_resolver
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import delete_api_key
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import delete_data_source
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import delete_graphql_api
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import delete_resolver
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import get_graphql_api
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import get_schema_creation_status
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import get_schema_sdl
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import list_api_keys
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import list_data_sources
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import list_graphql_apis
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import list_resolvers
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import list_tags
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import object_type_fields
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import render_schema
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import start_schema_creation
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import tag_resource
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import untag_resource
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import update_api_key_description
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import update_data_source
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import update_graphql_api
from ansible_collections.iotfleet.aws.plugins.module_utils.appsync import update_resolver
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule

DAY = 86400
HOUR = 3600
MAX_KEY_VALIDITY_DAYS = 365
SCHEMA_POLL_INTERVAL = 2
# UpdateGraphqlApi replaces the API's settings: these are sent back as they are so that an update
# of the settings this module manages does not reset the others.
KEPT_API_SETTINGS = (
    "logConfig",
    "userPoolConfig",
    "openIDConnectConfig",
    "lambdaAuthorizerConfig",
    "xrayEnabled",
    "mergedApiExecutionRoleArn",
    "ownerContact",
    "introspectionConfig",
    "queryDepthLimit",
    "resolverCountLimit",
    "enhancedMetricsConfig",
)
DATA_SOURCE_FIELDS = {
    "AMAZON_DYNAMODB": ("table_name", "service_role_arn"),
    "AWS_LAMBDA": ("function_arn", "service_role_arn"),
    "NONE": (),
}


class Diff:
    """The diff entries of one run, one per part of the API that changes."""

    def __init__(self):
        self.entries = []

    def add(self, header, before, after):
        self.entries.append(dict(before_header=header, after_header=header, before=before, after=after))


# Input checks, all before the first AWS call that writes.


def parse_schema(module):
    sdl = module.params["schema"]
    if sdl is None:
        return None
    try:
        schema = canonical_schema(sdl)
    except SchemaSyntaxError as e:
        module.fail_json(msg=f"schema: not valid GraphQL SDL: {e}")
    if not schema:
        module.fail_json(msg="schema: empty; give the SDL text of the schema, or leave schema out")
    return schema


def desired_data_source(module, index, options):
    """The data source as AppSync's API describes it; fails naming the entry when fields do not fit its type."""
    name, kind = options["name"], options["type"]
    where = f"data_sources[{index}] ({name})"
    if not DATA_SOURCE_NAME_RE.match(name):
        module.fail_json(
            msg=f"{where}: {name!r} is not a valid data source name; it must match {DATA_SOURCE_NAME_RE.pattern}"
        )
    required = DATA_SOURCE_FIELDS[kind]
    for field in ("table_name", "table_region", "function_arn", "service_role_arn"):
        allowed = required + (("table_region",) if kind == "AMAZON_DYNAMODB" else ())
        if options[field] is not None and field not in allowed:
            module.fail_json(msg=f"{where}: {field} does not apply to a data source of type {kind}; remove it")
    missing = [field for field in required if not options[field]]
    if missing:
        module.fail_json(msg=f"{where}: {', '.join(missing)} required for a data source of type {kind}")
    source = dict(name=name, type=kind, description=options["description"] or "")
    if options["service_role_arn"]:
        source["serviceRoleArn"] = options["service_role_arn"]
    if kind == "AMAZON_DYNAMODB":
        source["dynamodbConfig"] = dict(
            tableName=options["table_name"], awsRegion=options["table_region"] or module.region
        )
    elif kind == "AWS_LAMBDA":
        source["lambdaConfig"] = dict(lambdaFunctionArn=options["function_arn"])
    return source


def desired_data_sources(module):
    if module.params["data_sources"] is None:
        return None
    sources = {}
    for index, options in enumerate(module.params["data_sources"]):
        source = desired_data_source(module, index, options)
        if source["name"] in sources:
            module.fail_json(msg=f"data_sources[{index}]: data source {source['name']!r} is listed twice")
        sources[source["name"]] = source
    return sources


def desired_resolvers(module):
    if module.params["resolvers"] is None:
        return None
    resolvers = {}
    for index, options in enumerate(module.params["resolvers"]):
        key = f"{options['type_name']}.{options['field_name']}"
        for option in ("type_name", "field_name"):
            if not GRAPHQL_NAME_RE.match(options[option]):
                module.fail_json(msg=f"resolvers[{index}]: {option} {options[option]!r} is not a GraphQL name")
        if key in resolvers:
            module.fail_json(msg=f"resolvers[{index}]: resolver {key} is listed twice")
        resolvers[key] = dict(
            index=index,
            typeName=options["type_name"],
            fieldName=options["field_name"],
            dataSourceName=options["data_source"],
            requestMappingTemplate=options["request_template"],
            responseMappingTemplate=options["response_template"],
        )
    return resolvers


def check_api_key_options(module):
    options = module.params["api_key"]
    if options is None:
        return
    validity, renew = options["validity_days"], options["renew_before_days"]
    if not 1 <= validity <= MAX_KEY_VALIDITY_DAYS:
        module.fail_json(msg=f"api_key.validity_days: {validity}; AppSync accepts 1 to {MAX_KEY_VALIDITY_DAYS} days")
    if not 0 <= renew < validity:
        module.fail_json(
            msg=(
                f"api_key.renew_before_days: {renew}; it must be 0 or more and less than validity_days ({validity}), "
                "otherwise every run would create a new key"
            )
        )


def check_api_key_mode(module, current):
    """Fail before any write when an API key is asked for but the API will not accept API keys."""
    if module.params["api_key"] is None:
        return
    settings = wanted_settings(module, settings_view(current or {}))
    if "API_KEY" not in (settings["authentication_type"], *settings["additional_authentication_providers"]):
        module.fail_json(
            msg=(
                "api_key: the API does not use API_KEY authentication; "
                "add API_KEY to additional_authentication_providers"
            )
        )


def read_desired(module):
    if not API_NAME_RE.match(module.params["name"]):
        module.fail_json(
            msg=f"name: {module.params['name']!r} is not a valid API name; it must match {API_NAME_RE.pattern}"
        )
    if module.params["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout: must be 0 or more seconds")
    check_api_key_options(module)
    return dict(
        schema=parse_schema(module),
        data_sources=desired_data_sources(module),
        resolvers=desired_resolvers(module),
    )


def check_resolver_references(module, desired, live):
    """Fail before any write when a resolver names a data source, type or field that will not exist."""
    if desired["resolvers"] is None:
        return
    known = set(live["data_sources"])
    if desired["data_sources"] is not None:
        known = set(desired["data_sources"]) | (set() if module.params["purge_data_sources"] else known)
    schema = desired["schema"] if desired["schema"] is not None else live["schema"]
    fields = object_type_fields(schema) if schema else None
    for key, resolver in desired["resolvers"].items():
        where = f"resolvers[{resolver['index']}] ({key})"
        if resolver["dataSourceName"] not in known:
            module.fail_json(
                msg=(
                    f"{where}: data source {resolver['dataSourceName']!r} is not in data_sources"
                    + ("" if desired["data_sources"] is not None else " and not on the API")
                    + f"; known data sources: {', '.join(sorted(known)) or 'none'}"
                )
            )
        type_name, field_name = resolver["typeName"], resolver["fieldName"]
        if fields is not None and field_name not in fields.get(type_name, ()):
            module.fail_json(msg=f"{where}: the schema has no field {field_name!r} in object type {type_name!r}")


# The live API.


def find_api(module, client, name):
    """The API named `name` (as ListGraphqlApis describes it), or None; fails when two share the name."""
    matches = [api for api in list_graphql_apis(client) if api["name"] == name]
    if len(matches) > 1:
        module.fail_json(
            msg=(
                f"name: {len(matches)} AppSync APIs are named {name!r} (ids {', '.join(a['apiId'] for a in matches)}); "
                "the module cannot tell which one to manage. Delete or rename the extra ones."
            )
        )
    return matches[0] if matches else None


def read_live(module, client, api, desired):
    """Everything the module compares, read before any write."""
    live = dict(schema=(), data_sources={}, resolvers={}, api_keys=[], tags={})
    if api is None:
        return live
    try:
        live["schema"] = canonical_schema(get_schema_sdl(client, api["apiId"]))
    except SchemaSyntaxError as e:
        module.fail_json(msg=f"the live schema of API {api['apiId']} could not be read: {e}")
    live["data_sources"] = {source["name"]: source for source in list_data_sources(client, api["apiId"])}
    live["resolvers"] = read_resolvers(client, api["apiId"], resolver_type_names(live["schema"], desired))
    live["api_keys"] = list_api_keys(client, api["apiId"])
    live["tags"] = list_tags(client, api["arn"])
    return live


def resolver_type_names(live_schema, desired):
    """The object types that can hold resolvers: in the live schema, the wanted one, or named by a wanted resolver."""
    names = set(object_type_fields(live_schema))
    if desired["schema"]:
        names |= set(object_type_fields(desired["schema"]))
    names |= {resolver["typeName"] for resolver in (desired["resolvers"] or {}).values()}
    return sorted(names)


def read_resolvers(client, api_id, type_names):
    resolvers = {}
    for type_name in type_names:
        for resolver in list_resolvers(client, api_id, type_name):
            resolvers[f"{resolver['typeName']}.{resolver['fieldName']}"] = resolver
    return resolvers


# The API itself.


def log_config_params(options):
    if options is None:
        return None
    return dict(
        fieldLogLevel=options["field_log_level"],
        cloudWatchLogsRoleArn=options["cloudwatch_logs_role_arn"],
        excludeVerboseContent=options["exclude_verbose_content"],
    )


def settings_view(api):
    """The settings this module manages, from an API description."""
    log_config = api.get("logConfig") or None
    return dict(
        authentication_type=api.get("authenticationType"),
        additional_authentication_providers=sorted(
            {p["authenticationType"] for p in api.get("additionalAuthenticationProviders") or []}
        ),
        log_config=None
        if log_config is None
        else dict(
            field_log_level=log_config.get("fieldLogLevel"),
            cloudwatch_logs_role_arn=log_config.get("cloudWatchLogsRoleArn"),
            exclude_verbose_content=bool(log_config.get("excludeVerboseContent")),
        ),
    )


def wanted_settings(module, current):
    """The managed settings as they should be: the current ones where an option is omitted."""
    wanted = dict(current)
    wanted["authentication_type"] = module.params["authentication_type"]
    if module.params["additional_authentication_providers"] is not None:
        modes = module.params["additional_authentication_providers"]
        wanted["additional_authentication_providers"] = sorted(set(modes))
    if module.params["log_config"] is not None:
        wanted["log_config"] = dict(module.params["log_config"])
    return wanted


def settings_params(settings):
    params = dict(
        authenticationType=settings["authentication_type"],
        additionalAuthenticationProviders=[
            dict(authenticationType=mode) for mode in settings["additional_authentication_providers"]
        ],
    )
    if settings["log_config"] is not None:
        params["logConfig"] = log_config_params(settings["log_config"])
    return params


def create_api(module, client, diff):
    empty = dict(authentication_type=None, additional_authentication_providers=[], log_config=None)
    settings = wanted_settings(module, empty)
    diff.add("api", {}, dict(name=module.params["name"], **settings))
    if module.params["tags"]:
        diff.add("tags", {}, module.params["tags"])
    if module.check_mode:
        return None
    params = dict(name=module.params["name"], **settings_params(settings))
    if module.params["tags"]:
        params["tags"] = module.params["tags"]
    return create_graphql_api(client, **params)


def ensure_api_settings(module, client, api, diff):
    current = settings_view(api)
    wanted = wanted_settings(module, current)
    if wanted == current:
        return False
    diff.add("api", current, wanted)
    if not module.check_mode:
        params = {key: api[key] for key in KEPT_API_SETTINGS if api.get(key) is not None}
        params.update(settings_params(wanted))
        update_graphql_api(client, api["apiId"], name=api["name"], **params)
    return True


def ensure_tags(module, client, api, current_tags, diff):
    if module.params["tags"] is None:
        return False
    to_set, to_remove = compare_aws_tags(current_tags, module.params["tags"], module.params["purge_tags"])
    if not to_set and not to_remove:
        return False
    after = {key: value for key, value in current_tags.items() if key not in to_remove}
    after.update(to_set)
    diff.add("tags", current_tags, after)
    if not module.check_mode:
        if to_remove:
            untag_resource(client, api["arn"], to_remove)
        if to_set:
            tag_resource(client, api["arn"], to_set)
    return True


# The schema.


def wait_for_schema(module, client, api_id):
    deadline = time.monotonic() + module.params["wait_timeout"]
    while True:
        status, details = get_schema_creation_status(client, api_id)
        if status in ("SUCCESS", "ACTIVE", "NOT_APPLICABLE"):
            return
        if status == "FAILED":
            module.fail_json(msg=f"schema: AppSync rejected the schema: {details or 'no details'}", details=details)
        if time.monotonic() >= deadline:
            module.fail_json(
                msg=(
                    f"wait_timeout: AppSync was still applying the schema after {module.params['wait_timeout']} s "
                    f"(status {status}); run again or raise wait_timeout"
                )
            )
        time.sleep(SCHEMA_POLL_INTERVAL)


def ensure_schema(module, client, api_id, live_schema, wanted_schema, diff):
    if wanted_schema is None or wanted_schema == live_schema:
        return False
    diff.add("schema", render_schema(live_schema), render_schema(wanted_schema))
    if not module.check_mode:
        start_schema_creation(client, api_id, module.params["schema"])
        wait_for_schema(module, client, api_id)
    return True


# Data sources.


def data_source_view(source):
    """What the module compares of a data source (AppSync's shape)."""
    view = dict(
        type=source.get("type"),
        description=source.get("description") or "",
        serviceRoleArn=source.get("serviceRoleArn"),
    )
    dynamodb = source.get("dynamodbConfig")
    if dynamodb:
        view["dynamodbConfig"] = dict(tableName=dynamodb.get("tableName"), awsRegion=dynamodb.get("awsRegion"))
    if source.get("lambdaConfig"):
        view["lambdaConfig"] = dict(lambdaFunctionArn=source["lambdaConfig"].get("lambdaFunctionArn"))
    return view


def plan_data_sources(module, live, wanted):
    """(to create, to update, to delete), each {name: wanted or live data source}."""
    if wanted is None:
        return {}, {}, {}
    to_create = {name: source for name, source in wanted.items() if name not in live}
    to_update = {
        name: source
        for name, source in wanted.items()
        if name in live and data_source_view(source) != data_source_view(live[name])
    }
    to_delete = {}
    if module.params["purge_data_sources"]:
        to_delete = {name: source for name, source in live.items() if name not in wanted}
    return to_create, to_update, to_delete


def diff_data_sources(diff, live, plan):
    to_create, to_update, to_delete = plan
    if not (to_create or to_update or to_delete):
        return
    before = {name: data_source_view(live[name]) for name in sorted({*to_update, *to_delete})}
    after = {name: data_source_view(source) for name, source in sorted({**to_create, **to_update}.items())}
    diff.add("data_sources", before, after)


def data_source_params(source):
    # An empty description is left out: UpdateDataSource replaces the whole data source, so that clears it.
    return {key: value for key, value in source.items() if value != ""}


# Resolvers.


def resolver_view(resolver):
    return dict(
        kind=resolver.get("kind") or "UNIT",
        dataSourceName=resolver.get("dataSourceName"),
        requestMappingTemplate=resolver.get("requestMappingTemplate"),
        responseMappingTemplate=resolver.get("responseMappingTemplate"),
    )


def plan_resolvers(module, live, wanted):
    if wanted is None:
        return {}, {}, {}
    to_create = {key: resolver for key, resolver in wanted.items() if key not in live}
    to_update = {
        key: resolver
        for key, resolver in wanted.items()
        if key in live and resolver_view(resolver) != resolver_view(live[key])
    }
    to_delete = {}
    if module.params["purge_resolvers"]:
        to_delete = {key: resolver for key, resolver in live.items() if key not in wanted}
    return to_create, to_update, to_delete


def diff_resolvers(diff, live, plan):
    to_create, to_update, to_delete = plan
    if not (to_create or to_update or to_delete):
        return
    before = {key: resolver_view(live[key]) for key in sorted({*to_update, *to_delete})}
    after = {key: resolver_view(resolver) for key, resolver in sorted({**to_create, **to_update}.items())}
    diff.add("resolvers", before, after)


def resolver_params(resolver):
    return dict(
        typeName=resolver["typeName"],
        fieldName=resolver["fieldName"],
        kind="UNIT",
        dataSourceName=resolver["dataSourceName"],
        requestMappingTemplate=resolver["requestMappingTemplate"],
        responseMappingTemplate=resolver["responseMappingTemplate"],
    )


def apply_plans(module, client, api_id, sources, resolvers):
    """Write data sources and resolvers in an order where nothing refers to something missing."""
    if module.check_mode:
        return
    sources_to_create, sources_to_update, sources_to_delete = sources
    for source in sources_to_create.values():
        create_data_source(client, api_id, **data_source_params(source))
    for source in sources_to_update.values():
        update_data_source(client, api_id, **data_source_params(source))
    resolvers_to_create, resolvers_to_update, resolvers_to_delete = resolvers
    for resolver in resolvers_to_delete.values():
        delete_resolver(client, api_id, resolver["typeName"], resolver["fieldName"])
    for resolver in resolvers_to_create.values():
        create_resolver(client, api_id, **resolver_params(resolver))
    for resolver in resolvers_to_update.values():
        update_resolver(client, api_id, **resolver_params(resolver))
    for name in sources_to_delete:
        delete_data_source(client, api_id, name)


# The API key.


def current_api_key(keys, now):
    valid = [key for key in keys if key["expires"] > now]
    return max(valid, key=lambda key: key["expires"]) if valid else None


def key_summary(key):
    """What the diff shows of a key: never its id."""
    if key is None:
        return {}
    return dict(description=key.get("description") or "", expires=key["expires"])


def ensure_api_key(module, client, api_id, keys, diff):
    options = module.params["api_key"]
    if options is None:
        return False
    now = int(time.time())
    current = current_api_key(keys, now)
    expired = [key for key in keys if key["expires"] <= now]
    renew = current is None or current["expires"] - now <= options["renew_before_days"] * DAY
    description = options["description"]
    relabel = not renew and description is not None and (current.get("description") or "") != description
    if not (renew or expired or relabel):
        return False
    before = key_summary(current)
    if renew:
        after = dict(description=description or "", expires=(now + options["validity_days"] * DAY) // HOUR * HOUR)
    else:
        after = dict(before, description=description if relabel else before["description"])
    if expired:
        before["expired_keys"] = len(expired)
        after["expired_keys"] = 0
    diff.add("api_key", before, after)
    if not module.check_mode:
        if renew:
            create_api_key(client, api_id, after["expires"], description)
        elif relabel:
            update_api_key_description(client, api_id, current["id"], description)
        for key in expired:
            delete_api_key(client, api_id, key["id"])
    return True


# Results.


def describe_api(client, api_id):
    api = get_graphql_api(client, api_id) if api_id else None
    if api is None:
        return {}
    settings = settings_view(api)
    return dict(
        api_id=api["apiId"],
        arn=api["arn"],
        name=api["name"],
        uris=dict(api.get("uris") or {}),
        authentication_type=settings["authentication_type"],
        additional_authentication_providers=settings["additional_authentication_providers"],
        log_config=settings["log_config"],
        tags=list_tags(client, api["arn"]),
    )


def describe_contents(module, client, api_id, desired, schema):
    result = dict(data_sources=[], resolvers=[])
    if module.params["api_key"] is not None:
        result["api_key"] = {}
    if not api_id:
        return result
    result["data_sources"] = [
        dict(name=source["name"], type=source["type"], arn=source.get("dataSourceArn"))
        for source in sorted(list_data_sources(client, api_id), key=lambda source: source["name"])
    ]
    result["resolvers"] = sorted(read_resolvers(client, api_id, resolver_type_names(schema, desired)))
    if module.params["api_key"] is not None:
        key = current_api_key(list_api_keys(client, api_id), int(time.time()))
        if key is not None:
            result["api_key"] = dict(id=key["id"], description=key.get("description") or "", expires=key["expires"])
    return result


def ensure_present(module, client, current, desired):
    live = read_live(module, client, current, desired)
    check_resolver_references(module, desired, live)
    check_api_key_mode(module, current)
    diff = Diff()
    if current is None:
        api = create_api(module, client, diff)
        changed = True
    else:
        api = current
        changed = ensure_api_settings(module, client, api, diff)
        changed |= ensure_tags(module, client, api, live["tags"], diff)
    api_id = api["apiId"] if api else None
    changed |= ensure_schema(module, client, api_id, live["schema"], desired["schema"], diff)
    sources = plan_data_sources(module, live["data_sources"], desired["data_sources"])
    resolvers = plan_resolvers(module, live["resolvers"], desired["resolvers"])
    diff_data_sources(diff, live["data_sources"], sources)
    diff_resolvers(diff, live["resolvers"], resolvers)
    changed |= any(sources) or any(resolvers)
    apply_plans(module, client, api_id, sources, resolvers)
    changed |= ensure_api_key(module, client, api_id, live["api_keys"], diff)
    if module.check_mode:
        api_id = current["apiId"] if current else None
        schema = live["schema"]
    else:
        schema = desired["schema"] if desired["schema"] is not None else live["schema"]
    result = dict(changed=changed, api=describe_api(client, api_id))
    result.update(describe_contents(module, client, api_id, desired, schema))
    return result, diff


def ensure_absent(module, client, current):
    diff = Diff()
    result = dict(changed=False, api={}, data_sources=[], resolvers=[])
    if current is None:
        return result, diff
    diff.add("api", dict(name=current["name"], api_id=current["apiId"]), {})
    result["changed"] = True
    if module.check_mode:
        result["api"] = describe_api(client, current["apiId"])
    else:
        delete_graphql_api(client, current["apiId"])
    return result, diff


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        authentication_type=dict(type="str", default="AWS_IAM", choices=["AWS_IAM", "API_KEY"]),
        additional_authentication_providers=dict(type="list", elements="str", choices=["AWS_IAM", "API_KEY"]),
        log_config=dict(
            type="dict",
            options=dict(
                field_log_level=dict(type="str", required=True, choices=["NONE", "ERROR", "INFO", "DEBUG", "ALL"]),
                cloudwatch_logs_role_arn=dict(type="str", required=True),
                exclude_verbose_content=dict(type="bool", default=False),
            ),
        ),
        schema=dict(type="str"),
        data_sources=dict(
            type="list",
            elements="dict",
            options=dict(
                name=dict(type="str", required=True),
                type=dict(type="str", required=True, choices=["AMAZON_DYNAMODB", "AWS_LAMBDA", "NONE"]),
                description=dict(type="str"),
                table_name=dict(type="str"),
                table_region=dict(type="str"),
                function_arn=dict(type="str"),
                service_role_arn=dict(type="str"),
            ),
        ),
        purge_data_sources=dict(type="bool", default=True),
        resolvers=dict(
            type="list",
            elements="dict",
            options=dict(
                type_name=dict(type="str", required=True),
                field_name=dict(type="str", required=True),
                data_source=dict(type="str", required=True),
                request_template=dict(type="str", required=True),
                response_template=dict(type="str", required=True),
            ),
        ),
        purge_resolvers=dict(type="bool", default=True),
        api_key=dict(
            type="dict",
            no_log=False,
            options=dict(
                description=dict(type="str"),
                validity_days=dict(type="int", default=365),
                renew_before_days=dict(type="int", default=30),
            ),
        ),
        wait_timeout=dict(type="int", default=300),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    desired = read_desired(module) if module.params["state"] == "present" else None
    client = appsync_client(module)
    try:
        current = find_api(module, client, module.params["name"])
        if module.params["state"] == "present":
            result, diff = ensure_present(module, client, current, desired)
        else:
            result, diff = ensure_absent(module, client, current)
    except AnsibleAppSyncError as e:
        module.fail_json_aws_error(e)
    if module._diff:
        result["diff"] = diff.entries
    module.exit_json(**result)


if __name__ == "__main__":
    main()
