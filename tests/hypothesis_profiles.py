"""Hypothesis profiles for the whole suite, loaded by tests/conftest.py before any test module.

    ci     (the default, and what CI=true runs): derandomized, so every run tries the same examples
           and a red run is a real regression, never bad luck; no example database either, so a
           run does not depend on what earlier runs left in .hypothesis/
    dev    random examples, failures remembered in .hypothesis/ and replayed first
    large  like dev, with SCALE = 10 times as many examples (and longer state-machine runs)

Pick one with HYPOTHESIS_PROFILE=dev|large|ci (it wins over CI). Tests size themselves with SCALE.
"""

import os

from hypothesis import HealthCheck, settings

SHARED = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, **SHARED)
settings.register_profile("dev", **SHARED)
settings.register_profile("large", **SHARED)

NAME = os.environ.get("HYPOTHESIS_PROFILE") or "ci"
if NAME not in ("ci", "dev", "large"):
    raise RuntimeError(f"HYPOTHESIS_PROFILE={NAME!r}: expected ci, dev or large")
settings.load_profile(NAME)
SCALE = 10 if NAME == "large" else 1
