"""Errors of the service, one code each, shared by the Connect and gRPC adapters.

Every failure a caller can see is a ServiceError whose message is written for
the caller: no stack traces, table names or AWS error text ever go in it.
"""
import enum
import logging

log = logging.getLogger(__name__)


class Code(enum.Enum):
    """Connect / gRPC status codes: (Connect name, gRPC number, HTTP status)."""

    CANCELED = ("canceled", 1, 499)
    UNKNOWN = ("unknown", 2, 500)
    INVALID_ARGUMENT = ("invalid_argument", 3, 400)
    DEADLINE_EXCEEDED = ("deadline_exceeded", 4, 504)
    NOT_FOUND = ("not_found", 5, 404)
    ALREADY_EXISTS = ("already_exists", 6, 409)
    PERMISSION_DENIED = ("permission_denied", 7, 403)
    RESOURCE_EXHAUSTED = ("resource_exhausted", 8, 429)
    FAILED_PRECONDITION = ("failed_precondition", 9, 400)
    ABORTED = ("aborted", 10, 409)
    OUT_OF_RANGE = ("out_of_range", 11, 400)
    UNIMPLEMENTED = ("unimplemented", 12, 501)
    INTERNAL = ("internal", 13, 500)
    UNAVAILABLE = ("unavailable", 14, 503)
    DATA_LOSS = ("data_loss", 15, 500)
    UNAUTHENTICATED = ("unauthenticated", 16, 401)

    @property
    def connect_name(self) -> str:
        return self.value[0]

    @property
    def grpc_number(self) -> int:
        return self.value[1]

    @property
    def http_status(self) -> int:
        return self.value[2]


class ServiceError(Exception):
    """A failure with the code and message the caller receives."""

    def __init__(self, code: Code, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(field: str, problem: str) -> ServiceError:
    return ServiceError(Code.INVALID_ARGUMENT, f"{field}: {problem}")


def not_found(reservation_id: str) -> ServiceError:
    return ServiceError(Code.NOT_FOUND, f"reservation {reservation_id} not found")


def internal(exception: Exception) -> ServiceError:
    """An unexpected failure: logged whole for operators, answered as a bare INTERNAL."""
    log.error("unexpected failure", exc_info=exception)
    return ServiceError(Code.INTERNAL, "internal error")
