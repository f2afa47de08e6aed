"""The one ReservationApi of a process, built on first use.

Built lazily so that a Lambda cold start pays for the DynamoDB client only when the first
call needs it, and once: later invocations of a warm Lambda reuse the client.
"""
import functools

from .api import ReservationApi
from .service import ReservationService
from .store import store_from_environment


@functools.lru_cache(maxsize=1)
def default_api() -> ReservationApi:
    return ReservationApi(ReservationService(store_from_environment()))
