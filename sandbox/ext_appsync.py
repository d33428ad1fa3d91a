"""AppSync: data sources, resolvers and functions, and the gaps of moto 5.2.5's GraphQL APIs.

moto keeps GraphQL APIs, API keys and the schema, with a dummy GRAPHQL URI. Here: CRUD of data
sources, resolvers and functions (kept on moto's GraphqlAPI object, so they go with the API), AWS
error shapes where moto answered HTTP 500, AWS-like API key ids, the URIs of the local AppSync
simulator, and the JSON the simulator loads the API from (`config()`, served by moto_ext's routes).
"""

import hashlib
import itertools
import json
import re
import secrets
import string

from moto.appsync import urls as appsync_urls
from moto.appsync.exceptions import AppSyncExceptions
from moto.appsync.exceptions import GraphqlAPINotFound
from moto.appsync.models import AWS_CUSTOM_GRAPHQL
from moto.appsync.models import AppSyncBackend
from moto.appsync.models import GraphqlAPI
from moto.appsync.models import GraphqlAPIKey
from moto.appsync.models import GraphqlSchema
from moto.appsync.models import appsync_backends
from moto.appsync.responses import AppSyncResponse
from moto.core.responses import ActionResult
from moto.core.responses import EmptyResult
from moto.core.utils import unix_time
from moto.core.utils import utcnow

NAME_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
ALNUM = string.ascii_lowercase + string.digits
DATA_SOURCE_KEYS = (
    "description",
    "type",
    "serviceRoleArn",
    "dynamodbConfig",
    "lambdaConfig",
    "elasticsearchConfig",
    "openSearchServiceConfig",
    "httpConfig",
    "relationalDatabaseConfig",
    "eventBridgeConfig",
    "metricsConfig",
)
RESOLVER_KEYS = (
    "dataSourceName",
    "requestMappingTemplate",
    "responseMappingTemplate",
    "kind",
    "pipelineConfig",
    "syncConfig",
    "cachingConfig",
    "maxBatchSize",
    "runtime",
    "code",
    "metricsConfig",
)
FUNCTION_KEYS = (
    "name",
    "description",
    "dataSourceName",
    "requestMappingTemplate",
    "responseMappingTemplate",
    "functionVersion",
    "syncConfig",
    "maxBatchSize",
    "runtime",
    "code",
)
API_RESPONSES = ("create_graphql_api", "get_graphql_api", "update_graphql_api", "list_graphql_apis")
URL_PATHS = {
    "{0}/v1/apis/(?P<api_id>[^/]+)/datasources$": AppSyncResponse.dispatch,
    "{0}/v1/apis/(?P<api_id>[^/]+)/datasources/(?P<name>[^/]+)$": AppSyncResponse.dispatch,
    "{0}/v1/apis/(?P<api_id>[^/]+)/functions$": AppSyncResponse.dispatch,
    "{0}/v1/apis/(?P<api_id>[^/]+)/functions/(?P<function_id>[^/]+)$": AppSyncResponse.dispatch,
    "{0}/v1/apis/(?P<api_id>[^/]+)/functions/(?P<function_id>[^/]+)/resolvers$": AppSyncResponse.dispatch,
}

_config = {"graphql_url": None, "realtime_url": None}
_originals: dict[str, object] = {}
_created = itertools.count(1)


class NotFoundException(AppSyncExceptions):
    code = 404

    def __init__(self, message: str):
        super().__init__("NotFoundException", message)
        self.description = json.dumps({"message": message})


class BadRequestException(AppSyncExceptions):
    code = 400

    def __init__(self, message: str):
        super().__init__("BadRequestException", message)
        self.description = json.dumps({"message": message})


def configure(graphql_url: str | None) -> None:
    """Where the simulator answers: uris.GRAPHQL, and REALTIME on the same port (`/graphql/realtime`)."""
    _config["graphql_url"] = graphql_url
    _config["realtime_url"] = graphql_url.replace("http", "ws", 1) + "/realtime" if graphql_url else None


# --- the store, on moto's GraphqlAPI object -------------------------------------------------------------


