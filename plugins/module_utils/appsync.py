# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Helpers for the AWS AppSync module (appsync_api).

Calls: one error handler for the service (amazon.aws's AWSErrorHandler pattern): "not found"
becomes None (or False for deletions), anything else raises AnsibleAppSyncError, which main()
turns into module.fail_json_aws_error(e).

Schemas: AWS does not give back the SDL it was sent. GetIntrospectionSchema prints the schema
again (its own layout, a `schema { query: Query ... }` block, AppSync's scalars and directives,
descriptions and comments dropped or re-rendered). canonical_schema() reduces both the wanted
and the live SDL to the same form so that only a change of meaning counts: it needs no GraphQL
library on the controller, only a tokenizer of the GraphQL lexical grammar.
"""

import json
import re

try:
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
except ImportError:
    pass  # AnsibleAWSModule reports the missing library.

from urllib.error import HTTPError
from urllib.error import URLError

from ansible.module_utils.urls import open_url
from ansible_collections.amazon.aws.plugins.module_utils.botocore import get_aws_connection_info
from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.errors import AWSErrorHandler
from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# CreateGraphqlApi: 1-65 letters, digits, spaces, '_' and '-'.
API_NAME_RE = re.compile(r"^[A-Za-z0-9_ -]{1,65}$")
# Data source names and GraphQL names (type and field names).
DATA_SOURCE_NAME_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,64}$")
GRAPHQL_NAME_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")

# AppSync's own scalars and directives, which a schema uses without declaring them; moto prints
# BigInt and Double among them as well.
AWS_SCALARS = frozenset(
    "AWSDate AWSTime AWSDateTime AWSTimestamp AWSEmail AWSJSON AWSURL AWSPhone AWSIPAddress BigInt Double".split()
)
IMPLICIT_DIRECTIVES = frozenset(
    (
        "aws_subscribe aws_auth aws_api_key aws_iam aws_oidc aws_cognito_user_pools aws_lambda aws_publish "
        "deprecated include skip specifiedBy oneOf defer stream"
    ).split()
)
DEFINITION_KEYWORDS = frozenset("schema scalar type interface union enum input directive extend".split())
DEFAULT_ROOT_TYPES = {"query": "Query", "mutation": "Mutation", "subscription": "Subscription"}


# Besides AWSRetry's own list: AppSync throttles with ThrottlingException, and answers
# ConcurrentModificationException while another change (a schema creation) is in progress.
RETRY_CODES = ["ThrottlingException", "ConcurrentModificationException"]


class AnsibleAppSyncError(AnsibleAWSError):
    pass


class AppSyncErrorHandler(AWSErrorHandler):
    _CUSTOM_EXCEPTION = AnsibleAppSyncError

    @classmethod
    def _is_missing(cls):
        return is_boto3_error_code("NotFoundException")


class SchemaSyntaxError(ValueError):
    pass


def appsync_client(module):
    """An AppSync client whose calls retry throttling and concurrent changes when given aws_retry=True."""
    retry = AWSRetry.jittered_backoff(retries=10, delay=1, max_delay=30, catch_extra_error_codes=RETRY_CODES)
    return module.client("appsync", retry_decorator=retry)


# GraphQL SDL, reduced to its meaning.

_TOKEN_RE = re.compile(
    r"""
      (?P<ignored>[\s,\ufeff]+|\#[^\n\r]*)
    | (?P<block>\"\"\"(?:\\\"\"\"|(?!\"\"\")[\s\S])*\"\"\")
    | (?P<string>"(?:\\.|[^"\\\n\r])*")
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    | (?P<punct>\.\.\.|[!$&()\:=@\[\]{|}])
    """,
    re.VERBOSE,
)


def _tokens(sdl):
    """The significant tokens of an SDL text as (kind, text); strings are decoded into their JSON form."""
    position = 0
    result = []
    while position < len(sdl):
        match = _TOKEN_RE.match(sdl, position)
        if match is None:
            line = sdl.count("\n", 0, position) + 1
            raise SchemaSyntaxError(f"unexpected character {sdl[position]!r} on line {line}")
        position = match.end()
        kind = match.lastgroup
        if kind == "ignored":
            continue
        text = match.group()
        if kind == "string":
            try:
                text = json.dumps(json.loads(text))
            except ValueError:
                line = sdl.count("\n", 0, match.start()) + 1
                raise SchemaSyntaxError(f"invalid string {text} on line {line}") from None
        elif kind == "block":
            text = json.dumps(text[3:-3].replace('\\"""', '"""').strip())
        result.append((kind, text))
    return result


def _drop_descriptions_and_noise(tokens):
    """Tokens without descriptions, '&' between interfaces and a leading '|' of unions.

    A string is a value (kept) after ':' or '=' or inside brackets; anywhere else it is a description.
    """
    kept = []
    brackets = 0
    for kind, text in tokens:
        previous = kept[-1] if kept else None
        if kind in ("string", "block") and brackets == 0 and previous not in (":", "="):
            continue
        if text == "&" or (text == "|" and previous in ("=", "on")):
            continue
        if text == "[":
            brackets += 1
        elif text == "]":
            brackets -= 1
        kept.append(text)
    return kept


def _split_definitions(tokens):
    """Top-level definitions as lists of tokens."""
    definitions = []
    depth = 0
    for index, text in enumerate(tokens):
        previous = tokens[index - 1] if index else None
        starts = (
            depth == 0 and text in DEFINITION_KEYWORDS and previous not in ("extend", "=", "|", ":", "@", "implements")
        )
        if starts or not definitions:
            definitions.append([])
        definitions[-1].append(text)
        if text in ("{", "("):
            depth += 1
        elif text in ("}", ")"):
            depth -= 1
    return definitions


def _definition_key(definition):
    """(kind, name) of a definition: ("type", "Query"), ("extend type", "Query"), ("directive", "aws_iam")."""
    words = definition[:2] if definition[0] == "extend" else definition[:1]
    kind = " ".join(words)
    rest = [text for text in definition[len(words) :] if text != "@"]
    name = "" if kind == "schema" or not rest else rest[0]
    return kind, name


def _is_implicit(definition):
    kind, name = _definition_key(definition)
    if kind == "scalar":
        return name in AWS_SCALARS
    if kind == "directive":
        return name in IMPLICIT_DIRECTIVES
    if kind == "schema":
        body = definition[definition.index("{") + 1 : -1] if "{" in definition else []
        pairs = dict(zip(body[0::3], body[2::3], strict=False))
        return all(DEFAULT_ROOT_TYPES.get(operation) == type_name for operation, type_name in pairs.items())
    return False


def canonical_schema(sdl):
    """The schema's definitions as a sorted tuple of token tuples; raises SchemaSyntaxError.

    Equal for two texts that differ only in layout, commas, comments, descriptions, definition
    order, a default `schema` block, or the declarations of AppSync's own scalars and directives.
    """
    tokens = _drop_descriptions_and_noise(_tokens(sdl or ""))
    definitions = [tuple(d) for d in _split_definitions(tokens) if not _is_implicit(d)]
    if definitions and definitions[0][0] not in DEFINITION_KEYWORDS:
        raise SchemaSyntaxError(f"a schema definition starts with {definitions[0][0]!r}, not with a type keyword")
    return tuple(sorted(definitions, key=lambda d: (_definition_key(d), d)))


def _field_starts(definition):
    """Indexes of the tokens that start a field (or enum value) inside the definition's braces."""
    braces = parens = brackets = 0
    previous = None
    for index, text in enumerate(definition):
        # A name right after these is a type, a directive or a value; any other name starts a field.
        if braces == 1 and parens == 0 and brackets == 0 and GRAPHQL_NAME_RE.match(text):
            if previous not in (":", "@", "=", "|"):
                yield index
        if text == "{":
            braces += 1
        elif text == "}":
            braces -= 1
        elif text == "(":
            parens += 1
        elif text == ")":
            parens -= 1
        elif text == "[":
            brackets += 1
        elif text == "]":
            brackets -= 1
        previous = text


def object_type_fields(schema):
    """{type name: set of field names} for the object types (and their extensions) of a canonical schema."""
    fields = {}
    for definition in schema:
        kind, name = _definition_key(definition)
        if kind in ("type", "extend type"):
            fields.setdefault(name, set()).update(definition[i] for i in _field_starts(definition))
    return fields


def _join(tokens):
    text = ""
    parens = 0
    previous = None
    for token in tokens:
        if parens and GRAPHQL_NAME_RE.match(token) and previous not in (":", "(", "@", "=", "[", "|"):
            text += ", "
        elif text and not (token in (":", "!", "]", ")", "(") or previous in ("(", "[", "@")):
            text += " "
        text += token
        parens += {"(": 1, ")": -1}.get(token, 0)
        previous = token
    return text


def render_schema(schema):
    """A canonical schema as SDL text, one field per line: what the diff shows."""
    blocks = []
    for definition in schema:
        starts = set(_field_starts(definition))
        lines, line, depth = [], [], 0
        for index, text in enumerate(definition):
            if index in starts or text == "}":
                if line:
                    lines.append("  " * depth + _join(line))
                line = []
            if text == "}":
                depth -= 1
            line.append(text)
            if text == "{" and index + 1 in starts:
                lines.append("  " * depth + _join(line))
                line = []
                depth += 1
        if line:
            lines.append("  " * depth + _join(line))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


# GraphQL APIs.


@AppSyncErrorHandler.common_error_handler("list the AppSync GraphQL APIs")
@AWSRetry.jittered_backoff()
def list_graphql_apis(client):
    paginator = client.get_paginator("list_graphql_apis")
    return paginator.paginate().build_full_result().get("graphqlApis", [])


@AppSyncErrorHandler.list_error_handler("get the AppSync GraphQL API")
def get_graphql_api(client, api_id):
    return client.get_graphql_api(apiId=api_id, aws_retry=True)["graphqlApi"]


@AppSyncErrorHandler.common_error_handler("create the AppSync GraphQL API")
def create_graphql_api(client, **params):
    return client.create_graphql_api(aws_retry=True, **params)["graphqlApi"]


@AppSyncErrorHandler.common_error_handler("update the AppSync GraphQL API")
def update_graphql_api(client, api_id, **params):
    return client.update_graphql_api(apiId=api_id, aws_retry=True, **params)["graphqlApi"]


@AppSyncErrorHandler.deletion_error_handler("delete the AppSync GraphQL API")
def delete_graphql_api(client, api_id):
    client.delete_graphql_api(apiId=api_id, aws_retry=True)
    return True


@AppSyncErrorHandler.list_error_handler("list the tags of the AppSync GraphQL API", {})
def list_tags(client, arn):
    return client.list_tags_for_resource(resourceArn=arn, aws_retry=True).get("tags") or {}


@AppSyncErrorHandler.common_error_handler("tag the AppSync GraphQL API")
def tag_resource(client, arn, tags):
    client.tag_resource(resourceArn=arn, tags=tags, aws_retry=True)


@AppSyncErrorHandler.common_error_handler("untag the AppSync GraphQL API")
def untag_resource(client, arn, keys):
    client.untag_resource(resourceArn=arn, tagKeys=keys, aws_retry=True)


# Schemas.


@AppSyncErrorHandler.common_error_handler("get the schema of the AppSync GraphQL API")
def get_schema_sdl(client, api_id):
    """The live schema as SDL, or "" when the API has none yet."""
    try:
        response = client.get_introspection_schema(apiId=api_id, format="SDL", includeDirectives=True, aws_retry=True)
    except is_boto3_error_code(["NotFoundException", "GraphQLSchemaException"]):
        return ""
    schema = response["schema"]
    schema = schema.read() if hasattr(schema, "read") else schema
    return schema.decode("utf-8") if isinstance(schema, bytes) else schema


@AppSyncErrorHandler.common_error_handler("start the schema creation of the AppSync GraphQL API")
def start_schema_creation(client, api_id, sdl):
    client.start_schema_creation(apiId=api_id, definition=sdl.encode("utf-8"), aws_retry=True)


@AppSyncErrorHandler.common_error_handler("get the schema creation status of the AppSync GraphQL API")
def get_schema_creation_status(client, api_id):
    response = client.get_schema_creation_status(apiId=api_id, aws_retry=True)
    return response["status"], response.get("details")


# Data sources.


@AppSyncErrorHandler.list_error_handler("list the data sources of the AppSync GraphQL API", [])
@AWSRetry.jittered_backoff()
def list_data_sources(client, api_id):
    paginator = client.get_paginator("list_data_sources")
    return paginator.paginate(apiId=api_id).build_full_result().get("dataSources", [])


@AppSyncErrorHandler.common_error_handler("create the AppSync data source")
def create_data_source(client, api_id, **params):
    return client.create_data_source(apiId=api_id, aws_retry=True, **params)["dataSource"]


@AppSyncErrorHandler.common_error_handler("update the AppSync data source")
def update_data_source(client, api_id, **params):
    return client.update_data_source(apiId=api_id, aws_retry=True, **params)["dataSource"]


@AppSyncErrorHandler.deletion_error_handler("delete the AppSync data source")
def delete_data_source(client, api_id, name):
    client.delete_data_source(apiId=api_id, name=name, aws_retry=True)
    return True


# Resolvers.


@AppSyncErrorHandler.list_error_handler("list the resolvers of the AppSync type", [])
@AWSRetry.jittered_backoff()
def list_resolvers(client, api_id, type_name):
    paginator = client.get_paginator("list_resolvers")
    return paginator.paginate(apiId=api_id, typeName=type_name).build_full_result().get("resolvers", [])


@AppSyncErrorHandler.common_error_handler("create the AppSync resolver")
def create_resolver(client, api_id, **params):
    client.create_resolver(apiId=api_id, aws_retry=True, **params)


@AppSyncErrorHandler.common_error_handler("update the AppSync resolver")
def update_resolver(client, api_id, **params):
    client.update_resolver(apiId=api_id, aws_retry=True, **params)


@AppSyncErrorHandler.deletion_error_handler("delete the AppSync resolver")
def delete_resolver(client, api_id, type_name, field_name):
    client.delete_resolver(apiId=api_id, typeName=type_name, fieldName=field_name, aws_retry=True)
    return True


# API keys.


@AppSyncErrorHandler.list_error_handler("list the API keys of the AppSync GraphQL API", [])
@AWSRetry.jittered_backoff()
def list_api_keys(client, api_id):
    paginator = client.get_paginator("list_api_keys")
    return paginator.paginate(apiId=api_id).build_full_result().get("apiKeys", [])


@AppSyncErrorHandler.common_error_handler("create an API key for the AppSync GraphQL API")
def create_api_key(client, api_id, expires, description=None):
    params = dict(apiId=api_id, expires=expires)
    if description:
        params["description"] = description
    return client.create_api_key(aws_retry=True, **params)["apiKey"]


@AppSyncErrorHandler.common_error_handler("update the description of the API key")
def update_api_key_description(client, api_id, key_id, description):
    return client.update_api_key(apiId=api_id, id=key_id, description=description, aws_retry=True)["apiKey"]


@AppSyncErrorHandler.deletion_error_handler("delete an expired API key")
def delete_api_key(client, api_id, key_id):
    client.delete_api_key(apiId=api_id, id=key_id, aws_retry=True)
    return True


# GraphQL operations against a deployed API, signed like any AWS call (IAM auth).


def signing_credentials(module):
    """(region, frozen credentials) of the module's AWS connection options for SigV4; credentials None if none."""
    region, _endpoint, connection = get_aws_connection_info(module)
    session = boto3.session.Session(
        profile_name=connection.get("profile_name"),
        aws_access_key_id=connection.get("aws_access_key_id"),
        aws_secret_access_key=connection.get("aws_secret_access_key"),
        aws_session_token=connection.get("aws_session_token"),
    )
    credentials = session.get_credentials()
    return region, credentials.get_frozen_credentials() if credentials is not None else None


def signed_graphql_request(module, url, document, variables, operation_name=None):
    """POST one GraphQL operation to `url`, signed with SigV4 by the module's AWS credentials.

    Returns the decoded response body ({"data": ..., "errors": [...]}) or raises ValueError with
    the HTTP status and body when the endpoint does not answer with GraphQL.
    """
    body = {"query": document, "variables": variables or {}}
    if operation_name:
        body["operationName"] = operation_name
    payload = json.dumps(body)
    region, credentials = signing_credentials(module)
    if credentials is None:
        raise ValueError("no AWS credentials found to sign the GraphQL request; set a profile or access keys")
    request = AWSRequest(method="POST", url=url, data=payload, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, "appsync", region).add_auth(request)
    try:
        response = open_url(url, data=payload, headers=dict(request.headers.items()), method="POST", timeout=30)
        text = response.read()
    except HTTPError as e:
        text = e.read()
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(f"GraphQL endpoint {url} answered HTTP {e.code}: {text[:500]!r}") from None
    except (URLError, OSError) as e:
        raise ValueError(f"GraphQL endpoint {url} is unreachable: {e}") from None
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError(f"GraphQL endpoint {url} did not answer JSON: {text[:500]!r}") from None


def is_mutation(document):
    """Whether the first operation of a GraphQL document is a mutation."""
    tokens = [value for kind, value in _tokens(document) if kind == "name"]
    return bool(tokens) and tokens[0] == "mutation"
