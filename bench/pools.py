"""Issue 14: pools (capacity > 1) as they fill: a parking lot, a hotel room type, 8 writers at once.

Everything runs in process against moto, measured with the honest meter (harness.meter); every
reserve and cancel is warm (the same window was reserved and cancelled once before, unmetered, so the
definition hint is cached and the longest-reservation records cover it).

parking lot  500 spaces, 15-minute step, 2-hour bookings starting every 15 minutes (59 or 60 at each
             start): 475 of 500 spaces (95%) taken in every cell for a day. A 2-hour reserve of one
             space inside one 6-hour counter bucket and one across two buckets, then their cancels.
             Goal: <= 2 rounds, <= 24 WRU (index writes included).
hotel        a room type of 40 rooms, 1-day step (a counter bucket spans 24 days), a 120-day season
             filled with random 1-14 night stays until nights are ~90% taken; then a reserve (and its
             cancel) of 1, 2, ... 14 nights, measured on that full season and on an empty room type.
             Goal: reserve <= 2 rounds, WRU growing at most linearly with the nights, not with the
             bookings already made.
8 writers    8 threads, each its own client and service, reserve random units (1-4) for random 1-8
             hour windows of one pool of 100 for a day (moto in process, one call at a time); then the
             checker (ops.checker) reads the whole table: no cell over capacity, every acknowledged
             reservation still there; rounds per success.

    python -m bench.pools [--writers 8] [--per-writer 25]
"""

import argparse
import random
import threading

from chalicelib import layout
from chalicelib.dynamo import DynamoStore, client_from_environment
from chalicelib.errors import ServiceError
from chalicelib.gen import reservation_pb2 as pb
from chalicelib.model import Resource
from chalicelib.runtime import build_api, default_api
from harness import bulk
from harness.meter import Meter
from harness.moto import TABLE, moto_table
from ops import checker

from .common import (
    CONTEXT,
    DAY_S,
    HOUR_S,
    bookings,
    define,
    load_into_moto,
    measure,
    moto_images,
    one_call_at_a_time,
    reserve,
    table,
    units,
)

BASE = 1_900_800_000  # a UTC midnight: the first instant of a 6-hour bucket (15-min step) and a 24-day one
LOT, LOT_CAPACITY, LOT_STEP = "lot-b", 500, 900
LOT_STARTS = (60, 59, 59, 60, 59, 59, 60, 59)  # every 8 consecutive starts: 475 two-hour bookings in each cell
HOTEL_CAPACITY, SEASON_DAYS, HOTEL_FILL = 40, 120, 36
LOT_WRU_GOAL, ROUNDS_GOAL = 24, 2


def _fill_lot(api, hours: int = 14, starts: tuple = LOT_STARTS) -> None:
    define(api, LOT, capacity=LOT_CAPACITY, step=LOT_STEP)
    shape = layout.shape_for(Resource(LOT, capacity=LOT_CAPACITY, step_ns=LOT_STEP * 10**9))
    taken = []
    for step in range(-4 * hours, 4 * hours):  # every cell from 2 h after the first start to the last start: 95%
        start = BASE + step * LOT_STEP
        count = starts[step % len(starts)]
        taken += bookings(LOT, count, start, 0, users=1, pooled=True, user_prefix=f"car{step}-")
    taken = [_stretch(b, 2 * HOUR_S) for b in taken]
    load_into_moto(TABLE, bulk.items_of(taken, shape, capacity=LOT_CAPACITY))


def _stretch(booking, length_s: float):
    import dataclasses

    reservation = booking.reservation
    return dataclasses.replace(
        booking, reservation=dataclasses.replace(reservation, end_ns=reservation.start_ns + round(length_s * 10**9))
    )


