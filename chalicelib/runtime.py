"""The one ReservationApi of a process, built on first use.

Built lazily so that a Lambda cold start pays for the DynamoDB client only
when the first call needs it, and once: later invocations of a warm Lambda
reuse it.
"""

import functools

from .api import ReservationApi
from .availability import AvailabilityService
from .dynamo import store_from_environment
from .feed import ChangeFeed
from .ports import Store
from .resources import ResourceService
from .service import ReservationService


def build_api(store: Store, clock=None) -> ReservationApi:
    """Every rule module over one store (and one clock: tests pass a controllable one)."""
    timing = {"clock": clock} if clock is not None else {}
    reservations = ReservationService(store, **timing)
    return ReservationApi(
        reservations,
        ResourceService(store, reservations.hints, **timing),
        ChangeFeed(store, **timing),
        AvailabilityService(store, **timing),
    )


@functools.lru_cache(maxsize=1)
def default_api() -> ReservationApi:
    return build_api(store_from_environment())
