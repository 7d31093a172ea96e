"""Celery conventions: explicit ptbill.* names, one route per task, beat entries that expire, retries
below the broker's visibility timeout, late acks."""

from __future__ import annotations

import pytest

from integration.settings import Settings
from tasks.config import QUEUE_MAINT, QUEUE_PROCESS, QUEUE_READ, ROUTES, celery_config


def cfg(**env: str) -> dict:
    return celery_config(Settings.from_env({"PTBILL_BROKER_URL": "redis://127.0.0.1:6379/0", **env}))


def test_registered_tasks_have_explicit_names_and_routes():
    from tasks.app import app
    from tasks.push import resolve_notified
    from tasks.sync import process_encounter, retry_failed, sync_run

    names = {t.name for t in (sync_run, process_encounter, retry_failed, resolve_notified)}
    assert names == set(ROUTES)
    assert all(n.startswith("ptbill.") for n in names)
    assert names <= set(app.tasks)
    assert {r["queue"] for r in ROUTES.values()} == {QUEUE_READ, QUEUE_PROCESS, QUEUE_MAINT}


def test_late_acks_and_no_result_backend():
    c = cfg()
    assert c["task_acks_late"] and c["task_reject_on_worker_lost"]
    assert c["worker_prefetch_multiplier"] == 1
    assert c["result_backend"] is None and c["task_ignore_result"]
    assert c["worker_send_task_events"]  # Flower needs events


def test_beat_entries_expire_before_the_next_one_is_due():
    c = cfg(PTBILL_SYNC_INTERVAL="120")
    entries = c["beat_schedule"]
    assert entries
    for entry in entries.values():
        assert entry["task"] in ROUTES
        assert 0 < entry["options"]["expires"] <= max(30.0, entry["schedule"])


def test_visibility_timeout_bounds_retry_delays():
    c = cfg(PTBILL_VISIBILITY_TIMEOUT="900", PTBILL_RETRY_MAX_SECONDS="600")
    assert c["broker_transport_options"]["visibility_timeout"] == 900
    with pytest.raises(ValueError, match="below"):
        cfg(PTBILL_VISIBILITY_TIMEOUT="300", PTBILL_RETRY_MAX_SECONDS="600")
