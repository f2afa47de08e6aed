"""Embedded DynamoDB for the local run and the tests: moto, with the table of infra/.

moto applies requests from several threads at once, and its transaction
rollback is not thread-safe (concurrent failing transactions were seen to
lose other acknowledged writes). AWS applies each DynamoDB call atomically,
so the server here applies one request at a time.

Importing this module patches moto (devserver/moto_patches.py) so that a
call costs what it touches, not what the table holds, and keeps nothing
alive after it: in-process `mock_aws` tests import it too (tests/conftest.py).
"""
import json
import pathlib
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from devserver import moto_patches

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE_TEMPLATE = ROOT / "infra" / "table.json"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}

moto_patches.apply()


class OneAtATime:
    """WSGI wrapper that serialises requests: each DynamoDB call stays atomic, as on AWS."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Read the whole answer inside the lock: WSGI bodies can be lazy.
            return [b"".join(self.app(environ, start_response))]


class QuietRequestHandler(MotoRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        """One line per DynamoDB call would drown the app's own log."""


class EmbeddedDynamoDB:
    """A moto server on 127.0.0.1 in a daemon thread; `endpoint_url` once started."""

    def __init__(self, port: int = 0):
        app = OneAtATime(DomainDispatcherApplication(create_backend_app))
        self.server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietRequestHandler)
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="embedded-dynamodb")

    def start(self) -> "EmbeddedDynamoDB":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


def table_properties() -> dict:
    """The table exactly as infra/ deploys it."""
    template = json.loads(TABLE_TEMPLATE.read_text())
    return template["Resources"]["ReservationTable"]["Properties"]


def create_table(table_name: str, endpoint_url: str = None) -> None:
    """Deploy infra/table.json as a CloudFormation stack (into moto), as production deploys it.

    moto's CloudFormation leaves out the template's TimeToLiveSpecification,
    so that one property is applied afterwards through the DynamoDB API.
    """
    import boto3

    cloudformation = boto3.client("cloudformation", endpoint_url=endpoint_url)
    cloudformation.create_stack(StackName=f"{table_name}-table", TemplateBody=TABLE_TEMPLATE.read_text(),
                                Parameters=[{"ParameterKey": "TableName", "ParameterValue": table_name}])
    cloudformation.get_waiter("stack_create_complete").wait(StackName=f"{table_name}-table")
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url)
    dynamodb.update_time_to_live(TableName=table_name,
                                 TimeToLiveSpecification=table_properties()["TimeToLiveSpecification"])
