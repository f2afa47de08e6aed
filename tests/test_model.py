"""Model-based test: random sequences of calls against the service over moto and a plain in-memory
model of the rules must give the same answers at every step.

The model: per tenant (two of them), reservations on two exclusive resources (used without a
definition) and a pool of 3 units on an hourly grid; holds that expire on a clock the test moves
(a confirm racing the expiry instant to the nanosecond, reserves and moves that displace expired
holds, the sweep); reschedules on the same resource, to another one, into and out of the pool;
request ids replayed; queries by resource, user, status and window, paged. After every run the
checker is clean, and the change feed of each tenant replayed from its start rebuilds exactly the
model's final state.

HYPOTHESIS_PROFILE=large runs ten times as many runs of 100 steps each.
"""

import dataclasses
import uuid

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from chalicelib import service as service_module
from chalicelib.api import CallContext, reservation_to_proto
from chalicelib.dynamo import DynamoStore
from chalicelib.errors import ServiceError
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import HOUR_NS, MINUTE_NS, Caller, Reservation, Status
from chalicelib.runtime import build_api
from harness.moto import TABLE, moto_table
from ops.checker import check, scan_items
from tests.helpers import replay_feed, stamp
from tests.hypothesis_profiles import SCALE

TENANTS = ["default", "t2"]
EXCLUSIVE = ["a", "b"]
POOL, CAPACITY = "p", 3
RESOURCES = [*EXCLUSIVE, POOL]
USERS = ["u1", "u2"]
BASE = stamp(0).ToNanoseconds()  # hour 0 of the model: 2026-12-01T00:00Z
STEPS = 40 if SCALE == 1 else 100
EXAMPLES = 25 * SCALE
DISPLACE_LIMIT = service_module.DISPLACE_LIMIT


def at(hours: int) -> int:
    return BASE + hours * HOUR_NS


@dataclasses.dataclass
class Held:
    """A reservation as the model stores it (hours; `expires` in ns, 0: not a hold)."""

    id: str
    tenant: str
    resource: str
    user: str
    start: int
    end: int
    status: int
    note: str = ""
    units: int = 1
    expires: int = 0
    seq: int = 0  # order of making: ids are random, the choices of a run must not be

    def expired(self, now: int) -> bool:
        return self.status == Status.PENDING and self.expires != 0 and now >= self.expires

    def seen(self, now: int) -> tuple:
        """What a caller reads: (resource, user, start, end, status, note, units, expires)."""
        status = Status.EXPIRED if self.expired(now) else self.status
        return self.resource, self.user, self.start, self.end, int(status), self.note, self.units, self.expires

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end

    def proto(self) -> pb.Reservation:
        return reservation_to_proto(
            Reservation(
                self.id,
                self.user,
                self.resource,
                Status(self.status),
                at(self.start),
                at(self.end),
                self.note,
                self.units,
                self.expires,
            )
        )


def seen_of(message: pb.Reservation) -> tuple:
    expires = message.expires_at.ToNanoseconds() if message.HasField("expires_at") else 0
    return (
        message.resource_id,
        message.user_id,
        (message.start.ToNanoseconds() - BASE) // HOUR_NS,
        (message.end.ToNanoseconds() - BASE) // HOUR_NS,
        message.status,
        message.note,
        message.units,
        expires,
    )


def outcome(call):
    """("ok", value) or (code, message): what the caller sees."""
    try:
        return "ok", call()
    except ServiceError as error:
        return error.code.value, error.message


class Clock:
    """The service's clock: integer ns, moved by the test only (the expiry instant is exact)."""

    def __init__(self, now: int):
        self.now = now

    def __call__(self) -> int:
        return self.now


