"""`make bench`: every benchmark, one after the other, printing its figures (see BENCHMARKS.md).

python -m bench              # all of them
python -m bench density listen   # some of them, by module name
"""

import datetime
import os
import platform
import sys
import time

from . import (
    availability,
    busy_resource,
    cold_start,
    density,
    dynamodb_cost,
    embedded,
    handler_overhead,
    listen,
    modelled_throughput,
    pools,
    scaling,
    throughput,
)

BENCHES = (
    ("cold_start", "Cold start vs the botocore floor (issue 10)", cold_start.run),
    ("handler_overhead", "Handler overhead per RPC, DynamoDB canned (issue 10)", handler_overhead.run),
    ("dynamodb_cost", "DynamoDB work and cost per RPC on populated resources (issues 13-17)", dynamodb_cost.run),
    ("density", "Reserve and cancel cost against bookings in the guard slot (issue 13 a)", density.run),
    (
        "busy_resource",
        "One busy resource: 10,000 back to back, 8 concurrent writers (issue 13 b, c)",
        busy_resource.run,
    ),
    ("modelled_throughput", "Reserves/s on one resource, modelled DynamoDB (issue 13 d)", modelled_throughput.run),
    ("pools", "Pools: parking lot, hotel room type, 8 writers (issue 14)", pools.run),
    ("availability", "availability and find_slots, 1/10/100 resources x 1 day/1 week (issue 16)", availability.run),
    ("listen", "listen on make serve: latency and resume (issue 17)", listen.run),
    ("scaling", "100 vs 100,000 reservations on one resource (issue 10)", scaling.run),
    ("throughput", "Reserve throughput through make serve (issue 10)", throughput.run),
    (
        "embedded",
        "The embedded DynamoDB through make serve: empty vs 100,000 loaded, memory, stop (issue 10)",
        embedded.run,
    ),
)


def main(names: list) -> None:
    chosen = [bench for bench in BENCHES if not names or bench[0] in names]
    unknown = set(names) - {name for name, _, _ in BENCHES}
    if unknown:
        sys.exit(f"unknown benchmarks {sorted(unknown)}; known: {', '.join(name for name, _, _ in BENCHES)}")
    began = time.perf_counter()
    print(
        f"make bench, {datetime.datetime.now().isoformat(timespec='minutes')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    for name, title, run in chosen:
        print(f"\n== {title} (bench/{name}.py)", flush=True)
        start = time.perf_counter()
        run()
        print(
            f"[{name}: {time.perf_counter() - start:.0f} s; load average now "
            f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}]",
            flush=True,
        )
    print(f"\nmake bench took {(time.perf_counter() - began) / 60:.1f} minutes")


if __name__ == "__main__":
    main(sys.argv[1:])
