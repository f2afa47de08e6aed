"""`make serve` as a process: a busy port is one clear line and a non-zero exit; a stopped server is gone fast."""
import concurrent.futures
import datetime
import signal
import subprocess
import sys
import time

import grpc
import pytest

from rsvp.client import ReservationClient
from grpc_server import SERVER_OPTIONS, build_server
from harness.local_server import LocalServer
from harness.moto import ROOT


def _serve(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devserver.serve", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_a_busy_http_port_ends_serve_with_one_line(local_server):
    busy = local_server.url.rsplit(":", 1)[1]
    began = time.monotonic()
    second = _serve("--port", busy, "--grpc-port", "0")
    assert second.returncode != 0 and second.stdout == ""
    assert second.stderr.splitlines() == [
        f"my-reservation: port {busy} is already in use (set PORT=... or --port)"]
    assert time.monotonic() - began < 10  # refused before the embedded DynamoDB starts


def test_a_busy_grpc_port_ends_serve_with_one_line(local_server):
    busy = local_server.grpc_target.rsplit(":", 1)[1]
    second = _serve("--port", "0", "--grpc-port", busy)
    assert second.returncode != 0 and second.stdout == ""
    assert second.stderr.splitlines() == [
        f"my-reservation: gRPC port {busy} is already in use (set GRPC_PORT=... or --grpc-port)"]


def test_grpc_servers_do_not_share_a_port():
    """grpcio sets SO_REUSEPORT unless told not to: two servers would then split the clients between them."""
    first, port = build_server(None, "127.0.0.1", 0)
    try:
        second = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1), options=SERVER_OPTIONS)
        with pytest.raises(RuntimeError):
            second.add_insecure_port(f"127.0.0.1:{port}")
    finally:
        first.stop(None)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_server_exits_within_5_seconds(stop_signal):
    server = LocalServer()
    try:
        start = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
        ReservationClient(server.url).reserve("room", "alice", start, start + datetime.timedelta(hours=1))
        server.process.send_signal(stop_signal)
        began = time.monotonic()
        assert server.process.wait(timeout=10) == 0
        assert time.monotonic() - began < 5
    finally:
        server.stop()
