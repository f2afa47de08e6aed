"""Every benchmark runs tiny and prints sane figures (bench/smoke.py), each in a process of its own:
tests and benchmarks share the harness, they do not import each other."""

import subprocess
import sys

import pytest

from harness.meter import Gsi, index_writes, table_gsis
from harness.moto import ROOT

BENCHMARKS = sorted(
    path.stem for path in (ROOT / "bench").glob("*.py") if path.stem not in ("__init__", "__main__", "common", "smoke")
)


def test_every_benchmark_has_a_smoke_check():
    listed = subprocess.run(
        [sys.executable, "-m", "bench.smoke", "no-such-benchmark"], cwd=ROOT, capture_output=True, text=True
    )
    assert listed.returncode == 2
    assert sorted(listed.stderr.strip().split("there are ", 1)[1].split(", ")) == BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_tiny(name):
    ran = subprocess.run([sys.executable, "-m", "bench.smoke", name], cwd=ROOT, capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.strip() == f"ok {name}", ran.stdout + ran.stderr


def test_meter_index_writes_follow_the_projection():
    gsis = table_gsis()
    assert {g.name: g.projection for g in gsis}["holds"] == "KEYS_ONLY" and len(gsis) == 6
    keys_only = Gsi("k", "hk", "hexp", "KEYS_ONLY")
    item = {"pk": {"S": "p"}, "sk": {"S": "s"}, "hk": {"S": "H#1"}, "hexp": {"N": "5"}, "note": {"S": "x"}}
    assert [w.what for w in index_writes(None, item, (keys_only,))] == ["put"]
    assert index_writes(item, {**item, "note": {"S": "y"}}, (keys_only,)) == []  # keys only: nothing changed
    assert [w.what for w in index_writes(item, {**item, "hexp": {"N": "6"}}, (keys_only,))] == ["delete", "put"]
    everything = Gsi("a", "hk", "hexp", "ALL")
    assert [w.what for w in index_writes(item, {**item, "note": {"S": "y"}}, (everything,))] == ["update"]
    assert [w.what for w in index_writes(item, None, (everything,))] == ["delete"]
