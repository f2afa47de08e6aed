"""Embedded DynamoDB for the local run and the tests: moto, with the table of infra/.

moto applies requests from several threads at once, and its transaction
rollback is not thread-safe (concurrent failing transactions were seen to
lose other acknowledged writes). AWS applies each DynamoDB call atomically,
so the server here applies one request at a time.

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
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
from moto.moto_server.werkzeug_app import (
    BackendRequest,
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from devserver import moto_patches, packed_items

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE_TEMPLATE = ROOT / "infra" / "table.json"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}

moto_patches.apply()


APPLY_ONE_AT_A_TIME = threading.Lock()


class OneAtATime:
    """WSGI wrapper that serialises requests: each call stays atomic, as on AWS."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        with APPLY_ONE_AT_A_TIME, packed_items.applying():
            # Read the whole answer inside the lock: WSGI bodies can be lazy.
            return [b"".join(self.app(environ, start_response))]


class DynamoDBRequestHandler(MotoRequestHandler):
    """DynamoDB and DynamoDB Streams calls go straight to moto's handlers, as its in-process mock
    sends them, and are answered on a connection kept alive; anything else (CloudFormation,
    /moto-api) through werkzeug, moto's dispatcher and its Flask apps.

    werkzeug closes every connection after its answer, so each call cost the app a new TCP
    connection and this server a new thread; and moto's dispatcher found a request's backend per
    host, then per URL pattern of every service, and wrapped it in Flask. Together they were about
    a third of a reserve's time through `make serve`.
    """

    disable_nagle_algorithm = True  # an answer's headers and body are two writes: no delayed-ACK wait between
    TARGETS = (
        ("DynamoDB_20120810.", DynamoHandler.dispatch),
        ("DynamoDBStreams_20120810.", DynamoDBStreamsHandler.dispatch),
    )

    def do_POST(self):
        target = self.headers.get("X-Amz-Target", "")
        dispatch = next((call for prefix, call in self.TARGETS if target.startswith(prefix)), None)
        if dispatch is None or self.path != "/" or "Content-Length" not in self.headers:
            return self.run_wsgi()
        body = self.rfile.read(int(self.headers["Content-Length"]))  # all of it: the connection lives on
        environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        request = BackendRequest(environ)
        with APPLY_ONE_AT_A_TIME, packed_items.applying():
            status, headers, answer = dispatch(request, request.raw_url, dict(request.headers))
        answer = answer.encode() if isinstance(answer, str) else answer
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_request(self, *args, **kwargs) -> None:
        """One line per DynamoDB call would drown the app's own log."""


class EmbeddedDynamoDB:
    """A moto server on 127.0.0.1 in a daemon thread; `endpoint_url` once started."""

    def __init__(self, port: int = 0):
        app = OneAtATime(DomainDispatcherApplication(create_backend_app))
        self.server = make_server("127.0.0.1", port, app, threaded=True, request_handler=DynamoDBRequestHandler)
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="embedded-dynamodb")

    def start(self) -> "EmbeddedDynamoDB":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


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