class ReservationMachine(RuleBasedStateMachine):
    refs = Bundle("refs")  # (tenant, reservation id), some of them never made

    def __init__(self, dynamodb):
        super().__init__()
        self.dynamodb = dynamodb
        for item in list(scan_items(dynamodb, TABLE)):  # every run starts from an empty table
            dynamodb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
        self.clock = Clock(at(-48))
        self.api = build_api(DynamoStore(TABLE, dynamodb), clock=self.clock)
        self.model = {tenant: {} for tenant in TENANTS}  # tenant -> id -> Held
        self.requests = {tenant: {} for tenant in TENANTS}  # tenant -> request id -> (fingerprint, Held as made)
        self.made = []  # ids in the order made
        step = pb.Resource().step
        step.FromNanoseconds(HOUR_NS)
        for tenant in TENANTS:
            self.api.define_resource(
                pb.DefineResourceRequest(resource=pb.Resource(id=POOL, capacity=CAPACITY, step=step)),
                self.context(tenant),
            )

    @staticmethod
    def context(tenant: str) -> CallContext:
        return CallContext(Caller(tenant))

    # ---- the model's rules -------------------------------------------------------------------------------

    def _stored(self, tenant: str, resource: str, but: str = "") -> list:
        return [held for held in self.model[tenant].values() if held.resource == resource and held.id != but]

    def _remove(self, tenant: str, holds: list) -> None:
        for held in holds:
            del self.model[tenant][held.id]

    def _place(self, tenant: str, resource: str, start: int, end: int, units: int, moving: str = "") -> str | None:
        """Decide a claim as the service does: None if it fits (expired holds in the way removed),
        else the code it is refused with. Expired holds may be removed even then (more than
        DISPLACE_LIMIT of them are removed in writes of their own first)."""
        now = self.clock.now
        stored = self._stored(tenant, resource, moving)
        overlapping_expired = [held for held in stored if held.expired(now) and held.overlaps(start, end)]
        if resource != POOL:
            if units > 1:
                return "invalid_argument"
            if any(held.overlaps(start, end) and not held.expired(now) for held in stored):
                return "failed_precondition"
            self._remove(tenant, overlapping_expired)
            return None
        if units > CAPACITY:
            return "invalid_argument"

        def fits(bookings):
            return all(
                sum(held.units for held in bookings if held.overlaps(hour, hour + 1)) + units <= CAPACITY
                for hour in range(start, end)
            )

        if fits(stored):
            return None
        if len(overlapping_expired) > DISPLACE_LIMIT:
            self._remove(tenant, overlapping_expired)
            return self._place(tenant, resource, start, end, units, moving)
        if fits([held for held in stored if held not in overlapping_expired]):
            self._remove(tenant, overlapping_expired)
            return None
        return "failed_precondition"

    # ---- rules ------------------------------------------------------------------------------------------

    @rule(
        target=refs,
        tenant=st.sampled_from(TENANTS),
        resource=st.sampled_from(RESOURCES),
        user=st.sampled_from(USERS),
        start=st.integers(0, 16),
        length=st.integers(1, 6),
        status=st.sampled_from([0, 1, 2, 3]),
        units=st.integers(0, 3),
        hold=st.sampled_from([0, 10, 30, 90]),
        request_id=st.sampled_from(["", "", "r1", "r2"]),
        mistake=st.sampled_from([False] * 5 + [True]),
    )
    def reserve(self, tenant, resource, user, start, length, status, units, hold, request_id, mistake=False):
        """`mistake`: keep units > 1 on an exclusive resource and a hold of a CONFIRMED or BLOCKED one."""
        end = start + length
        if not mistake:
            units = units if resource == POOL else 0
            hold = hold if status in (0, 1) else 0
        request = pb.ReserveRequest(
            reservation=pb.Reservation(
                resource_id=resource,
                user_id=user,
                start=stamp(start * 60),
                end=stamp(end * 60),
                status=status,
                units=units,
            ),
            request_id=request_id,
        )
        effective = Status(status or Status.PENDING)
        if hold:
            request.hold_for.FromNanoseconds(hold * MINUTE_NS)
        kind, value = outcome(lambda: self.api.reserve(request, self.context(tenant)).reservation)
        now = self.clock.now
        fingerprint = (user, resource, int(effective), start, end, units or 1, hold)
        if hold and effective != Status.PENDING:
            assert kind == "invalid_argument", (kind, value)
            return (tenant, str(uuid.uuid4()))
        if request_id and request_id in self.requests[tenant]:
            remembered, made = self.requests[tenant][request_id]
            if remembered != fingerprint:
                assert kind == "already_exists", (kind, value)
                return (tenant, str(uuid.uuid4()))
            assert kind == "ok" and value.id == made.id and seen_of(value) == made.seen(now), (kind, value, made)
            return (tenant, made.id)
        refused = self._place(tenant, resource, start, end, units or 1)
        if refused:
            assert kind == refused, (kind, value, refused)
            return (tenant, str(uuid.uuid4()))
        assert kind == "ok", value
        held = Held(
            value.id,
            tenant,
            resource,
            user,
            start,
            end,
            int(effective),
            "",
            units or 1,
            now + hold * MINUTE_NS if hold else 0,
            seq=len(self.made),
        )
        self.made.append(held.id)
        assert seen_of(value) == held.seen(now), (value, held)
        self.model[tenant][held.id] = held
        if request_id:
            self.requests[tenant][request_id] = (fingerprint, dataclasses.replace(held))
        return (tenant, held.id)

    @rule(
        target=refs,
        tenant=st.sampled_from(TENANTS),
        start=st.integers(0, 5),
        length=st.integers(1, 3),
        units=st.integers(1, 3),
        hold=st.sampled_from([0, 10, 30]),
    )
    def crowd_the_pool(self, tenant, start, length, units, hold):
        """Reserves packed into a few hours of the pool, so that it fills up."""
        return self.reserve(tenant, POOL, "u2", start, length, 1 if hold else 2, units, hold, "")

    def _expect(self, ref, kind, value) -> Held | None:
        """The model's reservation of `ref` (the answer must be not_found when there is none)."""
        held = self.model[ref[0]].get(ref[1])
        if held is None:
            assert kind == "not_found", (kind, value)
        return held

    @rule(ref=refs, other_tenant=st.booleans())
    def get(self, ref, other_tenant):
        tenant = ref[0] if not other_tenant else TENANTS[1 - TENANTS.index(ref[0])]
        kind, value = outcome(lambda: self.api.get(pb.GetRequest(id=ref[1]), self.context(tenant)).reservation)
        held = self._expect((tenant, ref[1]), kind, value)
        if held is not None:
            assert kind == "ok" and seen_of(value) == held.seen(self.clock.now), (kind, value, held)

    @rule(ref=refs)
    def confirm(self, ref):
        kind, value = outcome(lambda: self.api.confirm(pb.ConfirmRequest(id=ref[1]), self.context(ref[0])).reservation)
        self._check_confirm(ref, kind, value)

    def _check_confirm(self, ref, kind, value):
        held = self._expect(ref, kind, value)
        if held is None:
            return
        if held.expired(self.clock.now) or held.status == Status.BLOCKED:
            assert kind == "failed_precondition", (kind, value, held)
            return
        held.status, held.expires = int(Status.CONFIRMED), 0
        assert kind == "ok" and seen_of(value) == held.seen(self.clock.now), (kind, value, held)

    def _live_holds(self) -> list:
        return [
            held
            for tenant in TENANTS
            for held in self.model[tenant].values()
            if held.expires and held.status == Status.PENDING and held.expires > self.clock.now
        ]

    @precondition(lambda self: self._live_holds())
    @rule(data=st.data(), offset=st.sampled_from([-1, 0, 1]), newcomer_first=st.booleans())
    def confirm_at_the_expiry_instant(self, data, offset, newcomer_first):
        """A confirm 1 ns before, at or 1 ns after the expiry, racing a newcomer who wants the time."""
        held = data.draw(st.sampled_from(sorted(self._live_holds(), key=lambda h: h.seq)))
        self.clock.now = max(self.clock.now, held.expires + offset)
        ref = (held.tenant, held.id)
        if newcomer_first:
            self.reserve(held.tenant, held.resource, "u2", held.start, held.end - held.start, 2, held.units, 0, "")
        kind, value = outcome(
            lambda: self.api.confirm(pb.ConfirmRequest(id=held.id), self.context(held.tenant)).reservation
        )
        self._check_confirm(ref, kind, value)
        if not newcomer_first:
            self.reserve(held.tenant, held.resource, "u2", held.start, held.end - held.start, 2, held.units, 0, "")

    @precondition(lambda self: self._live_holds())
    @rule(data=st.data(), units=st.integers(1, 3), by_move=st.booleans())
    def take_the_time_of_an_expired_hold(self, data, units, by_move):
        """Once a hold has expired, a reserve (or a move of another reservation) onto its window."""
        held = data.draw(st.sampled_from(sorted(self._live_holds(), key=lambda h: h.seq)))
        self.clock.now = max(self.clock.now, held.expires)
        movable = sorted(
            (
                other
                for other in self.model[held.tenant].values()
                if other.id != held.id and not other.expired(self.clock.now)
            ),
            key=lambda h: h.seq,
        )
        if by_move and movable:
            other = data.draw(st.sampled_from(movable))
            self.reschedule((held.tenant, other.id), held.start, held.end - held.start, held.resource)
        else:
            self.reserve(
                held.tenant,
                held.resource,
                "u1",
                held.start,
                held.end - held.start,
                2,
                units if held.resource == POOL else 0,
                0,
                "",
            )

    @rule(ref=refs, status=st.sampled_from([0, 1, 2, 3, 4]), note=st.none() | st.sampled_from(["", "x", "note"]))
    def update(self, ref, status, note):
        request = pb.UpdateRequest(id=ref[1], status=status)
        if note is not None:
            request.note = note
        kind, value = outcome(lambda: self.api.update(request, self.context(ref[0])).reservation)
        if status == Status.EXPIRED:
            assert kind == "invalid_argument", (kind, value)
            return
        held = self._expect(ref, kind, value)
        if held is None:
            return
        if held.expired(self.clock.now):
            assert kind == "failed_precondition", (kind, value)
            return
        held.status = status or held.status
        held.expires = held.expires if held.status == Status.PENDING else 0
        held.note = held.note if note is None else note
        assert kind == "ok" and seen_of(value) == held.seen(self.clock.now), (kind, value, held)

    @rule(ref=refs)
    def cancel(self, ref):
        kind, value = outcome(lambda: self.api.cancel(pb.CancelRequest(id=ref[1]), self.context(ref[0])).reservation)
        held = self._expect(ref, kind, value)
        if held is not None:
            assert kind == "ok" and seen_of(value) == held.seen(self.clock.now), (kind, value, held)
            del self.model[ref[0]][ref[1]]

    @rule(ref=refs, start=st.integers(0, 16), length=st.integers(1, 6), to=st.sampled_from(["", *RESOURCES]))
    def reschedule(self, ref, start, length, to):
        end = start + length
        kind, value = outcome(
            lambda: (
                self.api.reschedule(
                    pb.RescheduleRequest(id=ref[1], start=stamp(start * 60), end=stamp(end * 60), resource_id=to),
                    self.context(ref[0]),
                ).reservation
            )
        )
        held = self._expect(ref, kind, value)
        if held is None:
            return
        if held.expired(self.clock.now):
            assert kind == "failed_precondition", (kind, value)
            return
        target = to or held.resource
        if (target, start, end) == (held.resource, held.start, held.end):
            assert kind == "ok" and seen_of(value) == held.seen(self.clock.now), (kind, value)
            return
        refused = self._place(ref[0], target, start, end, held.units, moving=held.id)
        if refused:
            assert kind == refused, (kind, value, refused)
            return
        held.resource, held.start, held.end = target, start, end
        assert kind == "ok" and seen_of(value) == held.seen(self.clock.now), (kind, value, held)

    @rule(minutes=st.sampled_from([1, 15, 45, 120]))
    def advance(self, minutes):
        self.clock.now += minutes * MINUTE_NS

    @rule()
    def sweep(self):
        now = self.clock.now
        expired = [held for tenant in TENANTS for held in self.model[tenant].values() if held.expired(now)]
        assert self.api.reservations.sweep_expired() == len(expired)
        for held in expired:
            del self.model[held.tenant][held.id]

    @rule(
        tenant=st.sampled_from(TENANTS),
        resource=st.none() | st.sampled_from(RESOURCES),
        user=st.none() | st.sampled_from(USERS),
        start=st.none() | st.integers(0, 40),
        length=st.integers(1, 20),
        status=st.sampled_from([0, 1, 2, 3, 4]),
        page_size=st.integers(1, 4),
    )
    def query(self, tenant, resource, user, start, length, status, page_size):
        if resource is not None and user is not None:
            user = None  # one of the two
        window = {} if start is None else {"start": stamp(start * 60), "end": stamp((start + length) * 60)}
        seen, token = [], ""
        while True:
            page = self.api.filter(
                pb.FilterRequest(
                    query=pb.QueryRequest(
                        resource_id=resource or "",
                        user_id=user or "",
                        status=status,
                        page_size=page_size,
                        page_token=token,
                        **window,
                    )
                ),
                self.context(tenant),
            )
            seen += [(r.id, seen_of(r)) for r in page.reservations]
            token = page.next_page_token
            if not token:
                break
        now = self.clock.now
        expected = sorted(
            ((held.start, held.id), (held.id, held.seen(now)))
            for held in self.model[tenant].values()
            if (resource is None or held.resource == resource)
            and (user is None or held.user == user)
            and (status == 0 or held.seen(now)[4] == status)
            and (start is None or (held.start < start + length and held.end > start))
        )
        assert seen == [entry for _, entry in expected]

    # ---- after every run ------------------------------------------------------------------------------

    def teardown(self):
        self.clock.now += 1_000_000_000  # the feed hands out events older than now (settle 0)
        assert check(self.dynamodb, TABLE, now_ns=self.clock.now) == []
        for tenant in TENANTS:
            replayed, problems = replay_feed(self.feed(tenant))
            assert not problems, problems
            assert replayed["reservations"] == {held.id: held.proto() for held in self.model[tenant].values()}, tenant

    def feed(self, tenant: str) -> list:
        events, cursor = [], ""
        while True:
            page = self.api.changes(pb.ChangesRequest(after=cursor, page_size=1000), self.context(tenant))
            events += page.events
            cursor = page.cursor
            if not page.events:
                return events


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(service_module, "_backoff", lambda attempt: None)


