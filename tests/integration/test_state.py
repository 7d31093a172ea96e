"""The Redis state store against a real Redis: watermark, runs, finalisation, counters, locks."""

from __future__ import annotations

import uuid

import pytest
import redis

from integration.state import StateStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_url):
    return StateStore(redis.Redis.from_url(redis_url, decode_responses=True), "test-" + uuid.uuid4().hex[:8])


def test_watermark_only_moves_forward(store):
    assert store.watermark() is None
    store.set_watermark("2026-03-01T00:00:00.000Z")
    store.set_watermark("2026-02-01T00:00:00.000Z")
    assert store.watermark() == "2026-03-01T00:00:00.000Z"


def test_run_finalises_once_when_paging_done_and_nothing_pending(store):
    run = store.start_run("1970-01-01T00:00:00Z", "2026-03-01T00:00:00.000Z")
    store.add_pending(run.run_id, ["a", "b"])
    store.set_paging_done(run.run_id)
    store.done(run.run_id, "a")
    assert store.try_finalize(run.run_id) is None  # b still pending
    assert store.watermark() is None
    store.done(run.run_id, "b")
    summary = store.try_finalize(run.run_id)
    assert summary is not None and summary["status"] == "ok"
    assert store.try_finalize(run.run_id) is None  # exactly once
    assert store.watermark() == "2026-03-01T00:00:00.000Z"
    assert store.last_ok()["run_id"] == run.run_id


def test_backfill_never_moves_the_watermark_and_dead_letters_make_a_partial_run(store):
    store.set_watermark("2026-01-01T00:00:00.000Z")
    run = store.start_run("1970-01-01T00:00:00Z", "2026-05-01T00:00:00.000Z")
    store.r.hset(f"{store.p}:run:{run.run_id}", "backfill", 1)
    store.incr(run.run_id, "dead_lettered")
    store.set_paging_done(run.run_id)
    summary = store.try_finalize(run.run_id)
    assert summary is not None and summary["status"] == "partial"
    assert store.watermark() == "2026-01-01T00:00:00.000Z"


def test_counters_add_up_in_run_and_totals(store):
    run = store.start_run("a", "b")
    store.incr_many(run.run_id, {"created": 3, "lines": 2, "zero": 0})
    store.incr_many(run.run_id, {"created": 1})
    assert store.run(run.run_id)["created"] == "4"
    assert "zero" not in store.run(run.run_id)
    assert store.totals()["lines"] == "2"


def test_sync_lock_is_exclusive_and_released_only_by_its_owner(store):
    assert store.acquire_sync_lock("run-1", 60)
    assert not store.acquire_sync_lock("run-2", 60)
    store.release_sync_lock("run-2")
    assert store.sync_lock_holder() == "run-1"
    store.release_sync_lock("run-1")
    assert store.sync_lock_holder() is None


def test_dead_letters_round_trip(store):
    store.dead_letter("enc-9", "FhirFatalError status=422 invalid", 3, "run-x")
    d = store.dead_letters()["enc-9"]
    assert d["attempts"] == 3 and "422" in d["reason"]
    store.clear_dead_letter("enc-9")
    assert store.dead_letters() == {}


def test_finish_encounter_books_everything_in_one_call(store):
    run = store.start_run("a", "b")
    store.add_pending(run.run_id, ["e1", "e2"])
    store.put_group(run.run_id, "e1", {"encounter": {}, "related": {}})
    store.dead_letter("e1", "earlier failure", 1, None)
    assert (
        store.finish_encounter(run.run_id, "e1", {"processed": 1, "created": 3}, clear_dead_letter=True)
        is False
    )
    assert store.get_group(run.run_id, "e1") is None  # claim check dropped
    assert "e1" not in store.dead_letters()
    assert store.pending_count(run.run_id) == 1
    assert store.run(run.run_id)["created"] == "3" and store.totals()["processed"] == "1"
    store.set_paging_done(run.run_id)
    store.dead_letter("e2", "boom", 2, run.run_id)
    assert store.finish_encounter(run.run_id, "e2", {"dead_lettered": 1}, clear_dead_letter=False) is True
    assert "e2" in store.dead_letters()  # a failure keeps its dead letter
    assert store.try_finalize(run.run_id)["status"] == "partial"


def test_finish_encounter_never_recreates_a_lost_run_record(store):
    assert store.finish_encounter("gone", "e1", {"processed": 1}, clear_dead_letter=True) is False
    assert store.run("gone") == {}
    assert store.totals()["processed"] == "1"
