"""Fixtures of the whole suite: moto in process, the Chalice app in process, `make serve` in a child."""

import pytest
from chalice.test import Client

import tests.hypothesis_profiles  # noqa: F401  (registers and loads the hypothesis profile before any test module)
from harness.local_server import LocalServer
from harness.moto import moto_table
from tests.helpers import PATH, RESPONSE_TYPES, ConnectAnswer, encode


@pytest.fixture
def dynamodb():
    with moto_table() as client:
        yield client


class AppCaller:
    """Calls the Chalice app in process, as chalice.test.Client does for `chalice local`."""

    def __init__(self, client: Client):
        self.client = client

    def raw(self, method: str, body: bytes, headers: dict):
        answer = self.client.http.post(PATH + method, headers=headers, body=body)
        return answer.status_code, answer.headers, answer.body

    def __call__(self, method: str, request, codec: str = "proto", headers: dict | None = None) -> ConnectAnswer:
        sent = {"content-type": f"application/{codec}", **(headers or {})}
        status, answer_headers, body = self.raw(method, encode(request, codec), sent)
        return ConnectAnswer(status, answer_headers, body, RESPONSE_TYPES[method], codec)


@pytest.fixture
def call(dynamodb):
    import app

    with Client(app.app) as client:
        yield AppCaller(client)


@pytest.fixture(scope="session")
def local_server():
    server = LocalServer()
    yield server
    server.stop()
