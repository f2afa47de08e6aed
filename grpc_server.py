"""Native gRPC server (grpcio) over the same ReservationApi as the Chalice app (app.py).

One implementation of every rule, two thin adapters: this one maps
chalicelib.api.METHODS onto gRPC handlers, ServiceError onto gRPC status
codes (conflict details as rich status details: google.rpc.Status with
reservation.ReservationConflict in an Any), and the server streams onto true
gRPC streams: Query's next page token is in the trailing metadata
"next-page-token"; `listen` stays open, sending events as they happen, until
the client goes away. An open `listen` keeps a thread of its own: at most
MAX_LISTENERS are open at once (one more is refused with RESOURCE_EXHAUSTED),
on threads beside the `workers` that serve every other call, so listeners
never leave other calls waiting. With health checking (grpc.health.v1) and
server reflection. The tenant comes from the `x-tenant-id` metadata only where
TENANT_SOURCE=header (make serve); see chalicelib.tenancy.

    python grpc_server.py [--port 50051] [--workers 8]

reads the table from RESERVATION_TABLE (and AWS settings from the usual
environment); SIGTERM or Ctrl-C stop it after the calls in flight finish.
"""

import argparse
import concurrent.futures
import errno
import logging
import os
import signal
import socket
import sys
import threading

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from chalicelib.api import METHODS, SERVICE_NAME, CallContext, ReservationApi, error_details
from chalicelib.errors import Code, ServiceError, internal
from chalicelib.tenancy import caller_from

SHUTDOWN_GRACE_SECONDS = 10
# grpcio spells CANCELED with two Ls; every other name is the same
GRPC_CODES = {
    code: getattr(grpc.StatusCode, "CANCELLED" if code is Code.CANCELED else code.name).value[0] for code in Code
}
MAX_LISTENERS = 64  # open `listen` streams, each on a thread of its own beside the workers
MAX_DETAILS_BYTES = 8 * 1024  # rich details travel in a trailer; gRPC refuses metadata past 16 KiB
# grpcio sets SO_REUSEPORT by default: a second server on a busy port would bind it too, and
# clients would land on either process at random. A busy port must be an error instead.
SERVER_OPTIONS = (("grpc.so_reuseport", 0),)
log = logging.getLogger(__name__)


class PortUnavailable(Exception):
    """The gRPC port could not be bound (in use, or not ours to take)."""


def bind_problem(host: str, port: int):
    """Why a server could not listen on host:port ("already in use", ...), or None if it could.

    Tried with a plain socket first, so that a busy port is one clear line, not
    grpcio's log lines and a RuntimeError. Port 0 (any free port) never fails.
    """
    if port == 0:
        return None
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is free
            probe.bind(address)
    except OSError as error:
        return "already in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error)).lower()
    return None


def _status_of(error: ServiceError) -> grpc.Status:
    details = []
    for detail in error_details(error):
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    status = status_pb2.Status(code=GRPC_CODES[error.code], message=error.message, details=details)
    if status.ByteSize() > MAX_DETAILS_BYTES:  # cannot happen with today's capped details; never break the answer
        del status.details[:]
    return rpc_status.to_status(status)


def _context_of(context) -> CallContext:
    metadata = {key.lower(): value for key, value in context.invocation_metadata() if isinstance(value, str)}
    return CallContext(caller_from(metadata), keep_going=lambda elapsed, sent: context.is_active())


def _abort(context, failure: Exception) -> None:
    """End the RPC with the failure's status (abort raises)."""
    error = failure if isinstance(failure, ServiceError) else internal(failure)
    context.abort_with_status(_status_of(error))


def _handler(
    api: ReservationApi, method, places: threading.BoundedSemaphore | None = None, limit: int = 0
) -> grpc.RpcMethodHandler:
    """The grpcio handler of one method; a stream that stays open (listen) first takes one of `limit` places."""
    decode, encode = method.request_type.FromString, method.response_type.SerializeToString
    if not method.server_streaming:

        def unary(request, context):
            try:
                return method.call(api, request, _context_of(context))
            except Exception as failure:
                _abort(context, failure)

        return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=decode, response_serializer=encode)

    def stream(request, context):
        try:
            reply = method.call(api, request, _context_of(context))
            yield from reply
        except Exception as failure:
            _abort(context, failure)
        context.set_trailing_metadata(tuple(reply.trailers.items()))

    def open_stream(request, context):
        if not places.acquire(blocking=False):
            _abort(
                context,
                ServiceError(Code.RESOURCE_EXHAUSTED, f"too many open {method.name} streams ({limit}); retry later"),
            )
        try:
            yield from stream(request, context)
        finally:
            places.release()

    if places is not None:
        return grpc.unary_stream_rpc_method_handler(
            open_stream, request_deserializer=decode, response_serializer=encode
        )

    return grpc.unary_stream_rpc_method_handler(stream, request_deserializer=decode, response_serializer=encode)


def build_server(
    api: ReservationApi, host: str = "127.0.0.1", port: int = 50051, workers: int = 8, listeners: int = MAX_LISTENERS
):
    """A started server; returns (server, bound port). PortUnavailable if the port cannot be bound.
    `workers` threads serve the calls, and up to `listeners` more the open `listen` streams."""
    problem = bind_problem(host, port)
    if problem:
        raise PortUnavailable(f"gRPC port {port} is {problem}")
    # listeners never take more than `listeners` threads: `workers` are always left for the other calls
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=workers + listeners), options=SERVER_OPTIONS)
    places = threading.BoundedSemaphore(listeners)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE_NAME,
                {
                    name: _handler(api, method, places if name == "listen" else None, listeners)
                    for name, method in METHODS.items()
                },
            ),
        )
    )
    health_servicer = health.HealthServicer()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:  # grpcio gives no reason; in use is by far the likeliest
        raise PortUnavailable(f"gRPC port {port} is already in use or cannot be bound") from error
    server.start()
    return server, bound


def stop_on_sigterm(server) -> threading.Event:
    """SIGTERM stops taking calls, lets those in flight finish (up to the grace), then sets the event."""
    stopped = threading.Event()

    def on_sigterm(*_):
        log.info("SIGTERM: stopping after in-flight calls")
        server.stop(SHUTDOWN_GRACE_SECONDS).wait()
        stopped.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    return stopped


def main(argv=None) -> None:
    from chalicelib.runtime import default_api

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRPC_PORT", "50051")),
        help="gRPC port (default $GRPC_PORT or 50051)",
    )
    parser.add_argument("--workers", type=int, default=8, help="threads serving calls other than listen (default 8)")
    options = parser.parse_args(argv)
    try:
        server, port = build_server(default_api(), options.host, options.port, options.workers)
    except PortUnavailable as error:
        sys.exit(f"my-reservation: {error} (set GRPC_PORT=... or --port)")
    stopped = stop_on_sigterm(server)
    print(f"my-reservation: gRPC on {options.host}:{port}", flush=True)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        server.stop(SHUTDOWN_GRACE_SECONDS).wait()


if __name__ == "__main__":
    main()
