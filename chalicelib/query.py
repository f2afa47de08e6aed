"""Query rules: which reservations match, in what order, one page at a time, within a budget.

Which items are read, and from where, is chosen so that what a page reads
follows what it returns, not the history:

* resource named: the resource's bookings, in its own partition in start
  order. An exclusive resource's bookings never overlap, so at most one
  covers the window's start: one read of the booking just before it gives the
  exact lower bound. A pool looks back by its longest booking.
* user named (no resource): the by_user index, looking back from the window's
  start by the longest reservation the user ever made.
* neither: the by_tenant index of the caller's own tenant, looking back by
  the tenant's longest reservation.

Every page reads at most READ_BUDGET items and answers at most ANSWER_BUDGET
bytes: a selective filter ends its page early, with a token to go on.
"""

import dataclasses

from . import paging
from .errors import invalid, unavailable
from .layout import start_key, start_key_bound
from .model import MAX_NS, MIN_NS, Reservation, Status, lookback_ns
from .ports import StorageUnavailable, Store

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
READ_BUDGET = 2000  # items examined per page
# Bytes of reservations per page. Lambda answers at most 6 MB, and API Gateway's binary answers travel
# base64-encoded (4/3): 3 MB of page, counted as below, stays under it whatever the encoding.
ANSWER_BUDGET = 3 * 1024 * 1024
RESERVATION_OVERHEAD = 300  # bytes of a reservation besides its texts, as JSON


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    tenant: str
    user_id: str = ""
    resource_id: str = ""
    status: Status = Status.UNKNOWN
    start_ns: int | None = None
    end_ns: int | None = None
    page_size: int = 0
    page_token: str = ""
    descending: bool = False

    def matches(self, reservation: Reservation) -> bool:
        """`reservation` as seen now (an expired hold has status EXPIRED)."""
        return (
            (not self.user_id or reservation.user_id == self.user_id)
            and (not self.resource_id or reservation.resource_id == self.resource_id)
            and (self.status == Status.UNKNOWN or reservation.status == self.status)
            and (self.start_ns is None or reservation.end_ns > self.start_ns)
            and (self.end_ns is None or reservation.start_ns < self.end_ns)
        )

    def digest(self) -> str:
        """What a page token is bound to: the tenant, the filters and the order, not the page size."""
        return paging.query_digest(
            self.tenant, self.user_id, self.resource_id, int(self.status), self.start_ns, self.end_ns, self.descending
        )


@dataclasses.dataclass(frozen=True)
class Page:
    reservations: list
    next_page_token: str  # "" on the last page


def page_size_of(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise invalid(field, f"must not be negative, got {requested}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def answer_size(reservation: Reservation) -> int:
    """An upper bound of its encoded size: its texts' UTF-8 bytes twice (JSON escapes " and \\ as two)."""
    texts = (
        len(reservation.id)
        + len(reservation.user_id.encode())
        + len(reservation.resource_id.encode())
        + len(reservation.note.encode())
    )
    return RESERVATION_OVERHEAD + 2 * texts


def run_query(store: Store, spec: QuerySpec, now_ns: int, pool_lookback_ns=None) -> Page:
    """One page of matches in (start, id) order, and the token of the next page if there may be more.

    `pool_lookback_ns(tenant, resource_id)` is how far back a resource's bookings may start before
    the window and still overlap it (None for an exclusive resource).
    """
    if spec.start_ns is not None and spec.end_ns is not None and spec.start_ns >= spec.end_ns:
        raise invalid("end", "must be after start")
    size = page_size_of(spec.page_size)
    after = paging.decode(spec.page_token, spec.digest(), "page_token") if spec.page_token else None
    try:
        return _page(store, spec, now_ns, after, size, pool_lookback_ns)
    except StorageUnavailable as error:
        raise unavailable() from error


def _page(store: Store, spec: QuerySpec, now_ns: int, after: str | None, size: int, pool_lookback_ns) -> Page:
    found, examined, spent = [], 0, 0
    last_key = None
    for booking in _candidates(store, spec, after, size + 1, pool_lookback_ns):
        reservation = booking.reservation
        key = start_key(reservation.start_ns, reservation.id)
        if after is not None and (key >= after if spec.descending else key <= after):
            continue  # at or before the previous page's last position
        seen = reservation.seen_at(now_ns)
        if spec.matches(seen):
            if len(found) == size:
                return Page(found, _token(spec, last_key))
            found.append(seen)
            spent += answer_size(seen)
        examined += 1
        last_key = key
        if (examined >= READ_BUDGET or spent >= ANSWER_BUDGET) and last_key is not None:
            return Page(found, _token(spec, last_key))
    return Page(found, "")


def _token(spec: QuerySpec, position: str) -> str:
    return paging.encode(position, spec.digest())


def _candidates(store: Store, spec: QuerySpec, after: str | None, chunk: int, pool_lookback_ns):
    """Bookings that may match, in page order, from the token's position `after` on."""
    high = start_key_bound(spec.end_ns if spec.end_ns is not None else MAX_NS + 1)
    low = start_key_bound(_earliest_start(store, spec, pool_lookback_ns))
    if after is not None:
        # resume at the previous page's last key (inclusive: it is skipped by _page)
        if spec.descending:
            high = min(high, after)
        else:
            low = max(low, after)
    if spec.resource_id:
        return store.bookings(spec.tenant, spec.resource_id, low, high, spec.descending, chunk)
    if spec.user_id:
        return store.bookings_of_user(spec.tenant, spec.user_id, low, high, spec.descending, chunk)
    return store.bookings_of_tenant(spec.tenant, low, high, spec.descending, chunk)


def _earliest_start(store: Store, spec: QuerySpec, pool_lookback_ns) -> int:
    """No booking starting before this instant can overlap the window."""
    if spec.start_ns is None:
        return MIN_NS
    if spec.resource_id:
        lookback = pool_lookback_ns(spec.tenant, spec.resource_id) if pool_lookback_ns else None
        if lookback is not None:
            return max(MIN_NS, spec.start_ns - lookback)
        before = next(
            iter(
                store.bookings(
                    spec.tenant, spec.resource_id, start_key_bound(MIN_NS), start_key_bound(spec.start_ns), True, 1
                )
            ),
            None,
        )
        if before is not None and before.reservation.end_ns > spec.start_ns:
            return before.reservation.start_ns
        return spec.start_ns
    return max(MIN_NS, spec.start_ns - lookback_ns(store.longest(spec.tenant, spec.user_id)))
