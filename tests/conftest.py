import contextlib
import json
import pathlib
import subprocess
import sys

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

import tests.hypothesis_profiles  # noqa: F401  (registers and loads the hypothesis profile before any test module)
from devserver.dynamodb import FAKE_CREDENTIALS, create_table
from tests.helpers import PATH, RESPONSE_TYPES, ConnectAnswer, encode

ROOT = pathlib.Path(__file__).resolve().parent.parent
# chalice.test.Client applies the dev stage's environment from .chalice/config.json
TABLE = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]["environment_variables"][
    "RESERVATION_TABLE"]


@contextlib.contextmanager
def moto_table():
    """An in-process moto DynamoDB with the table of infra/, and the app pointed at it."""
    from chalicelib.runtime import default_api

    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
        patch.setenv("RESERVATION_TABLE", TABLE)
        with mock_aws():
            create_table(TABLE)
            client = boto3.client("dynamodb")
            default_api.cache_clear()
            try:
                yield client
            finally:
                default_api.cache_clear()


@pytest.fixture
def dynamodb():
    with moto_table() as client:
        yield client


def scan_all(client, table=TABLE) -> list:
    """Every item of the table, strongly consistent (the checker's own scan)."""
    from rsvp.checker import scan_items

    return list(scan_items(client, table))


class AppCaller:
    """Calls the Chalice app in process, as chalice.test.Client does for `chalice local`."""

    def __init__(self, client: Client):
        self.client = client

    def raw(self, method: str, body: bytes, headers: dict):
        answer = self.client.http.post(PATH + method, headers=headers, body=body)
        return answer.status_code, answer.headers, answer.body

    def __call__(self, method: str, request, codec: str = "proto", headers: dict = None) -> ConnectAnswer:
        sent = {"content-type": f"application/{codec}", **(headers or {})}
        status, answer_headers, body = self.raw(method, encode(request, codec), sent)
        return ConnectAnswer(status, answer_headers, body, RESPONSE_TYPES[method], codec)


@pytest.fixture
def call(dynamodb):
    import app

    with Client(app.app) as client:
        yield AppCaller(client)


class LocalServer:
    """`make serve` in a child process: the Connect API and the embedded DynamoDB on free ports."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devserver.serve", "--port", "0", "--grpc-port", "0"], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self._announced("Connect API on ")
        self.grpc_target = self._announced("gRPC on ")
        self.dynamodb_url = self._announced("embedded DynamoDB on ").split(",")[0]
        self.table = "my-reservation-local"

    def _announced(self, marker: str) -> str:
        for line in self.process.stdout:
            if marker in line:
                return line.split(marker, 1)[1].strip()
        raise RuntimeError("the local server stopped before announcing " + marker)

    def dynamodb(self):
        return boto3.client("dynamodb", endpoint_url=self.dynamodb_url, region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def local_server():
    server = LocalServer()
    yield server
    server.stop()
