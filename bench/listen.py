"""Issue 17: how soon `listen` delivers a change to a connected client on `make serve`, and resuming.

One local server (harness.local_server.LocalServer: `make serve` in a child process, as a user runs
it: the change feed hands out events FEED_SETTLE_MS = 200 ms after their time, listen polls every
100 ms). Two clients listen to one resource at once:
  gRPC      the native server (LocalServer.grpc_target), called with grpc's generic API
            (channel.unary_stream with chalicelib.gen messages);
  Connect   the HTTP server stream of make serve (POST .../listen, application/connect+proto), read
            chunk by chunk as it arrives.
Latency: `--reserves` reserves one after the other through rsvp.client (Connect); for each, the time
from sending the reserve to its event reaching each listener (also from the reserve's answer). Goal:
p99 < 1 s.
Resume: a listener is disconnected, `--missed` reserves are made, it reconnects with the cursor of the
last event it got, `--missed` more are made; every event must arrive once, in order, none missing.

    python -m bench.listen [--reserves 50] [--missed 20]
"""

import argparse
import datetime
import http.client
import json
import queue
import random
import statistics
import struct
import threading
import time
import urllib.parse
import uuid

import grpc

from chalicelib.api import SERVICE_NAME
from chalicelib.gen import reservation_pb2 as pb
from harness.local_server import LocalServer
from rsvp.client import ReservationClient

from .common import p, table

