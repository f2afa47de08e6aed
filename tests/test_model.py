"""Model-based test: random sequences of calls against the service and a plain in-memory model
of the rules (sorted intervals per resource) must give the same answers at every step."""
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from chalicelib.errors import ServiceError
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.runtime import default_api
from rsvp import checker
from harness.moto import TABLE, moto_table
from tests.hypothesis_profiles import SCALE

RESOURCES = ["a", "b", "c"]
USERS = ["u1", "u2"]
STEPS = 30 if SCALE == 1 else 100
EXAMPLES = 25 * SCALE


def outcome(call):
    """("ok", value) or ("error", code): what the caller sees."""
    try:
        return "ok", call()
    except ServiceError as error:
        return "error", error.code.connect_name


class ReservationMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self):
        super().__init__()
        self.table = moto_table()
        self.dynamodb = self.table.__enter__()
        self.api = default_api()
        self.model = {}  # id -> dict(resource, user, start, end, status, note)

    def teardown(self):
        """Every run ends with the consistency checker over the table it left."""
        try:
            self.check_table()
        finally:
            self.table.__exit__(None, None, None)

    @rule(target=reservations, resource=st.sampled_from(RESOURCES), user=st.sampled_from(USERS),
          start=st.integers(0, 40), length=st.integers(1, 12), status=st.sampled_from([0, 1, 2, 3]))
    def reserve(self, resource, user, start, length, status):
        end = start + length
        request = pb.ReserveRequest(reservation=pb.Reservation(
            resource_id=resource, user_id=user, start={"seconds": start * 3600}, end={"seconds": end * 3600},
            status=status))
        kind, value = outcome(lambda: self.api.reserve(request).reservation)
        clash = [i for i, r in self.model.items() if r["resource"] == resource and r["start"] < end and start < r["end"]]
        if clash:
            assert (kind, value) == ("error", "failed_precondition")
            return "missing-" + str(len(self.model))
        assert kind == "ok", value
        self.model[value.id] = dict(resource=resource, user=user, start=start, end=end, status=status or 1, note="")
        return value.id

    @rule(reservation_id=reservations)
    def get(self, reservation_id):
        kind, value = outcome(lambda: self.api.get(pb.GetRequest(id=reservation_id)).reservation)
        self._same(reservation_id, kind, value)

    @rule(reservation_id=reservations)
    def confirm(self, reservation_id):
        kind, value = outcome(lambda: self.api.confirm(pb.ConfirmRequest(id=reservation_id)).reservation)
        expected = self.model.get(reservation_id)
        if expected is not None and expected["status"] == 3:
            assert (kind, value) == ("error", "failed_precondition")
            return
        if expected is not None:
            expected["status"] = 2
        self._same(reservation_id, kind, value)

    @rule(reservation_id=reservations, status=st.sampled_from([0, 1, 2, 3]),
          note=st.none() | st.sampled_from(["", "x", "note"]))
    def update(self, reservation_id, status, note):
        request = pb.UpdateRequest(id=reservation_id, status=status)
        if note is not None:
            request.note = note
        kind, value = outcome(lambda: self.api.update(request).reservation)
        expected = self.model.get(reservation_id)
        if expected is not None:
            expected["status"] = status or expected["status"]
            expected["note"] = expected["note"] if note is None else note
        self._same(reservation_id, kind, value)

    @rule(reservation_id=reservations)
    def cancel(self, reservation_id):
        kind, value = outcome(lambda: self.api.cancel(pb.CancelRequest(id=reservation_id)).reservation)
        self._same(reservation_id, kind, value)
        self.model.pop(reservation_id, None)

    @rule(resource=st.none() | st.sampled_from(RESOURCES), user=st.none() | st.sampled_from(USERS),
          start=st.none() | st.integers(0, 50), length=st.integers(1, 20), status=st.sampled_from([0, 1, 2, 3]),
          page_size=st.integers(1, 4))
    def query(self, resource, user, start, length, status, page_size):
        window = {} if start is None else {"start": {"seconds": start * 3600},
                                           "end": {"seconds": (start + length) * 3600}}
        seen, token = [], ""
        while True:
            page = self.api.filter(pb.FilterRequest(query=pb.QueryRequest(
                resource_id=resource or "", user_id=user or "", status=status, page_size=page_size,
                page_token=token, **window)))
            seen += [r.id for r in page.reservations]
            token = page.next_page_token
            if not token:
                break
        expected = sorted(
            (r["start"], i) for i, r in self.model.items()
            if (resource is None or r["resource"] == resource) and (user is None or r["user"] == user)
            and (status == 0 or r["status"] == status)
            and (start is None or (r["start"] < start + length and r["end"] > start)))
        assert seen == [i for _, i in expected]

    def _same(self, reservation_id, kind, value):
        expected = self.model.get(reservation_id)
        if expected is None:
            assert kind == "error" and value in ("not_found", "invalid_argument"), (kind, value)
            return
        assert kind == "ok", value
        assert (value.resource_id, value.user_id, value.start.seconds // 3600, value.end.seconds // 3600,
                value.status, value.note) == (expected["resource"], expected["user"], expected["start"],
                                              expected["end"], expected["status"], expected["note"])

    @invariant()
    def no_two_live_reservations_overlap(self):
        by_resource = {}
        for r in self.model.values():
            by_resource.setdefault(r["resource"], []).append((r["start"], r["end"]))
        for intervals in by_resource.values():
            intervals.sort()
            assert all(a[1] <= b[0] for a, b in zip(intervals, intervals[1:]))

    def check_table(self):
        assert checker.check(self.dynamodb, TABLE) == []


class TestReservationMachine(ReservationMachine.TestCase):
    settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS)  # the rest from the profile


def test_machine_ends_with_a_clean_table():
    """One long run, then the consistency checker over what it left."""
    machine = ReservationMachine()
    try:
        for n in range(40):
            machine.reserve(RESOURCES[n % 3], USERS[n % 2], (n * 7) % 40, 1 + n % 9, n % 4)
        for reservation_id in list(machine.model)[::3]:
            machine.cancel(reservation_id)
        assert len(machine.model) > 5
    finally:
        machine.teardown()