def _fill_hotel(api, resource_id: str, chance: random.Random, attempts: int = 20 * SEASON_DAYS) -> int:
    """Random 1-14 night stays over the season until no more fit under HOTEL_FILL per night."""
    define(api, resource_id, capacity=HOTEL_CAPACITY, step=DAY_S)
    shape = layout.shape_for(Resource(resource_id, capacity=HOTEL_CAPACITY, step_ns=DAY_S * 10**9))
    nights_taken = [0] * SEASON_DAYS
    stays = []
    for _ in range(attempts):
        nights = chance.randint(1, 14)
        first = chance.randrange(0, SEASON_DAYS - nights)
        if all(nights_taken[day] < HOTEL_FILL for day in range(first, first + nights)):
            for day in range(first, first + nights):
                nights_taken[day] += 1
            stays.append(
                _stretch(
                    bookings(resource_id, 1, BASE + first * DAY_S, 0, pooled=True, user_prefix=f"guest{len(stays)}-")[
                        0
                    ],
                    nights * DAY_S,
                )
            )
    load_into_moto(TABLE, bulk.items_of(stays, shape, capacity=HOTEL_CAPACITY))
    return len(stays)


def _warm_measured(api, meter, resource_id: str, start: float, end: float) -> tuple:
    made = reserve(api, resource_id, "visitor", start, end)  # warm-up
    api.cancel(pb.CancelRequest(id=made.id), CONTEXT)
    reserved = measure(meter, lambda: reserve(api, resource_id, "visitor", start, end))
    cancelled = measure(meter, lambda: api.cancel(pb.CancelRequest(id=reserved.result.id), CONTEXT))
    return reserved, cancelled


def _writers(writers: int, per_writer: int, seed: int = 14) -> dict:
    define(default_api(), "pool-100", capacity=100, step=LOT_STEP)
    apis = [build_api(DynamoStore(TABLE, client_from_environment())) for _ in range(writers)]
    meters = [Meter(api.reservations.store.client, count_writes=False) for api in apis]
    made, outcome, lock = [], {"made": 0, "full": 0, "aborted": 0, "other": 0}, threading.Lock()

    def writer(number: int) -> None:
        chance = random.Random(seed + number)
        for _ in range(per_writer):
            start = BASE + chance.randrange(0, 96 - 8) * LOT_STEP
            end = start + chance.randint(4, 32) * LOT_STEP
            try:
                reservation = reserve(apis[number], "pool-100", f"w{number}", start, end, units=chance.randint(1, 4))
                key = "made"
                with lock:
                    made.append(reservation.id)
            except ServiceError as error:
                key = {"FAILED_PRECONDITION": "full", "ABORTED": "aborted"}.get(error.code.name, "other")
            with lock:
                outcome[key] += 1

    for meter in meters:
        meter.__enter__()
    try:
        with one_call_at_a_time():
            threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        for meter in meters:
            meter.__exit__()
    usages = [meter.take() for meter in meters]
    api = default_api()
    lost = 0
    for reservation_id in made:
        try:
            api.get(pb.GetRequest(id=reservation_id), CONTEXT)
        except ServiceError:
            lost += 1
    violations = checker.check(api.reservations.store.client, TABLE)
    attempts = sum(outcome.values())
    return {
        **outcome,
        "writers": writers,
        "attempts": attempts,
        "lost": lost,
        "violations": violations,
        "rounds_per_success": sum(u.rounds for u in usages) / max(1, outcome["made"]),
        "rounds_per_call": sum(u.rounds for u in usages) / max(1, attempts),
    }


