import json
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import boto3
import pytest

from ansible_collections.iotfleet.aws.plugins.modules import appsync_graphql


class GraphQLStandIn(BaseHTTPRequestHandler):
    """Records each request; answers with the canned response of the server."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"headers": dict(self.headers), "body": body})
        answer = json.dumps(self.server.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), GraphQLStandIn)
    server.requests = []
    server.answer = {"data": {"getDevice": {"device_id": "4827E2E59190", "owner": "alice"}}}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}/graphql"
    yield server
    server.shutdown()
    server.server_close()


QUERY = "query GetDevice($id: ID!) { getDevice(device_id: $id) { device_id owner } }"
MUTATION = 'mutation Upsert($input: UpsertDeviceInput!) { upsertDevice(input: $input) { device_id } }'


def test_query_is_signed_sends_variables_and_reports_no_change(aws, run_module, endpoint):
    result = run_module(appsync_graphql, {"url": endpoint.url, "query": QUERY, "variables": {"id": "4827E2E59190"}})

    assert result["changed"] is False
    assert result["data"]["getDevice"]["owner"] == "alice"
    sent = endpoint.requests[0]
    assert sent["body"] == {"query": QUERY, "variables": {"id": "4827E2E59190"}}
    assert sent["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert f"/{aws}/appsync/aws4_request" in sent["headers"]["Authorization"]


def test_mutation_reports_change_and_is_not_sent_in_check_mode(aws, run_module, endpoint):
    args = {"url": endpoint.url, "query": MUTATION, "variables": {"input": {"device_id": "4827E2E59190"}}}

    predicted = run_module(appsync_graphql, args, check_mode=True)
    assert predicted["changed"] is True
    assert endpoint.requests == []

    sent = run_module(appsync_graphql, args)
    assert sent["changed"] is True
    assert len(endpoint.requests) == 1


def test_graphql_errors_fail_with_their_messages(aws, run_module, endpoint):
    endpoint.answer = {"data": None, "errors": [{"message": "Unauthorized", "errorType": "UnauthorizedException"}]}

    result = run_module(appsync_graphql, {"url": endpoint.url, "query": QUERY}, expect_failure=True)

    assert result["msg"] == "GraphQL errors: Unauthorized"


def test_api_is_found_by_name_and_an_unknown_name_is_named(aws, run_module, endpoint):
    client = boto3.client("appsync", region_name=aws)
    client.create_graphql_api(name="iotfleet_api", authenticationType="AWS_IAM")

    found = run_module(appsync_graphql, {"api_name": "iotfleet_api", "query": MUTATION}, check_mode=True)
    assert found["url"] == client.list_graphql_apis()["graphqlApis"][0]["uris"]["GRAPHQL"]

    missing = run_module(appsync_graphql, {"api_name": "nope", "query": QUERY}, expect_failure=True)
    assert missing["msg"].startswith("api_name: 'nope' must name exactly one AppSync API")


def test_unreachable_endpoint_is_a_clear_error(aws, run_module):
    result = run_module(appsync_graphql, {"url": "http://127.0.0.1:9/graphql", "query": QUERY}, expect_failure=True)

    assert "is unreachable" in result["msg"]
