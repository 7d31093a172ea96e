"""Push bookkeeping in a real Redis: coalescing claims, recorded Subscriptions, missed backport events;
and `ptbill serve` with PTBILL_CDS_WRITEBACK queueing the encounter (no worker: the message is counted)."""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx
import pytest
import redis

from integration.push import PushState
from integration.state import StateStore
from ptbill_demo.embedded import free_port
from tests.integration.serve_support import FakeEhr, ServeProcess, hook_request
from tests.integration.support import env_for, ptbill
from tests.pure.cds_support import as_prefetch, load

pytestmark = pytest.mark.integration


@pytest.fixture
def push(redis_url):
    return PushState(StateStore.from_url(redis_url, "test-" + uuid.uuid4().hex[:8]))


def test_claims_coalesce_until_released_or_expired(push):
    key = push.claim("enc:e1", ttl=30)
    assert key is not None and push.claim("enc:e1", ttl=30) is None
    assert push.claim("enc:e2", ttl=30) is not None
    push.release([key])
    assert push.claim("enc:e1", ttl=30) is not None
    short = push.claim("proc:p1", ttl=0.2)
    assert short is not None
    deadline = time.monotonic() + 5
    while push.claim("proc:p1", ttl=30) is None:  # the TTL lapses: a lost resolution never blocks forever
        assert time.monotonic() < deadline
        time.sleep(0.05)
    push.release(["ptbill:other:key"])  # only its own pending keys are ever deleted


def test_recorded_subscriptions_and_counters(push):
    push.record_subscription("procedure-1", "42", "Procedure?", "https://x/notify/procedure-1")
    assert push.subscriptions()["procedure-1"]["id"] == "42"
    push.forget_subscription("procedure-1")
    assert push.subscriptions() == {}
    push.incr({"received": 2, "scheduled": 1, "coalesced": 0})
    assert push.stats() == {"received": 2, "scheduled": 1}


def test_missed_backport_events_are_noticed(push):
    assert push.missed_events("sub", [1], 1) is False  # first seen: nothing to compare with
    assert push.missed_events("sub", [2], 2) is False
    assert push.missed_events("sub", [5], 5) is True  # 3 and 4 never arrived
    assert push.missed_events("sub", [4], 5) is False  # a late one: not a new gap
    assert push.missed_events("sub", [], 5) is False  # heartbeat, all counted events seen
    assert push.missed_events("sub", [], 7) is True  # heartbeat counts events we never received


def test_cds_writeback_queues_the_encounter_for_the_guarded_path(tmp_path, redis_url):
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    port = free_port()
    with FakeEhr() as ehr:
        env = env_for(
            "https://emr.example/fhir",
            redis_url,
            PTBILL_CDS_CLIENTS=ehr.clients_env(),
            PTBILL_PUBLIC_URL=f"http://127.0.0.1:{port}",
            PTBILL_CDS_WRITEBACK="true",
        )
        broker = redis.Redis.from_url(redis_url)
        broker.delete("fhir_read")
        with ServeProcess(env, tmp_path / "serve.log", port=port) as srv:
            ready = httpx.get(f"{srv.url}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json() == {
                "tables": True,
                "redis": True,
                "broker": True,
                "ok": True,
            }
            url = f"{srv.url}/cds-services/ptbill-encounter-discharge"
            body = hook_request(
                "encounter-discharge", {"patientId": patient, "encounterId": enc}, prefetch=prefetch
            )
            r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {ehr.token(url)}"}, timeout=30)
            assert r.status_code == 200 and r.json()["cards"]
            msgs = [json.loads(m) for m in broker.lrange("fhir_read", 0, -1)]
            assert [m["headers"]["task"] for m in msgs] == ["ptbill.push.resolve"]
            metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
            assert 'ptbill_push_tasks_sent_total{task="ptbill.push.resolve"} 1.0' in metrics
            assert 'ptbill_cds_cards_total{indicator="info",service="ptbill-encounter-discharge"}' in metrics


def test_serve_on_a_port_in_use_fails_in_one_line(redis_url):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = env_for("http://127.0.0.1:9/fhir", redis_url)
        p = ptbill(env, "serve", "--port", str(port), timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert lines == [
        f"ptbill: configuration error: ptbill serve cannot listen on 127.0.0.1:{port} (Address already in "
        "use); choose another --port / PTBILL_SERVE_PORT or stop what holds it"
    ]
