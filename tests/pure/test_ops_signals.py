"""Issue 12, honest signals and bounded work, the pure parts: one task decorator (time limits, late acks,
what retries), PHI-free reasons, dead letters that expire, JSON that cannot crash a reader, and
ptbill's Prometheus metrics read from the sync state."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest
import redis
from billiard.exceptions import SoftTimeLimitExceeded
from prometheus_client import generate_latest

from integration import metrics
from integration.errors import (
    FhirFatalError,
    FhirTemporaryError,
    InputError,
    JsonRefused,
    LockBusy,
    StateUnavailable,
    TaskTimeLimit,
    TemporaryError,
    reason,
)
from integration.jsonio import check_depth, loads
from integration.state import StateStore

# --- one task decorator -----------------------------------------------------------------------------


def test_every_ptbill_task_is_made_by_the_one_decorator():
    from tasks.app import app, settings
    from tasks.base import HARD_LIMIT_GRACE, PtbillTask
    from tasks.push import resolve_notified  # noqa: F401  (registers the push task)
    from tasks.sync import sync_deadline

    tasks = {n: t for n, t in app.tasks.items() if n.startswith("ptbill.")}
    assert set(tasks) >= {
        "ptbill.sync.run",
        "ptbill.encounter.process",
        "ptbill.maintenance.retry_failed",
        "ptbill.push.resolve",
    }
    for name, t in tasks.items():
        assert isinstance(t, PtbillTask), name
        assert t.acks_late, name
        assert t.soft_time_limit and t.time_limit == t.soft_time_limit + HARD_LIMIT_GRACE, name
    assert tasks["ptbill.sync.run"].soft_time_limit == sync_deadline()
    assert tasks["ptbill.encounter.process"].soft_time_limit == settings.task_time_limit


def test_what_retries_is_decided_by_the_error_tree():
    from tasks.base import as_ptbill

    assert isinstance(FhirTemporaryError("x", status=503), TemporaryError)
    assert isinstance(LockBusy("x"), TemporaryError)
    assert not isinstance(FhirFatalError("x", status=422), TemporaryError)
    assert isinstance(as_ptbill(redis.exceptions.ConnectionError("boom")), StateUnavailable)
    assert isinstance(as_ptbill(redis.exceptions.TimeoutError("slow")), StateUnavailable)
    timed_out = as_ptbill(SoftTimeLimitExceeded())
    assert isinstance(timed_out, TaskTimeLimit) and not isinstance(timed_out, TemporaryError)


def test_sync_deadline_never_outlives_the_sync_lock(monkeypatch):
    from tasks import sync

    assert sync.sync_deadline() == min(sync.settings.sync_deadline_seconds, sync.settings.lock_timeout)


# --- PHI-free reasons ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            FhirFatalError(
                "POST https://emr/fhir: HTTP 422: Patient Jane Roe",
                status=422,
                method="POST",
                url="https://emr/fhir?x=Roe",
                outcome="Patient Jane Roe",
            ),
            "FhirFatalError POST https://emr/fhir -> HTTP 422",
        ),
        (
            FhirTemporaryError("...", method="GET", url="https://emr/fhir/Encounter", kind="read-timeout"),
            "FhirTemporaryError GET https://emr/fhir/Encounter (read-timeout)",
        ),
        (
            InputError("not found", resource_type="Encounter", resource_id="e1"),
            "InputError Encounter/e1: not found",
        ),
        (ValueError("Jane Roe's note"), "ValueError"),
        (KeyError("Roe"), "KeyError"),
    ],
)
def test_reason_is_built_from_ptbills_own_fields(exc, expected):
    assert reason(exc) == expected
    assert "Roe" not in reason(exc)


def test_an_unknown_kind_is_not_passed_through():
    e = FhirFatalError("x", status=400, method="GET", url="https://e/fhir/X", kind="Jane Roe")
    assert e.kind == "http-400"


# --- dead letters and run records ------------------------------------------------------------------


@pytest.fixture
def store() -> StateStore:
    return StateStore(fakeredis.FakeRedis(decode_responses=True), "k1", dead_letter_ttl=60)


def test_dead_letters_expire(store):
    store.dead_letter("e1", "FhirFatalError POST https://emr/fhir -> HTTP 422", 1, "r1")
    assert set(store.dead_letters()) == {"e1"}
    assert 0 < store.r.ttl(f"{store.p}:dead") <= 60
    raw = json.loads(store.r.hget(f"{store.p}:dead", "e1"))
    store.r.hset(f"{store.p}:dead", "e2", json.dumps({**raw, "expires": int(time.time()) - 1}))
    assert set(store.dead_letters()) == {"e1"}  # e2 is past its expiry: gone
    assert not store.r.hexists(f"{store.p}:dead", "e2")


def test_runs_are_counted_by_status(store):
    store.record_failure("RunDeadlineExceeded: the sync run ran past PTBILL_SYNC_DEADLINE (5 s)", "r1")
    store.record_failure("FhirTemporaryError GET https://emr/fhir/Encounter (connection-refused)", "r2")
    assert store.runs_by_status() == {"failed": 2}
    assert store.last()["reason"].startswith("FhirTemporaryError GET")


# --- JSON from outside -----------------------------------------------------------------------------


def test_json_too_deep_for_the_parser_is_refused_cleanly():
    with pytest.raises(JsonRefused) as info:
        loads(b"[" * 500_000 + b"]" * 500_000)
    assert info.value.kind == "too-deep"


def test_json_depth_check_is_iterative():
    deep: list = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    with pytest.raises(JsonRefused, match="deeper than 64"):
        check_depth(deep)
    check_depth({"a": [{"b": [1, 2, {"c": "d"}]}]})


def test_undecodable_bytes_are_refused_or_replaced_on_request():
    raw = b'{"resourceType": "Bundle", "note": "ther ex \xff\xfe"}'
    with pytest.raises(JsonRefused) as info:
        loads(raw)
    assert info.value.kind == "not-json" and "\xff" not in info.value.reason
    assert loads(raw, replace_undecodable=True)["note"].startswith("ther ex ")


def test_not_json_names_where_parsing_stopped_not_what_it_read():
    with pytest.raises(JsonRefused) as info:
        loads(b'{"name": "Jane Roe", ')
    assert "Roe" not in info.value.reason and "line 1" in info.value.reason


# --- metrics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "kind"),
    [
        ("GET", "https://e/fhir/metadata", "capabilities"),
        ("GET", "https://e/fhir/Encounter/e1", "read"),
        ("GET", "https://e/fhir/Encounter?_count=100", "search"),
        ("GET", "https://e/fhir/Encounter/_search", "search"),
        ("POST", "https://e/fhir", "write"),
        ("PUT", "https://e/fhir/ChargeItem/ptb-1", "write"),
        ("POST", "https://e/oauth/token", "auth"),
        ("GET", "https://e/fhir/.well-known/smart-configuration", "auth"),
    ],
)
def test_request_kind(method, url, kind):
    assert metrics.request_kind(method, url, "/fhir") == kind


def test_metrics_come_from_the_sync_state(store):
    store.r.hset(f"{store.p}:totals", mapping={"processed": 7, "unchanged": 2, "dead_lettered": 1})
    store.dead_letter("e9", "FhirFatalError POST https://emr/fhir -> HTTP 422", 1, "r1")
    store.set_watermark("2026-01-01T00:00:00Z")
    store.r.hset(f"{store.p}:last", mapping={"status": "partial", "finished": "2026-01-01T00:05:00Z"})
    store.r.hincrby(f"{store.p}:runs", "partial", 1)
    meter = metrics.RequestMeter()
    meter.observe("search", "2xx", 0.07)
    meter.observe("search", "5xx", 3.0)
    meter.observe("write", "2xx", 0.2)
    metrics.flush(meter, store)
    now = 1767225600.0 + 3600  # 2026-01-01T01:00:00Z
    reg = metrics.CollectorRegistry(auto_describe=False)
    reg.register(metrics.StateCollector(store, now=lambda: now))
    text = generate_latest(reg).decode()
    assert 'ptbill_sync_runs_total{status="partial"} 1.0' in text
    assert 'ptbill_encounters_total{outcome="processed"} 7.0' in text
    assert 'ptbill_encounters_total{outcome="dead_lettered"} 1.0' in text
    assert "ptbill_dead_letters 1.0" in text
    assert "ptbill_watermark_lag_seconds 3600.0" in text
    assert 'ptbill_last_run_status{status="partial"} 1.0' in text
    assert 'ptbill_last_run_status{status="ok"} 0.0' in text
    assert 'ptbill_fhir_requests_total{kind="search",status="2xx"} 1.0' in text
    assert 'ptbill_fhir_requests_total{kind="search",status="5xx"} 1.0' in text
    assert 'ptbill_fhir_request_seconds_bucket{kind="search",le="0.1"} 1.0' in text
    assert 'ptbill_fhir_request_seconds_bucket{kind="search",le="+Inf"} 2.0' in text
    assert 'ptbill_fhir_request_seconds_count{kind="write"} 1.0' in text
    assert "e9" not in text  # labels are fixed words, never ids


def test_metrics_kept_while_redis_is_down():
    meter = metrics.RequestMeter()
    meter.observe("read", "2xx", 0.01)
    down = StateStore(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), "k")
    metrics.flush(meter, down)  # never raises
    assert meter.drain() == {
        "read|n|2xx": 1.0,
        "read|sum": 0.01,
        **{f"read|le|{b:g}": 1.0 for b in metrics.BUCKETS},
    }


# --- linear-memory grouping of a big bundle ---------------------------------------------------------


def _wide_bundle(encounters: int, practitioners: int) -> dict:
    entries = [
        {"resource": {"resourceType": "Practitioner", "id": f"pr{i}"}, "fullUrl": f"urn:uuid:pr-{i}"}
        for i in range(practitioners)
    ]
    for i in range(encounters):
        entries.append({"resource": {"resourceType": "Patient", "id": f"p{i}"}})
        entries.append(
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": f"e{i}",
                    "status": "finished",
                    "subject": {"reference": f"Patient/p{i}"},
                }
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def test_grouping_one_encounter_at_a_time_stays_linear():
    """Every group's related map holds the bundle's shared resources: keeping all groups (what
    process --bundle did) costs encounters x shared; iter_groups lets each go."""
    import tracemalloc

    from integration.fhir.extract import group_bundle, iter_groups

    bundle = _wide_bundle(encounters=400, practitioners=800)

    def peak(fn) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def one_at_a_time() -> None:
        problems: list[str] = []
        n = sum(1 for _enc, _related in iter_groups(bundle, problems))
        assert n == 400

    streamed = peak(one_at_a_time)
    listed = peak(lambda: group_bundle(bundle))
    assert streamed * 10 < listed, (streamed, listed)
    problems: list[str] = []
    assert [e["id"] for e, _ in iter_groups(bundle, problems)] == [
        e["id"] for e, _ in group_bundle(bundle)[0]
    ]
