"""Errors of the service, one code each; the adapters map codes to HTTP and gRPC.

Every failure a caller can see is a ServiceError whose message is written for
the caller: no stack traces, table names, AWS error text or another tenant's
data ever go in it.
"""

import enum
import logging

log = logging.getLogger(__name__)


class Code(enum.Enum):
    """The Connect / gRPC status codes, by their Connect names."""

    CANCELED = "canceled"
    UNKNOWN = "unknown"
    INVALID_ARGUMENT = "invalid_argument"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out_of_range"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data_loss"
    UNAUTHENTICATED = "unauthenticated"


class ServiceError(Exception):
    """A failure with the code and message the caller receives."""

    def __init__(self, code: Code, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(field: str, problem: str) -> ServiceError:
    return ServiceError(Code.INVALID_ARGUMENT, f"{field}: {problem}")


def not_found(what: str, identifier: str) -> ServiceError:
    return ServiceError(Code.NOT_FOUND, f"{what} {identifier} not found")


def failed(message: str) -> ServiceError:
    return ServiceError(Code.FAILED_PRECONDITION, message)


def unavailable() -> ServiceError:
    """Logged with its cause for operators; the caller only learns to retry."""
    log.warning("storage unavailable", exc_info=True)
    return ServiceError(Code.UNAVAILABLE, "storage is temporarily unavailable; retry")


def internal(exception: Exception) -> ServiceError:
    """An unexpected failure: logged whole for operators, answered as a bare INTERNAL."""
    log.error("unexpected failure", exc_info=exception)
    return ServiceError(Code.INTERNAL, "internal error")