GOAL_S = 1.0
EPOCH = datetime.datetime(2029, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


class GrpcListener:
    def __init__(self, target: str, resource_id: str, after: str = ""):
        self.channel = grpc.insecure_channel(target)
        listen = self.channel.unary_stream(
            f"/{SERVICE_NAME}/listen",
            request_serializer=pb.ListenRequest.SerializeToString,
            response_deserializer=pb.ChangeEvent.FromString,
        )
        self.call = listen(pb.ListenRequest(resource_id=resource_id, after=after))
        self.events = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.put((time.perf_counter(), event))
        except grpc.RpcError:
            pass  # cancelled by close()

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


class ConnectListener:
    """The Connect server stream of make serve, read as its chunks arrive."""

    def __init__(self, url: str, resource_id: str, after: str = ""):
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        body = pb.ListenRequest(resource_id=resource_id, after=after).SerializeToString()
        self.connection.request(
            "POST",
            f"/{SERVICE_NAME}/listen",
            body=struct.pack(">BI", 0, len(body)) + body,
            headers={"Content-Type": "application/connect+proto", "Connect-Protocol-Version": "1"},
        )
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.status
        self.events = queue.Queue()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while not self.closed:
                chunk = self.response.read1(65536)
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 5:
                    flags, length = struct.unpack(">BI", buffer[:5])
                    if len(buffer) < 5 + length:
                        break
                    message, buffer = buffer[5 : 5 + length], buffer[5 + length :]
                    if flags & 0x02:
                        end = json.loads(message or b"{}")
                        if "error" in end:
                            raise RuntimeError(f"listen ended with {end['error']}")
                        return
                    self.events.put((time.perf_counter(), pb.ChangeEvent.FromString(message)))
        except Exception:
            if not self.closed:
                raise

    def close(self) -> None:
        self.closed = True
        try:
            self.connection.sock.shutdown(2)
        except OSError:
            pass
        self.connection.close()


def _wait_for(listener, reservation_id: str, timeout: float = 10.0):
    """(time received, event) of the event of `reservation_id`; earlier events are dropped."""
    deadline = time.perf_counter() + timeout
    while True:
        received, event = listener.events.get(timeout=max(0.01, deadline - time.perf_counter()))
        if event.reservation.id == reservation_id:
            return received, event


def latency(server: LocalServer, reserves: int) -> dict:
    client = ReservationClient(server.url)
    resource_id = f"feed-{uuid.uuid4().hex[:8]}"
    listeners = {
        "gRPC": GrpcListener(server.grpc_target, resource_id),
        "Connect": ConnectListener(server.url, resource_id),
    }
    try:
        time.sleep(0.5)  # both streams open and polling
        warm = client.reserve(resource_id, "watcher", EPOCH - HOUR, EPOCH)
        for listener in listeners.values():
            _wait_for(listener, warm.id)
        from_sent = {name: [] for name in listeners}
        from_answer = {name: [] for name in listeners}
        chance = random.Random(17)
        for n in range(reserves):
            start = EPOCH + n * HOUR
            sent = time.perf_counter()
            made = client.reserve(resource_id, f"user{n % 5}", start, start + HOUR)
            answered = time.perf_counter()
            for name, listener in listeners.items():
                received, _ = _wait_for(listener, made.id)
                from_sent[name].append(received - sent)
                from_answer[name].append(received - answered)
            time.sleep(chance.uniform(0, 0.05))
    finally:
        for listener in listeners.values():
            listener.close()
    return {"from_sent": from_sent, "from_answer": from_answer}


def resume(server: LocalServer, kind: str, missed: int) -> dict:
    """Disconnect, miss `missed` reserves, reconnect from the last cursor, then `missed` more."""
    client = ReservationClient(server.url)
    resource_id = f"resume-{kind.lower()}-{uuid.uuid4().hex[:8]}"
    make = (
        (lambda after="": GrpcListener(server.grpc_target, resource_id, after))
        if kind == "gRPC"
        else (lambda after="": ConnectListener(server.url, resource_id, after))
    )
    listener = make()
    time.sleep(0.5)
    first = client.reserve(resource_id, "watcher", EPOCH - HOUR, EPOCH)
    _, event = _wait_for(listener, first.id)
    cursor = event.cursor
    listener.close()
    expected = []
    for n in range(missed):
        start = EPOCH + n * HOUR
        expected.append(client.reserve(resource_id, "u", start, start + HOUR).id)
    listener = make(cursor)
    for n in range(missed, 2 * missed):
        start = EPOCH + n * HOUR
        expected.append(client.reserve(resource_id, "u", start, start + HOUR).id)
    got = []
    deadline = time.perf_counter() + 10
    try:
        while len(got) < len(expected) and time.perf_counter() < deadline:
            try:
                _, event = listener.events.get(timeout=0.5)
            except queue.Empty:
                continue
            got.append(event.reservation.id)
        time.sleep(0.5)  # anything more (a duplicate) would arrive now
        while not listener.events.empty():
            got.append(listener.events.get()[1].reservation.id)
    finally:
        listener.close()
    return {
        "kind": kind,
        "expected": len(expected),
        "received": len(got),
        "missing": len(set(expected) - set(got)),
        "duplicates": len(got) - len(set(got)),
        "in_order": got == expected[: len(got)],
    }


def run(reserves: int = 50, missed: int = 20, server: LocalServer = None) -> dict:
    """On `server` if given (left running), else on a LocalServer of its own."""
    own = server is None
    server = server or LocalServer()
    try:
        measured = latency(server, reserves)
        resumed = [resume(server, kind, missed) for kind in ("gRPC", "Connect")]
    finally:
        if own:
            server.stop()
    rows = []
    for name in measured["from_sent"]:
        sent, answer = measured["from_sent"][name], measured["from_answer"][name]
        rows.append(
            [
                name,
                len(sent),
                f"{statistics.median(sent) * 1000:.0f}",
                f"{p(sent, 0.99) * 1000:.0f}",
                f"{max(sent) * 1000:.0f}",
                f"{statistics.median(answer) * 1000:.0f}",
                f"{p(answer, 0.99) * 1000:.0f}",
            ]
        )
    print("listen on make serve (change events handed out 200 ms after their time, listen polls every 100 ms):")
    table(
        ["client", "events", "reserve sent -> event: p50 ms", "p99 ms", "max ms", "answer -> event: p50 ms", "p99 ms"],
        rows,
    )
    print(f"goal: p99 < {GOAL_S * 1000:.0f} ms")
    for r in resumed:
        print(
            f"resume over {r['kind']}: disconnected, {missed} reserves missed, reconnected from the last cursor, "
            f"{missed} more: {r['received']} of {r['expected']} events received, {r['missing']} missing, "
            f"{r['duplicates']} duplicated, {'in order' if r['in_order'] else 'OUT OF ORDER'}"
        )
    return {"latency": measured, "resume": resumed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reserves", type=int, default=50)
    parser.add_argument("--missed", type=int, default=20)
    options = parser.parse_args()
    run(options.reserves, options.missed)


if __name__ == "__main__":
    main()
