"""Time-slot arithmetic: which slot items a reservation's interval touches.

Each resource's timeline is cut into fixed slots of SLOT_SECONDS, aligned to
the Unix epoch. A reservation records its exact interval (a claim) in every
slot it touches, and its reserve transaction is conditioned on the version
of each of those slot items, so two overlapping reservations always meet in
at least one slot item and cannot both commit.

The slot size is fixed for the life of a table (changing it would orphan the
claims already written), so it is a constant, not a setting:

* 4 days is the smallest size for which a 366-day reservation, at any
  alignment, touches at most MAX_SLOTS_PER_RESERVATION slot items, which
  keeps reserve within DynamoDB's 100-item transaction limit together with
  the reservation item and the remembered request id.
* The longest reservation is therefore (MAX_SLOTS_PER_RESERVATION - 1)
  slots = 380 days; a reservation of up to 4 days touches 1 or 2 slots.
"""
from .model import NANOS_PER_SECOND

SLOT_SECONDS = 4 * 24 * 3600
SLOT_NS = SLOT_SECONDS * NANOS_PER_SECOND
MAX_SLOTS_PER_RESERVATION = 96
MAX_DURATION_NS = (MAX_SLOTS_PER_RESERVATION - 1) * SLOT_NS


def slot_of(instant_ns: int) -> int:
    """Index of the slot holding an instant (floor division: negative before 1970)."""
    return instant_ns // SLOT_NS


def slots_touched(start_ns: int, end_ns: int) -> range:
    """Slots that the half-open interval [start, end) has at least one instant in."""
    return range(slot_of(start_ns), slot_of(end_ns - 1) + 1)
