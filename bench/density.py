"""Issue 13 (a): reserve and cancel cost against how many bookings the guard slot already holds.

For each density (0 / 8 / 10 / 100 / 1,000 / 5,000 bookings in the slot the new reservation lands in),
a fresh resource gets that many back-to-back bookings bulk-loaded into one guard slot, then one
reserve of a free minute of that same slot is made and cancelled, each measured with the honest
meter (harness.meter) after a warm-up reserve and cancel in the next slot.

Two shapes (chalicelib.layout.Shape):
  default     an undefined resource: 5-day guard slots; 1-minute bookings (5,000 fill 3.5 days).
  rule-sized  defined with max_duration 1 h: 1-hour guard slots; 1-second bookings, and half-second
              ones for 5,000 (an hour holds 3,600 seconds).

v1 kept every claim of a slot in the slot's item, which grew with the density. Printed here per
density: the size of the guard item and of the largest item the reserve reads or writes, items
read, rounds, RRU, WRU (index writes included; the guard's share apart) and $ per million calls. A
guard lists the windows of the bookings of its slot up to 8 (chalicelib.layout.GUARD_LISTED), then is
dense: a reserve in a slot whose guard lists its bookings decides on one read, in a dense one it reads
the bookings around the window after the guard.

    python -m bench.density [--densities 0 8 10 100 1000 5000]
"""

import argparse
import math

from chalicelib import layout
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import Resource
from chalicelib.runtime import default_api
from harness import bulk
from harness.meter import Meter, item_size
from harness.moto import TABLE, moto_table

from .common import (
    CONTEXT,
    DAY_S,
    HOUR_S,
    MINUTE_S,
    bookings,
    define,
    load_into_moto,
    measure,
    moto_images,
    reserve,
    table,
    units,
)

BASE = 1_900_800_000  # a UTC midnight, the first instant of a 5-day slot and of an hour
DENSITIES = (0, 8, 10, 100, 1000, 5000)
SHAPES = {
    "default (undefined, 5-day slots)": {"rules": None, "slot_s": 5 * DAY_S},
    "rule-sized (max_duration 1 h, 1-hour slots)": {"rules": {"max_duration": HOUR_S}, "slot_s": HOUR_S},
}


def _booking_length(shape: dict, density: int) -> float:
    if shape["rules"] is None:
        return MINUTE_S
    return 1.0 if density * 1.0 + MINUTE_S <= shape["slot_s"] else 0.5


def run(densities=DENSITIES) -> list:
    results = []
    with moto_table() as client:
        api = default_api()
        plans = []
        items = []
        for number, (shape_name, shape) in enumerate(SHAPES.items()):
            for density in densities:
                resource_id = f"dense-{number}-{density}"
                if shape["rules"]:
                    define(api, resource_id, **shape["rules"])
                stored_shape = (
                    layout.shape_for(Resource(resource_id, max_duration_ns=HOUR_S * 10**9))
                    if shape["rules"]
                    else layout.Shape()
                )
                length = _booking_length(shape, density)
                items += bulk.items_of(bookings(resource_id, density, BASE, length, users=10), stored_shape)
                free = BASE + math.ceil(density * length / MINUTE_S) * MINUTE_S  # the first free minute after them
                assert free + MINUTE_S <= BASE + shape["slot_s"]
                plans.append((shape_name, density, resource_id, length, free))
        load_into_moto(TABLE, items)
        with Meter(api.reservations.store.client, images=moto_images()) as meter:
            for shape_name, density, resource_id, length, free in plans:
                # warm-up in the next slot (cached definition hint, user and tenant records): a warm-up in the
                # slot itself would add a 9th booking to a guard listing 8, and a dense guard stays dense
                warm = free + SHAPES[shape_name]["slot_s"]
                made = reserve(api, resource_id, "alice", warm, warm + MINUTE_S)
                api.cancel(pb.CancelRequest(id=made.id), CONTEXT)
                reserved = measure(meter, lambda r=resource_id, f=free: reserve(api, r, "alice", f, f + MINUTE_S))
                made_id = reserved.result.id
                cancelled = measure(meter, lambda i=made_id: api.cancel(pb.CancelRequest(id=i), CONTEXT))
                slot = (free * 10**9) // (SHAPES[shape_name]["slot_s"] * 10**9)
                guard = client.get_item(TableName=TABLE, Key=layout.guard_key("default", resource_id, slot))["Item"]
                results.append(
                    {
                        "shape": shape_name,
                        "density": density,
                        "booking_s": length,
                        "guard_bytes": item_size(guard),
                        "reserve": reserved,
                        "cancel": cancelled,
                    }
                )
    _print(results)
    return results


def _print(results: list) -> None:
    rows, shape_of = [], None
    for row in results:
        if row["shape"] != shape_of:
            rows.append(f"-- {row['shape']}")
            shape_of = row["shape"]
        r, c = row["reserve"], row["cancel"]
        largest = max(r.usage.largest_item_written, c.usage.largest_item_written)
        rows.append(
            [
                f"{row['density']:,}",
                f"{row['booking_s']:g} s",
                f"{row['guard_bytes']:.0f}",
                f"{largest / 1024:.2f}",
                r.usage.items_read,
                r.usage.rounds,
                units(r.usage.rru),
                units(r.usage.wru),
                units(r.usage.kind_wru("guard")),
                f"{r.usd_per_million:.2f}",
                c.usage.rounds,
                units(c.usage.rru),
                units(c.usage.wru),
                units(c.usage.kind_wru("guard")),
                f"{c.usd_per_million:.2f}",
            ]
        )
    table(
        [
            "bookings in the slot",
            "each",
            "guard item B",
            "largest item KB",
            "reserve: read",
            "rounds",
            "RRU",
            "WRU",
            "of which guard",
            "$/M",
            "cancel: rounds",
            "RRU",
            "WRU",
            "of which guard",
            "$/M",
        ],
        rows,
    )
    print(
        "WRU include the index writes and the change event; 'largest item' is the largest item the reserve "
        "or the cancel wrote (before or after)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--densities", type=int, nargs="+", default=list(DENSITIES))
    run(tuple(parser.parse_args().densities))


if __name__ == "__main__":
    main()
