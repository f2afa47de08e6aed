"""Query rules: which reservations match, in what order, one page at a time.

Which index is read, and how far back, is chosen so that the items read
follow the page, not the partition's history:

* resource named: the by_resource index from the earliest start that can
  still overlap the window. Reservations of one resource never overlap, so
  at most one of them covers the window's start, and it has a claim in that
  instant's slot item: one small read gives the exact lower bound.
* user named (no resource): the by_user index, looking back from the window's
  start by the longest reservation the user ever made.
* neither: a full table scan, sorted in memory. Its cost grows with the table;
  it is meant for operators, not for traffic.
"""
import dataclasses
from typing import Optional

from . import paging
from .errors import invalid
from .model import MAX_NS, MIN_NS, Reservation, Status
from .slots import slot_of
from .store import BY_RESOURCE, BY_USER, start_key, start_key_bound

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    user_id: str = ""
    resource_id: str = ""
    status: Status = Status.UNKNOWN
    start_ns: Optional[int] = None
    end_ns: Optional[int] = None
    page_size: int = 0
    page_token: str = ""
    descending: bool = False

    def matches(self, reservation: Reservation) -> bool:
        return ((not self.user_id or reservation.user_id == self.user_id)
                and (not self.resource_id or reservation.resource_id == self.resource_id)
                and (self.status == Status.UNKNOWN or reservation.status == self.status)
                and (self.start_ns is None or reservation.end_ns > self.start_ns)
                and (self.end_ns is None or reservation.start_ns < self.end_ns))

    def digest(self) -> str:
        """What a page token is bound to: the filters and the order, not the page size."""
        return paging.query_digest(self.user_id, self.resource_id, int(self.status), self.start_ns, self.end_ns,
                                   self.descending)


@dataclasses.dataclass(frozen=True)
class Page:
    reservations: list
    next_page_token: str  # "" on the last page


def page_size_of(requested: int) -> int:
    if requested < 0:
        raise invalid("page_size", f"must not be negative, got {requested}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def run_query(store, spec: QuerySpec) -> Page:
    """One page of matches in (start, id) order, and the token of the next page if there is more."""
    if spec.start_ns is not None and spec.end_ns is not None and spec.start_ns >= spec.end_ns:
        raise invalid("end", "must be after start")
    size = page_size_of(spec.page_size)
    after = paging.decode(spec.page_token, spec.digest()) if spec.page_token else None
    found = []
    for reservation in _candidates(store, spec, after, size + 1):
        key = start_key(reservation.start_ns, reservation.id)
        if after is not None and (key >= after if spec.descending else key <= after):
            continue  # at or before the previous page's last reservation
        if spec.matches(reservation):
            found.append(reservation)
            if len(found) > size:
                break
    if len(found) <= size:
        return Page(found, "")
    last = found[size - 1]
    return Page(found[:size], paging.encode(start_key(last.start_ns, last.id), spec.digest()))


def _candidates(store, spec: QuerySpec, after: Optional[str], chunk: int):
    """Reservations that may match, in page order, from the token's position `after` on."""
    high = start_key_bound(spec.end_ns if spec.end_ns is not None else MAX_NS + 1)
    low = start_key_bound(_earliest_start(store, spec))
    if after is not None:
        # resume at the previous page's last key (inclusive: it is skipped by run_query)
        if spec.descending:
            high = min(high, after)
        else:
            low = max(low, after)
    if spec.resource_id:
        return store.in_index(BY_RESOURCE, spec.resource_id, low, high, spec.descending, chunk)
    if spec.user_id:
        return store.in_index(BY_USER, spec.user_id, low, high, spec.descending, chunk)
    everything = (r for r in store.all_reservations() if low <= start_key(r.start_ns, r.id) <= high)
    return iter(sorted(everything, key=lambda r: (r.start_ns, r.id), reverse=spec.descending))


def _earliest_start(store, spec: QuerySpec) -> int:
    """No reservation starting before this instant can overlap the window."""
    if spec.start_ns is None:
        return MIN_NS
    if spec.resource_id:
        covering = [claim.start_ns for claim in store.read_slot(spec.resource_id, slot_of(spec.start_ns)).claims
                    if claim.start_ns < spec.start_ns < claim.end_ns]
        return min(covering, default=spec.start_ns)
    if spec.user_id:
        return max(MIN_NS, spec.start_ns - store.longest_reservation(spec.user_id))
    return MIN_NS
