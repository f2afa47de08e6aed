"""Run my-reservation on localhost with an embedded DynamoDB: nothing to configure.

Two endpoints over one store: the Connect API (HTTP, PORT, default 8000) and
native gRPC (GRPC_PORT, default 50051). The Connect API is Chalice's local
gateway (what `chalice local` runs), with two additions: it reads chunked
request bodies (connect-python and other HTTP/1.1 clients send them for
streaming calls), and it streams server-stream answers as they come, so
`listen` is a true long-lived stream here (on Lambda it is a long poll).
Beside them run what AWS runs on a schedule and on the table's stream: the
hold sweep and the change-feed push (devserver/background.py).

The local server trusts the `x-tenant-id` header (TENANT_SOURCE=header), signs
page tokens with a key of its own, and hands out change events 200 ms after
they commit (FEED_SETTLE_MS). Data lives as long as the process.
"""

import argparse
import errno
import functools
import os
import secrets
import select
import signal
import socket
import sys
import threading

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, create_local_server

from chalicelib import connect
from chalicelib.api import METHODS, SERVICE_NAME
from chalicelib.runtime import default_api
from devserver.background import start_pump, start_sweep
from devserver.dynamodb import FAKE_CREDENTIALS, DynamoDBProcess, create_table
from grpc_server import PortUnavailable, bind_problem, build_server

MAX_CHUNKED_BODY_BYTES = 8 * 1024 * 1024
STOP_GRACE_SECONDS = 2  # for gRPC calls in flight when stopped: the process is gone within 5 s
LOCAL_ENVIRONMENT = {"TENANT_SOURCE": "header", "FEED_SETTLE_MS": "200"}  # unless set otherwise
PUMP_SECONDS = 0.2
STREAM_PREFIX = f"/{SERVICE_NAME}/"


class ChunkedBodyRequestHandler(ChaliceRequestHandler):
    """Chalice's local handler reads a body only by Content-Length."""

    disable_nagle_algorithm = True  # an answer's headers and body are separate writes: no delayed-ACK wait

    def _parse_payload(self):
        if "chunked" not in self.headers.get("transfer-encoding", "").lower():
            return super()._parse_payload()
        body = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            body += self.rfile.read(size)
            self.rfile.readline()
            if len(body) > MAX_CHUNKED_BODY_BYTES:
                break  # the Connect codec answers "too large"
        headers = dict(self.headers)
        headers.pop("Transfer-Encoding", None)
        headers["Content-Length"] = str(len(body))
        return headers, bytes(body)

    def do_POST(self):
        """Server streams are sent as they come (chunked); everything else goes through Chalice."""
        method = METHODS.get(self.path.removeprefix(STREAM_PREFIX)) if self.path.startswith(STREAM_PREFIX) else None
        if method is None or not method.server_streaming:
            return super().do_POST()
        headers, body = self._parse_payload()
        status, answer_headers, chunks = connect.handle_streaming(
            default_api(),
            method.name,
            "POST",
            {name.lower(): value for name, value in headers.items()},
            body or b"",
            keep_going=lambda elapsed, sent: not self._client_gone(),
        )
        self.send_response(status)
        for name, value in answer_headers.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _client_gone(self) -> bool:
        """Has the client closed the connection? (a readable socket with nothing to read)"""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def start(host: str, port: int, table_name: str):
    """Start the embedded DynamoDB (a child process) and the Connect server; returns (server, dynamodb)."""
    dynamodb = DynamoDBProcess()
    try:
        import app as chalice_app  # while the child starts

        dynamodb.wait_ready()
        for name, value in {
            **FAKE_CREDENTIALS,
            **LOCAL_ENVIRONMENT,
            "PAGE_TOKEN_SECRET": secrets.token_hex(16),
        }.items():
            os.environ.setdefault(name, value)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.endpoint_url
        os.environ["RESERVATION_TABLE"] = table_name
        create_table(table_name, dynamodb.endpoint_url)
        return _connect_server(chalice_app, host, port), dynamodb
    except BaseException:
        dynamodb.stop()
        raise


def _connect_server(chalice_app, host: str, port: int):
    default_api.cache_clear()
    config = Config.create(chalice_stage="dev", app_name=chalice_app.app.app_name, lambda_timeout=30)
    try:
        server = create_local_server(chalice_app.app, config, host, port)
    except OSError as error:
        reason = "already in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error)).lower()
        raise PortUnavailable(f"port {port} is {reason}") from error
    server.server.RequestHandlerClass = functools.partial(
        ChunkedBodyRequestHandler, app_object=chalice_app.app, config=config
    )
    return server


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "8000")),
        help="HTTP port of the Connect API (default $PORT or 8000)",
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=int(os.environ.get("GRPC_PORT", "50051")),
        help="port of the native gRPC server (default $GRPC_PORT or 50051)",
    )
    parser.add_argument("--table", default="my-reservation-local", help="name of the embedded table")
    parser.add_argument(
        "--sweep-seconds",
        type=float,
        default=float(os.environ.get("SWEEP_SECONDS", "60")),
        help="how often expired holds are swept (default $SWEEP_SECONDS or 60, as on AWS)",
    )
    options = parser.parse_args(argv)
    try:
        serve(options)
    except PortUnavailable as error:
        setting = "GRPC_PORT=... or --grpc-port" if str(error).startswith("gRPC") else "PORT=... or --port"
        sys.exit(f"my-reservation: {error} (set {setting})")
    except KeyboardInterrupt:
        pass


def serve(options) -> None:
    """Both servers until SIGTERM or Ctrl-C; PortUnavailable (before anything starts) for a busy port."""
    for name, port in (("port", options.port), ("gRPC port", options.grpc_port)):
        problem = bind_problem(options.host, port)
        if problem:
            raise PortUnavailable(f"{name} {port} is {problem}")
    server, dynamodb = start(options.host, options.port, options.table)
    try:
        grpc_server, grpc_port = build_server(default_api(), options.host, options.grpc_port)
    except BaseException:
        dynamodb.stop()
        raise

    def stop(*_):
        # serve_forever returns once shutdown() is called from another thread
        threading.Thread(target=server.server.shutdown, daemon=True).start()

    start_sweep(options.sweep_seconds)
    start_pump(dynamodb.endpoint_url, options.table, PUMP_SECONDS)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"my-reservation: Connect API on http://{options.host}:{server.server.server_port}", flush=True)
    print(f"my-reservation: gRPC on {options.host}:{grpc_port}", flush=True)
    print(f"my-reservation: embedded DynamoDB on {dynamodb.endpoint_url}, table {options.table}", flush=True)
    print("my-reservation: change events it would publish on EventBridge are printed on stderr", flush=True)
    print("my-reservation: Ctrl-C stops it; the data goes with it", flush=True)
    try:
        server.server.serve_forever()
    finally:
        grpc_server.stop(STOP_GRACE_SECONDS).wait()
        server.server.server_close()
        dynamodb.stop()


if __name__ == "__main__":
    main()