def _store(api: GraphqlAPI, kind: str) -> dict:
    return api.__dict__.setdefault(f"sandbox_{kind}", {})


def _api(backend: AppSyncBackend, api_id: str) -> GraphqlAPI:
    return backend.get_graphql_api(api_id)  # NotFoundException when missing


def _pick(params: dict, keys) -> dict:
    return {key: params[key] for key in keys if params.get(key) is not None}


def _random_id(length: int = 26) -> str:
    return "".join(secrets.choice(ALNUM) for _index in range(length))


def _schema_fields(api: GraphqlAPI) -> dict[str, set[str]] | None:
    """{type name: field names} of the API's schema, or None if it has none that builds."""
    schema = api.graphql_schema
    if schema is None or schema.status != "SUCCESS":
        return None
    from graphql import build_schema

    try:
        built = build_schema(schema.definition + AWS_CUSTOM_GRAPHQL)
    except Exception:  # noqa: BLE001 - an unbuildable schema checks nothing
        return None
    return {name: set(getattr(kind, "fields", {}) or {}) for name, kind in built.type_map.items()}


def _check_data_source(params: dict) -> None:
    kind = params.get("type")
    if kind == "AMAZON_DYNAMODB":
        config = params.get("dynamodbConfig") or {}
        if not config.get("tableName") or not config.get("awsRegion"):
            raise BadRequestException("dynamodbConfig with tableName and awsRegion is required for AMAZON_DYNAMODB.")
    elif kind == "AWS_LAMBDA":
        if not (params.get("lambdaConfig") or {}).get("lambdaFunctionArn"):
            raise BadRequestException("lambdaConfig with lambdaFunctionArn is required for AWS_LAMBDA.")


def _check_resolver(api: GraphqlAPI, type_name: str, field_name: str, params: dict) -> None:
    fields = _schema_fields(api)
    if fields is not None:
        if type_name not in fields:
            raise NotFoundException(f"Type {type_name} not found.")
        if field_name not in fields[type_name]:
            raise NotFoundException(f"No field named {field_name} found on type {type_name}.")
    if params.get("kind", "UNIT") == "PIPELINE":
        for function_id in (params.get("pipelineConfig") or {}).get("functions") or []:
            if function_id not in _store(api, "functions"):
                raise NotFoundException(f"Function {function_id} not found.")
    else:
        name = params.get("dataSourceName")
        if not name:
            raise BadRequestException("A UNIT resolver requires a dataSourceName.")
        if name not in _store(api, "data_sources"):
            raise NotFoundException(f"Data source {name} not found.")


# --- response methods added to moto's AppSyncResponse --------------------------------------------------


def _params(response: AppSyncResponse, keys) -> dict:
    return {key: response._get_param(key) for key in keys if response._get_param(key) is not None}


def _data_source(response: AppSyncResponse, create: bool) -> ActionResult:
    api = _api(response.appsync_backend, response._get_param("apiId"))
    name = response._get_param("name")
    store = _store(api, "data_sources")
    if create and name in store:
        raise BadRequestException(f"Data source with name {name} already exists.")
    if not create and name not in store:
        raise NotFoundException(f"Data source {name} not found.")
    if not NAME_RE.match(name or "") or len(name) > 65:
        raise BadRequestException(
            f"Data source name {name} is not valid: [_A-Za-z][_0-9A-Za-z]*, at most 65 characters."
        )
    params = _params(response, DATA_SOURCE_KEYS)
    _check_data_source(params)
    store[name] = {"dataSourceArn": f"{api.arn}/datasources/{name}", "name": name, **params}
    return ActionResult({"dataSource": store[name]})


def create_data_source(self: AppSyncResponse) -> ActionResult:
    return _data_source(self, create=True)


def update_data_source(self: AppSyncResponse) -> ActionResult:
    return _data_source(self, create=False)