def run(
    writers: int = 8,
    per_writer: int = 25,
    nights=range(1, 15),
    lot_hours: int = 14,
    hotel_attempts: int = 20 * SEASON_DAYS,
    lot_starts: tuple = LOT_STARTS,
) -> dict:
    """Other nights, lot_hours, hotel_attempts and lot_starts only for the tests' tiny run."""
    chance = random.Random(2026)
    with moto_table():
        api = default_api()
        _fill_lot(api, lot_hours, lot_starts)
        stays = _fill_hotel(api, "doubles-full", chance, hotel_attempts)
        define(api, "doubles-empty", capacity=HOTEL_CAPACITY, step=DAY_S)
        with Meter(api.reservations.store.client, images=moto_images()) as meter:
            lot = {
                "inside one bucket (BASE + 2 h)": _warm_measured(api, meter, LOT, BASE + 2 * HOUR_S, BASE + 4 * HOUR_S),
                "across two buckets (BASE + 5 h)": _warm_measured(
                    api, meter, LOT, BASE + 5 * HOUR_S, BASE + 7 * HOUR_S
                ),
            }
            hotel = {}
            first_day = 48  # stays of up to 8 nights stay inside one 24-day bucket, longer ones cross into the next
            for resource_id in ("doubles-empty", "doubles-full"):  # the longest first: records raised once
                _warm_measured(
                    api, meter, resource_id, BASE + first_day * DAY_S, BASE + (first_day + max(nights)) * DAY_S
                )
            for count in nights:
                for resource_id in ("doubles-empty", "doubles-full"):
                    hotel[(count, resource_id)] = _warm_measured(
                        api, meter, resource_id, BASE + first_day * DAY_S, BASE + (first_day + count) * DAY_S
                    )
    with moto_table():  # a table of its own: the checker reads all of it
        concurrent = _writers(writers, per_writer)
    _print(lot, hotel, stays, concurrent, nights)
    return {"lot": lot, "hotel": hotel, "stays": stays, "concurrent": concurrent}


def _print(lot: dict, hotel: dict, stays: int, concurrent: dict, nights) -> None:
    print(f"parking lot: {LOT_CAPACITY} spaces, 15-min step, 95% taken (475 two-hour bookings in every cell)")
    rows = []
    for name, (reserved, cancelled) in lot.items():
        for call, measured in (("reserve 2 h", reserved), ("cancel", cancelled)):
            u = measured.usage
            rows.append(
                [
                    f"{call}, {name}",
                    u.calls,
                    u.rounds,
                    units(u.rru),
                    units(u.wru_table),
                    f"{units(u.wru_index)} ({u.index_writes})",
                    units(u.wru),
                    u.wru_by_kind.get("bucket", 0),
                    f"{measured.usd_per_million:.2f}",
                ]
            )
    table(["call", "calls", "rounds", "RRU", "WRU table", "WRU index (writes)", "WRU", "of which buckets", "$/M"], rows)
    print(f"goal: <= {ROUNDS_GOAL} rounds, <= {LOT_WRU_GOAL} WRU (index writes and the change event included)")
    print(
        f"hotel room type: {HOTEL_CAPACITY} rooms, 1-day step; full season: {stays} stays of 1-14 nights, "
        f"<= {HOTEL_FILL} of {HOTEL_CAPACITY} rooms taken each night of {SEASON_DAYS}"
    )
    rows = []
    for count in nights:
        empty_r, _ = hotel[(count, "doubles-empty")]
        full_r, full_c = hotel[(count, "doubles-full")]
        rows.append(
            [
                count,
                empty_r.usage.rounds,
                units(empty_r.usage.rru),
                units(empty_r.usage.wru),
                full_r.usage.rounds,
                units(full_r.usage.rru),
                units(full_r.usage.wru),
                units(full_r.usage.kind_wru("bucket")),
                full_c.usage.rounds,
                units(full_c.usage.wru),
            ]
        )
    table(
        [
            "nights",
            "empty: rounds",
            "RRU",
            "WRU",
            "full season: rounds",
            "RRU",
            "WRU",
            "of which buckets",
            "cancel: rounds",
            "WRU",
        ],
        rows,
    )
    print(
        "every stay starts on the same night, 8 nights before the end of a 24-day counter bucket: stays of up to "
        "8 nights write 1 bucket, longer ones 2"
    )
    c = concurrent
    print(
        f"{c['writers']} writers on one pool of 100 (random 1-4 units, 1-8 h windows, one day): {c['attempts']} "
        f"reserves, {c['made']} made, {c['full']} refused as full, {c['aborted']} aborted, {c['other']} other "
        f"errors; checker: {len(c['violations'])} violations; acknowledged but lost: {c['lost']}; "
        f"{c['rounds_per_success']:.2f} rounds per success ({c['rounds_per_call']:.2f} per call)"
    )
    for violation in c["violations"][:5]:
        print(f"  {violation}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=25)
    options = parser.parse_args()
    run(options.writers, options.per_writer)


if __name__ == "__main__":
    main()
