"""PTBILL_FHIR_REQUEST_BUDGET: one request budget per FHIR server, shared through a real Redis.

The limiter's clock and sleep are injected, so each test decides the waits without sleeping.
"""

from __future__ import annotations

import uuid

import pytest
import redis

from integration.budget import RequestBudget, budget_key, install
from integration.fhir.client import FhirClient
from integration.runner import make_client
from integration.settings import Settings
from tests.redis_db import TEST_REDIS_URL as REDIS_URL


@pytest.fixture
def r() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:  # pragma: no cover - environment problem
        pytest.fail(f"no Redis at {REDIS_URL}; run the tests with scripts/test.sh")
    return client


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_requests_are_spaced_at_the_rate_for_everyone_sharing_the_key(r):
    key = f"ptbill:test-{uuid.uuid4().hex}:budget"
    clock = Clock()
    waits: list[float] = []
    # two "processes" (two limiter objects, two connections) share one budget of 10/s
    a = RequestBudget(r, key, 10, clock=clock, sleep=waits.append)
    b = RequestBudget(redis.Redis.from_url(REDIS_URL), key, 10, clock=clock, sleep=waits.append)
    got = [round(x.reserve(), 3) for x in (a, b, a, b, a)]
    assert got == [0.0, 0.1, 0.2, 0.3, 0.4]
    clock.t += 10  # a quiet spell: the budget is available again at once
    assert a.reserve() == 0.0


def test_burst_lets_that_many_go_at_once(r):
    key = f"ptbill:test-{uuid.uuid4().hex}:budget"
    clock = Clock()
    budget = RequestBudget(r, key, 5, burst=3, clock=clock)
    assert [round(budget.reserve(), 3) for _ in range(5)] == [0.0, 0.0, 0.0, 0.2, 0.4]


def test_the_budget_key_expires(r):
    key = f"ptbill:test-{uuid.uuid4().hex}:budget"
    RequestBudget(r, key, 2).reserve()
    assert 0 < r.pttl(key) <= 62_000


def test_every_request_of_the_client_takes_a_slot(fhir, r):
    key = f"ptbill:test-{uuid.uuid4().hex}:budget"
    clock = Clock()
    waits: list[float] = []
    fhir.always("GET", "/fhir/Patient/1", fhir.json(200, {"resourceType": "Patient", "id": "1"}), times=4)
    with FhirClient(fhir.base_url) as client:
        install(client._session, client.base_url, RequestBudget(r, key, 4, clock=clock, sleep=waits.append))
        for _ in range(4):
            client.read("Patient", "1")
    assert len(fhir.to("/fhir/Patient/1")) == 4
    assert [round(w, 3) for w in waits] == [0.25, 0.5, 0.75]  # the first went at once


def test_make_client_applies_the_configured_budget_and_none_by_default(fhir):
    s = Settings.from_env(
        {
            "PTBILL_FHIR_BASE_URL": fhir.base_url,
            "PTBILL_REDIS_URL": REDIS_URL,
            "PTBILL_FHIR_REQUEST_BUDGET": "600/m",
        }
    )
    assert s.request_budget_per_second == 10
    fhir.on("GET", "/fhir/metadata", fhir.json(200, {"resourceType": "CapabilityStatement"}))
    with make_client(s) as client:
        adapter = client._session.get_adapter(fhir.base_url + "/metadata")
        assert type(adapter).__name__ == "BudgetedAdapter"
        assert adapter.budget.key == budget_key(s.server_key)
        client.capabilities()
    with make_client(Settings.from_env({"PTBILL_FHIR_BASE_URL": fhir.base_url})) as client:
        assert type(client._session.get_adapter(fhir.base_url)).__name__ == "HTTPAdapter"