def get_data_source(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    name = self._get_param("name")
    if name not in _store(api, "data_sources"):
        raise NotFoundException(f"Data source {name} not found.")
    return ActionResult({"dataSource": _store(api, "data_sources")[name]})


def list_data_sources(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    return ActionResult({"dataSources": list(_store(api, "data_sources").values())})


def delete_data_source(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    name = self._get_param("name")
    if _store(api, "data_sources").pop(name, None) is None:
        raise NotFoundException(f"Data source {name} not found.")
    return EmptyResult()


def _resolver(response: AppSyncResponse, create: bool) -> ActionResult:
    api = _api(response.appsync_backend, response._get_param("apiId"))
    type_name, field_name = response._get_param("typeName"), response._get_param("fieldName")
    store = _store(api, "resolvers")
    key = f"{type_name}.{field_name}"
    if create and key in store:
        raise BadRequestException("Only one resolver is allowed per field.")
    if not create and key not in store:
        raise NotFoundException(f"No resolver found for {type_name}.{field_name}.")
    params = _params(response, RESOLVER_KEYS)
    params.setdefault("kind", "UNIT")
    _check_resolver(api, type_name, field_name, params)
    arn = f"{api.arn}/types/{type_name}/resolvers/{field_name}"
    store[key] = {"typeName": type_name, "fieldName": field_name, "resolverArn": arn, "maxBatchSize": 0, **params}
    return ActionResult({"resolver": store[key]})


def create_resolver(self: AppSyncResponse) -> ActionResult:
    return _resolver(self, create=True)


def update_resolver(self: AppSyncResponse) -> ActionResult:
    return _resolver(self, create=False)


def get_resolver(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    key = f"{self._get_param('typeName')}.{self._get_param('fieldName')}"
    if key not in _store(api, "resolvers"):
        raise NotFoundException(f"No resolver found for {key}.")
    return ActionResult({"resolver": _store(api, "resolvers")[key]})


def list_resolvers(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    type_name = self._get_param("typeName")
    return ActionResult({"resolvers": [r for r in _store(api, "resolvers").values() if r["typeName"] == type_name]})


def delete_resolver(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    key = f"{self._get_param('typeName')}.{self._get_param('fieldName')}"
    if _store(api, "resolvers").pop(key, None) is None:
        raise NotFoundException(f"No resolver found for {key}.")
    return EmptyResult()


def list_resolvers_by_function(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    function_id = self._get_param("functionId")
    if function_id not in _store(api, "functions"):
        raise NotFoundException(f"Function {function_id} not found.")
    resolvers = [
        r
        for r in _store(api, "resolvers").values()
        if function_id in ((r.get("pipelineConfig") or {}).get("functions") or [])
    ]
    return ActionResult({"resolvers": resolvers})


def _function(response: AppSyncResponse, function_id: str | None) -> ActionResult:
    api = _api(response.appsync_backend, response._get_param("apiId"))
    store = _store(api, "functions")
    if function_id is not None and function_id not in store:
        raise NotFoundException(f"Function {function_id} not found.")
    params = _params(response, FUNCTION_KEYS)
    params.setdefault("functionVersion", "2018-05-29")
    if params.get("dataSourceName") not in _store(api, "data_sources"):
        raise NotFoundException(f"Data source {params.get('dataSourceName')} not found.")
    function_id = function_id or _random_id()
    arn = f"{api.arn}/functions/{function_id}"
    store[function_id] = {"functionId": function_id, "functionArn": arn, "maxBatchSize": 0, **params}
    return ActionResult({"functionConfiguration": store[function_id]})


def create_function(self: AppSyncResponse) -> ActionResult:
    return _function(self, None)


def update_function(self: AppSyncResponse) -> ActionResult:
    return _function(self, self._get_param("functionId"))


def get_function(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    function_id = self._get_param("functionId")
    if function_id not in _store(api, "functions"):
        raise NotFoundException(f"Function {function_id} not found.")
    return ActionResult({"functionConfiguration": _store(api, "functions")[function_id]})


def list_functions(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    return ActionResult({"functions": list(_store(api, "functions").values())})


def delete_function(self: AppSyncResponse) -> ActionResult:
    api = _api(self.appsync_backend, self._get_param("apiId"))
    function_id = self._get_param("functionId")
    if _store(api, "functions").pop(function_id, None) is None:
        raise NotFoundException(f"Function {function_id} not found.")
    return EmptyResult()


ADDED_RESPONSES = (
    create_data_source,
    get_data_source,
    list_data_sources,
    update_data_source,
    delete_data_source,
    create_resolver,
    get_resolver,
    list_resolvers,
    update_resolver,
    delete_resolver,
    list_resolvers_by_function,
    create_function,
    get_function,
    list_functions,
    update_function,
    delete_function,
)


# --- fixes of moto's own operations --------------------------------------------------------------------


def _with_uris(name: str):
    """Wrap a GraphqlApi response of moto's so that its uris lead to the simulator."""

    def wrapper(self: AppSyncResponse) -> ActionResult:
        result = _originals[f"response.{name}"](self)
        if _config["graphql_url"] and isinstance(result, ActionResult):
            body = result.result
            for api in body.get("graphqlApis") or [body.get("graphqlApi")]:
                if api is not None:
                    api["uris"] = {"GRAPHQL": _config["graphql_url"], "REALTIME": _config["realtime_url"]}
        return result

    wrapper.__name__ = name
    return wrapper


def _existing(name: str, check_key: bool = False):
    """Wrap a backend method taking (api_id, ...) so that a missing API (or key) is NotFoundException, not 500."""

    def wrapper(self: AppSyncBackend, api_id: str, *args, **kwargs):
        if api_id not in self.graphql_apis and api_id not in self.events_apis:
            raise GraphqlAPINotFound(api_id)
        if check_key:
            key_id = kwargs.get("api_key_id", args[0] if args else None)
            owner = self.graphql_apis.get(api_id) or self.events_apis.get(api_id)
            if key_id not in owner.api_keys:
                raise NotFoundException(f"API key {key_id} not found.")
        return _originals[name](self, api_id, *args, **kwargs)

    wrapper.__name__ = name
    return wrapper


def create_graphql_api(self: AppSyncBackend, *args, **kwargs) -> GraphqlAPI:
    """moto's, numbering the APIs in the order they were made (the simulator serves the newest)."""
    api = _originals["create_graphql_api"](self, *args, **kwargs)
    api.__dict__["sandbox_created"] = next(_created)
    return api


def delete_graphql_api(self: AppSyncBackend, api_id: str) -> None:
    if api_id not in self.graphql_apis:
        raise GraphqlAPINotFound(api_id)
    _originals["delete_graphql_api"](self, api_id)


def get_schema_creation_status(self: AppSyncBackend, api_id: str):
    api = _api(self, api_id)
    if api.graphql_schema is None:
        raise NotFoundException(f"No schema has been created for GraphQL API {api_id}.")
    return api.get_schema_status()


def start_schema_creation(self: AppSyncBackend, api_id: str, definition: bytes) -> str:
    _api(self, api_id)
    return _originals["start_schema_creation"](self, api_id, definition)


# moto only parses the SDL; AWS also builds it (unknown types, bad directives fail the creation).
def parse_graphql_definition(self: GraphqlSchema) -> None:
    _originals["_parse_graphql_definition"](self)
    if self.status != "SUCCESS":
        return
    from graphql import build_schema

    try:
        build_schema(self.definition + AWS_CUSTOM_GRAPHQL)
    except Exception as exc:  # noqa: BLE001 - GraphQLError, TypeError: any failure to build is a FAILED schema
        self.status = "FAILED"
        self.parse_error = str(exc)


# GetIntrospectionSchema SDL with directives: the SDL as sent. moto re-printed it from the introspection
# result, which loses every applied directive (@aws_iam, @aws_api_key, @aws_subscribe).
def get_introspection_schema(self: GraphqlSchema, format_: str, include_directives: bool) -> str:
    if format_ == "SDL" and include_directives:
        return self.definition
    return _originals["get_introspection_schema"](self, format_, include_directives)


# Additional authentication providers could not be removed: moto ignored an empty list.
def graphql_api_update(self: GraphqlAPI, name, additional_authentication_providers, *args) -> None:
    _originals["GraphqlAPI.update"](self, name, additional_authentication_providers, *args)
    if additional_authentication_providers is not None:
        self.additional_authentication_providers = additional_authentication_providers


# API key ids as AWS makes them: "da2-" and 26 lowercase letters and digits (moto: 6 hex digits).
def api_key_init(self: GraphqlAPIKey, description, expires) -> None:
    _originals["GraphqlAPIKey.__init__"](self, description, expires)
    self.key_id = "da2-" + _random_id()


def install(patch, on_revert) -> None:
    for function in ADDED_RESPONSES:
        patch(AppSyncResponse, function.__name__, function)
    for name in API_RESPONSES:
        _originals[f"response.{name}"] = patch(AppSyncResponse, name, _with_uris(name))
    for name in ("create_api_key", "list_api_keys"):
        _originals[name] = patch(AppSyncBackend, name, _existing(name))
    for name in ("update_api_key", "delete_api_key"):
        _originals[name] = patch(AppSyncBackend, name, _existing(name, check_key=True))
    for name in ("update_graphql_api",):
        _originals[name] = patch(AppSyncBackend, name, _existing(name))
    _originals["create_graphql_api"] = patch(AppSyncBackend, "create_graphql_api", create_graphql_api)
    _originals["delete_graphql_api"] = patch(AppSyncBackend, "delete_graphql_api", delete_graphql_api)
    _originals["start_schema_creation"] = patch(AppSyncBackend, "start_schema_creation", start_schema_creation)
    patch(AppSyncBackend, "get_schema_creation_status", get_schema_creation_status)
    _originals["_parse_graphql_definition"] = patch(
        GraphqlSchema, "_parse_graphql_definition", parse_graphql_definition
    )
    _originals["get_introspection_schema"] = patch(GraphqlSchema, "get_introspection_schema", get_introspection_schema)
    _originals["GraphqlAPI.update"] = patch(GraphqlAPI, "update", graphql_api_update)
    _originals["GraphqlAPIKey.__init__"] = patch(GraphqlAPIKey, "__init__", api_key_init)
    added = [path for path in URL_PATHS if path not in appsync_urls.url_paths]
    appsync_urls.url_paths.update({path: URL_PATHS[path] for path in added})
    on_revert(lambda: [appsync_urls.url_paths.pop(path, None) for path in added])


# --- what the simulator loads --------------------------------------------------------------------------


def _all_apis():
    """(account id, region, GraphqlAPI) for every API in every account and region, oldest first per region."""
    for account_id, regions in list(appsync_backends.items()):
        for region, backend in list(regions.items()):
            for api in list(backend.graphql_apis.values()):
                yield account_id, region, api


def config(account_id: str, region: str, api: GraphqlAPI) -> dict:
    """Everything the simulator needs to serve the API, with an etag that changes whenever any of it does."""
    now = unix_time(utcnow())
    body = {
        "apiId": api.api_id,
        "name": api.name,
        "accountId": account_id,
        "region": region,
        "authenticationType": api.authentication_type,
        "additionalAuthenticationProviders": api.additional_authentication_providers or [],
        "apiKeys": [
            {"id": key.key_id, "expires": int(unix_time(key.expires))}
            for key in list(api.api_keys.values())
            if unix_time(key.expires) > now
        ],
        "schema": api.graphql_schema.definition if api.graphql_schema else None,
        "schemaStatus": api.graphql_schema.status if api.graphql_schema else None,
        "dataSources": list(_store(api, "data_sources").values()),
        "resolvers": list(_store(api, "resolvers").values()),
        "functions": list(_store(api, "functions").values()),
    }
    body["etag"] = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return body


def find_config(api_id: str) -> dict | None:
    for account_id, region, api in _all_apis():
        if api.api_id == api_id:
            return config(account_id, region, api)
    return None


def apis() -> dict:
    """Every API with its etag; `current` is the one the simulator serves: the newest with a built schema."""
    found = sorted(_all_apis(), key=lambda found: found[2].__dict__.get("sandbox_created", 0))
    listed = [config(account_id, region, api) for account_id, region, api in found]
    served = [c for c in listed if c["schemaStatus"] == "SUCCESS"]
    summary = [{k: c[k] for k in ("apiId", "name", "accountId", "region", "schemaStatus", "etag")} for c in listed]
    current = {"apiId": served[-1]["apiId"], "etag": served[-1]["etag"]} if served else None
    return {"current": current, "apis": summary}