def test_the_service_behaves_like_the_model():
    with moto_table() as dynamodb:
        run_state_machine_as_test(
            lambda: ReservationMachine(dynamodb), settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS)
        )


def test_a_long_run_ends_with_a_clean_table_and_a_feed_that_rebuilds_it():
    """One scripted run through every rule, then the checks of teardown."""
    with moto_table() as dynamodb:
        machine = ReservationMachine(dynamodb)
        try:
            refs = []
            for n in range(36):
                refs.append(
                    machine.reserve(
                        TENANTS[n % 2],
                        RESOURCES[n % 3],
                        USERS[n % 2],
                        (n * 7) % 30,
                        1 + n % 5,
                        [0, 1, 2][n % 3],
                        n % 3,
                        [0, 30][n % 2],
                        ["", "r1"][n % 4 == 0],
                    )
                )
            for ref in refs[::4]:
                machine.confirm(ref)
            for ref in refs[1::5]:
                machine.reschedule(ref, 31, 2, RESOURCES[len(ref[1]) % 3])
            machine.advance(45)
            machine.sweep()
            for ref in refs[2::3]:
                machine.cancel(ref)
            machine.query("default", None, None, None, 1, 0, 3)
            assert sum(len(machine.model[tenant]) for tenant in TENANTS) > 5
        finally:
            machine.teardown()
