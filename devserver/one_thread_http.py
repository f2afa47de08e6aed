"""A small HTTP/1.1 server in one thread, for the embedded DynamoDB: connections kept alive, one request
answered at a time.

The embedded DynamoDB must apply one call at a time anyway (moto is not thread-safe). werkzeug's server
gave every connection a thread that parsed its request (http.server, the email package), then queued on
one lock: with 8 clients that was a third of the embedded DynamoDB's time. Here one thread waits on every
connection at once (selectors), reads each request whole (Content-Length bodies, what botocore sends),
answers it and goes on to the next.
"""

import selectors
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from http import HTTPStatus

MAX_HEAD_BYTES = 64 * 1024
SEND_TIMEOUT_SECONDS = 30  # a client that stops reading its answer is dropped, not waited for forever
READ_BYTES = 256 * 1024


class Request:
    __slots__ = ("body", "client", "headers", "method", "target", "version")

    def __init__(self, method: str, target: str, version: str, headers: dict, body: bytes, client: tuple):
        self.method, self.target, self.version = method, target, version
        self.headers, self.body, self.client = headers, body, client  # headers: lower-case name -> value

    def keeps_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        return connection != "close" if self.version == "HTTP/1.1" else connection == "keep-alive"


class _BadRequest(Exception):
    pass


def _parse_head(head: bytes) -> tuple:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(f"bad request line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(f"bad header line {line[:80]!r}")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return parts[0], parts[1], parts[2], headers


def response_bytes(status: int, headers: list, body: bytes, keep_alive: bool) -> bytes:
    """The whole answer: status line, headers (ours set Content-Length and Connection), body."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [
        f"{name}: {value}"
        for name, value in headers
        if name.lower() not in ("content-length", "connection", "transfer-encoding")
    ]
    lines += [f"Content-Length: {len(body)}", "Connection: " + ("keep-alive" if keep_alive else "close")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class OneThreadHTTPServer:
    """Serves `answer(request) -> (status, [(name, value), ...], body bytes)` on host:port until stop()."""

    def __init__(self, host: str, port: int, answer: Callable[[Request], tuple]):
        self.answer = answer
        self.listener = socket.create_server((host, port))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopping = False
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="embedded-dynamodb")

    def start(self) -> "OneThreadHTTPServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._wake_writer.send(b"x")  # the thread may see _stopping first and end: both ends stay open till here
        self._thread.join()
        self._wake_reader.close()
        self._wake_writer.close()

    def _serve(self) -> None:
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        try:
            while not self._stopping:
                for key, _ in self._selector.select():
                    if key.fileobj is self._wake_reader:
                        continue
                    try:
                        if key.fileobj is self.listener:
                            self._accept()
                        else:
                            self._read(key.fileobj, key.data)
                    except BaseException:  # whatever one connection does (a SystemExit too), the others are served
                        traceback.print_exc()
                        if key.fileobj is not self.listener:
                            self._close(key.fileobj)
        finally:
            if not self._stopping:  # never expected: say so, with what ended it, where the tests show it
                print("embedded DynamoDB: the serving thread ended unexpectedly", file=sys.stderr, flush=True)
                traceback.print_exc()
            for key in list(self._selector.get_map().values()):
                if key.fileobj is not self._wake_reader:
                    key.fileobj.close()
            self._selector.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, client = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # a client gone before it was accepted (ECONNABORTED), or no file descriptor left
                traceback.print_exc()
                return
            try:
                connection.settimeout(SEND_TIMEOUT_SECONDS)  # reads happen only when the selector says readable
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._selector.register(connection, selectors.EVENT_READ, {"buffer": bytearray(), "client": client})
            except OSError:
                connection.close()

    def _close(self, connection: socket.socket) -> None:
        try:
            self._selector.unregister(connection)
        except (KeyError, ValueError):
            pass  # not registered (any more)
        connection.close()

    def _read(self, connection: socket.socket, state: dict) -> None:
        try:
            data = connection.recv(READ_BYTES)
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        buffer = state["buffer"]
        buffer += data
        while buffer:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._refuse(connection, 431, "request head too large")
                return
            try:
                method, target, version, headers = _parse_head(bytes(buffer[:head_end]))
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    raise _BadRequest("chunked request bodies are not read here")
                length = int(headers.get("content-length", "0"))
                if length < 0:
                    raise ValueError(length)
            except (_BadRequest, ValueError) as error:
                self._refuse(connection, 400, str(error))
                return
            if len(buffer) < head_end + 4 + length:
                return  # the rest of the body is on its way
            body = bytes(buffer[head_end + 4 : head_end + 4 + length])
            del buffer[: head_end + 4 + length]
            request = Request(method, target, version, headers, body, state["client"])
            try:
                status, answer_headers, answer_body = self.answer(request)
            except BaseException:  # a bug behind answer() (a SystemExit too): this request fails, the server goes on
                traceback.print_exc()
                status, answer_headers, answer_body = 500, [("Content-Type", "text/plain")], b"internal error"
            keep_alive = request.keeps_alive()
            try:
                connection.sendall(response_bytes(status, answer_headers, answer_body, keep_alive))
            except OSError:
                keep_alive = False
            if not keep_alive:
                self._close(connection)
                return

    def _refuse(self, connection: socket.socket, status: int, reason: str) -> None:
        try:
            connection.sendall(response_bytes(status, [("Content-Type", "text/plain")], reason.encode(), False))
        except OSError:
            pass
        self._close(connection)
