"""The change feed: every change of a tenant's reservations and resources, in order, resumable.

Events are written in the same transaction as their change (chalicelib.ports)
and keyed by their time, then id. A change's time is taken just before its
transaction, so an event can become visible a moment after later-keyed ones
already are: the feed only hands out events older than SETTLE (writes take
far less; DynamoDB's time-outs bound them), so a cursor never passes an event
that may still appear. Events of one reservation are ordered by its changes
even across writers (chalicelib.service._next_event_time).

Cursors are signed positions bound to the tenant and scope. Events are kept
RETENTION (DynamoDB TTL deletes them later); an older cursor is OUT_OF_RANGE:
resync with Query and take a fresh cursor.
"""

import dataclasses
import os
import time
from collections.abc import Callable, Iterator

from . import paging
from .errors import Code, ServiceError, unavailable
from .layout import EVENT_RETENTION_NS, event_key_bound, event_key_of, event_time_of
from .model import MILLIS_NS
from .ports import Scope, StorageUnavailable, Store
from .query import page_size_of

DEFAULT_SETTLE_MS = 2000
LISTEN_POLL_SECONDS = 0.1
LONG_POLL_SECONDS = 15.0  # a listen call on Lambda answers within this (Lambda's limit is 20 s)


@dataclasses.dataclass(frozen=True)
class FeedPage:
    events: list  # of (ChangeEvent, cursor)
    cursor: str


def settle_ns() -> int:
    return int(os.environ.get("FEED_SETTLE_MS", DEFAULT_SETTLE_MS)) * MILLIS_NS


def _digest(scope: Scope) -> str:
    return paging.query_digest("changes", scope.tenant, scope.resource_id, scope.user_id)


class ChangeFeed:
    def __init__(self, store: Store, clock: Callable[[], int] = time.time_ns):
        self.store = store
        self.clock = clock

    def start(self, scope: Scope, after: str, from_now: bool) -> str:
        """The position to read from: a cursor's, or the oldest retained event, or now."""
        now = self.clock()
        if after:
            position = paging.decode(after, _digest(scope), "after")
            if event_time_of(position) < now - EVENT_RETENTION_NS:
                raise ServiceError(
                    Code.OUT_OF_RANGE,
                    "after: the cursor is older than the change feed keeps "
                    "events (7 days); read the current state with Query, then "
                    "follow changes from a new cursor",
                )
            return position
        return event_key_bound(now - settle_ns() if from_now else now - EVENT_RETENTION_NS)

    def page(self, scope: Scope, position: str, page_size: int) -> FeedPage:
        """Settled events after `position`, at most page_size of them."""
        size = page_size_of(page_size)
        until = event_key_of(self.clock() - settle_ns(), "~")
        digest = _digest(scope)
        found = []
        try:
            for event in self.store.events(scope, position, until, size):
                found.append(event)
                if len(found) == size:
                    break
        except StorageUnavailable as error:
            raise unavailable() from error
        if len(found) == size:
            last = event_key_of(found[-1].at_ns, found[-1].event_id)
        else:
            last = max(position, until)  # nothing more can appear before `until`: move on
        return FeedPage(
            [(event, paging.encode(event_key_of(event.at_ns, event.event_id), digest)) for event in found],
            paging.encode(last, digest),
        )

    def changes(self, scope: Scope, after: str, page_size: int) -> FeedPage:
        return self.page(scope, self.start(scope, after, from_now=False), page_size)

    def listen(
        self,
        scope: Scope,
        position: str,
        keep_going: Callable[[float], bool],
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[FeedPage]:
        """Pages of events after `position` (see start) as they settle, while keep_going(seconds so far)."""
        begun = time.monotonic()
        while True:
            page = self.page(scope, position, 100)
            position = paging.decode(page.cursor, _digest(scope), "after")
            yield page
            if not keep_going(time.monotonic() - begun):
                return
            if len(page.events) < 100:
                sleep(LISTEN_POLL_SECONDS)
