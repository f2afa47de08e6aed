"""Fixtures of the unit layer: a fresh fake store, clock and service for every test."""

import pytest

from chalicelib import service as service_module
from chalicelib.runtime import build_api
from harness.fake_store import FakeStore

from .support import NOW, FakeClock, World


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    monkeypatch.setenv("PAGE_TOKEN_SECRET", "unit-test-secret")
    monkeypatch.setenv("FEED_SETTLE_MS", "0")
    # retries after a lost race or answer back off with real sleeps: not in unit tests
    monkeypatch.setattr(service_module, "_backoff", lambda attempt: None)


@pytest.fixture
def clock():
    return FakeClock(NOW)


@pytest.fixture
def store():
    return FakeStore()


@pytest.fixture
def world(store, clock):
    return World(build_api(store, clock=clock), store, clock)
