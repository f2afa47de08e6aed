"""Embedded DynamoDB for the local run and the tests: moto, with the table of infra/.

AWS applies each DynamoDB call atomically; the server here applies one
request at a time, in one thread.

Importing this module patches moto (devserver/moto_patches.py) so that a
call costs what it touches, not what the table holds, and keeps nothing
alive after it: in-process `mock_aws` tests import it too (tests/conftest.py).
"""

import argparse
import io
import json
import pathlib
import signal
import subprocess
import sys
import urllib.parse

from moto.dynamodb.responses import DynamoHandler
from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
from moto.moto_server.werkzeug_app import BackendRequest, DomainDispatcherApplication, create_backend_app

from devserver import moto_patches, packed_items
from devserver.one_thread_http import OneThreadHTTPServer, Request

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE_TEMPLATE = ROOT / "infra" / "table.json"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}

moto_patches.apply()


class EmbeddedDynamoDB:
    """moto on 127.0.0.1, served by one thread (devserver/one_thread_http.py); `endpoint_url` once made.

    DynamoDB and DynamoDB Streams calls go straight to moto's handlers, as its in-process mock sends
    them; anything else (CloudFormation, /moto-api) through moto's WSGI dispatcher and its Flask apps.
    One thread means one call at a time: each call is atomic, as on AWS (moto's transaction rollback
    is not thread-safe: concurrent failing transactions were seen to lose other acknowledged writes).
    """

    TARGETS = (
        ("DynamoDB_20120810.", DynamoHandler.dispatch),
        ("DynamoDBStreams_20120810.", DynamoDBStreamsHandler.dispatch),
    )

    def __init__(self, port: int = 0):
        self.wsgi = DomainDispatcherApplication(create_backend_app)
        self.server = OneThreadHTTPServer("127.0.0.1", port, self.answer)
        self.endpoint_url = f"http://127.0.0.1:{self.server.port}"

    def start(self) -> "EmbeddedDynamoDB":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def answer(self, request: Request) -> tuple:
        """(status, headers, body) of one call; what the items it touched take at rest is packed after it."""
        environ = _environ(request, self.server.port)
        target = request.headers.get("x-amz-target", "")
        dispatch = next((call for prefix, call in self.TARGETS if target.startswith(prefix)), None)
        with packed_items.applying():
            if dispatch is None or request.method != "POST" or request.target != "/":
                return self._through_wsgi(environ)
            backend_request = BackendRequest(environ)
            status, headers, body = dispatch(backend_request, backend_request.raw_url, dict(backend_request.headers))
        return status, list(headers.items()), body.encode() if isinstance(body, str) else body

    def _through_wsgi(self, environ: dict) -> tuple:
        started = {}

        def start_response(status, headers, exc_info=None):
            started.update(status=int(status.split(" ", 1)[0]), headers=headers)
            return chunks.append

        chunks = []
        result = self.wsgi(environ, start_response)
        try:
            chunks += result
        finally:
            getattr(result, "close", lambda: None)()
        return started["status"], started["headers"], b"".join(chunks)


def _environ(request: Request, port: int) -> dict:
    """The WSGI environ of a request, as werkzeug's server builds it (headers with '_' left out, as it does)."""
    path, _, query = request.target.partition("?")
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path, encoding="latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": request.target,
        "RAW_URI": request.target,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": request.client[0],
        "REMOTE_PORT": request.client[1],
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        if "_" not in name and name != "content-length":
            key = name.upper().replace("-", "_")
            environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    return environ


class DynamoDBProcess:
    """The embedded DynamoDB in a child process (`python -m devserver.dynamodb`), as `make serve` runs it.

    moto's work per call is most of a reserve's; in a process of its own it
    runs on the second core, beside the app's (one Python process uses one).
    The child ends with its parent (its stdin closes) and ignores Ctrl-C: the
    parent stops it.
    """

    def __init__(self, port: int = 0):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devserver.dynamodb", "--port", str(port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.endpoint_url = None

    def wait_ready(self) -> "DynamoDBProcess":
        line = self.process.stdout.readline()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the embedded DynamoDB did not start (exit status {self.process.poll()})")
        self.endpoint_url = line.strip()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def table_properties() -> dict:
    """The table exactly as infra/ deploys it."""
    template = json.loads(TABLE_TEMPLATE.read_text())
    return template["Resources"]["ReservationTable"]["Properties"]


def create_table(table_name: str, endpoint_url: str | None = None) -> None:
    """Deploy infra/table.json as a CloudFormation stack (into moto), as production deploys it.

    moto's CloudFormation leaves out the template's TimeToLiveSpecification,
    so that one property is applied afterwards through the DynamoDB API.
    """
    import boto3

    cloudformation = boto3.client("cloudformation", endpoint_url=endpoint_url)
    cloudformation.create_stack(
        StackName=f"{table_name}-table",
        TemplateBody=TABLE_TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": "TableName", "ParameterValue": table_name}],
    )
    cloudformation.get_waiter("stack_create_complete").wait(StackName=f"{table_name}-table")
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url)
    dynamodb.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification=table_properties()["TimeToLiveSpecification"]
    )


def main(argv=None) -> None:
    """The child process of DynamoDBProcess: prints its endpoint, serves until its stdin closes."""
    parser = argparse.ArgumentParser(description="embedded DynamoDB (moto) on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    server = EmbeddedDynamoDB(options.port).start()
    print(server.endpoint_url, flush=True)
    sys.stdout = sys.stderr  # nobody reads the pipe any more
    sys.stdin.read()  # until the parent closes it (or is gone)


if __name__ == "__main__":
    main()
