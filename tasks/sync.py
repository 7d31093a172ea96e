"""Thin Celery tasks: serialization, routing, retries. The work is in integration.runner / integration.sync.

Tasks receive IDs only (run id, encounter id) and re-fetch: the encounter group comes from the claim
check the sync run left in Redis, or from the FHIR server when that has expired.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import Any

from celery import Task

from integration.errors import RunDeadlineExceeded, TaskTimeLimit, reason
from integration.runner import (
    begin_run,
    finish_failed,
    finish_ok,
    page_run,
    process_one,
)
from tasks.app import runtime, settings
from tasks.base import ptbill_task
from tasks.config import QUEUE_PROCESS, TASK_PROCESS, TASK_RETRY_FAILED, TASK_SYNC

log = logging.getLogger("ptbill.tasks")


def sync_deadline() -> int:
    """Seconds a sync run may page: PTBILL_SYNC_DEADLINE, at most the sync lock's lifetime."""
    return min(settings.sync_deadline_seconds, settings.lock_timeout)


def dispatch(encounter_id: str, run_id: str) -> None:
    process_encounter.apply_async((encounter_id, run_id), queue=QUEUE_PROCESS)


def _run_id(task: Task, run_id: str | None) -> str:
    # a run always has a name, so a retry of this task continues the same run (and its lock)
    return run_id or str(task.request.id or uuid.uuid4().hex).replace("-", "")[:16]


def _run_age(started: str | None) -> float | None:
    if not started:
        return None
    try:
        t = datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    return time.time() - t.timestamp()


def _sync_given_up(task: Task, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A failed sync run: recorded with its PHI-free reason (``ptbill status``), its lock released."""
    rt = runtime()
    run_id = _run_id(task, kwargs.get("run_id") or (args[0] if args else None))
    if isinstance(exc, TaskTimeLimit):
        exc = RunDeadlineExceeded(f"the sync run ran past PTBILL_SYNC_DEADLINE ({sync_deadline()} s)")
    rt.state.record_failure(reason(exc), run_id)
    rt.state.release_sync_lock(run_id)


@ptbill_task(TASK_SYNC, give_up=_sync_given_up, soft_time_limit=sync_deadline())
def sync_run(
    self: Task,
    run_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    backfill: bool = False,
) -> dict[str, Any]:
    """One sync of the configured FHIR server: page the window and dispatch each encounter."""
    rt = runtime()
    t0 = time.perf_counter()
    run_id = _run_id(self, run_id)
    age = _run_age(rt.state.run(run_id).get("started"))
    if age is not None and age > sync_deadline():  # a retry must not carry a run past its deadline
        raise RunDeadlineExceeded(f"the sync run ran past PTBILL_SYNC_DEADLINE ({sync_deadline()} s)")
    run = begin_run(rt, run_id, since, until, backfill)
    if run is None:
        return {"status": "skipped-locked"}
    stats = page_run(rt, run, dispatch)
    dur = int((time.perf_counter() - t0) * 1000)
    log.info(
        "sync paged",
        extra={
            "run_id": run.run_id,
            "pages": stats.pages,
            "encounters": stats.encounters,
            "duration_ms": dur,
        },
    )
    return {"run_id": run.run_id, "pages": stats.pages, "encounters": stats.encounters}


def _encounter_given_up(
    task: Task, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """Dead-letter the encounter (ids and a PHI-free reason; ``ptbill retry-failed`` re-drives it)."""
    encounter_id = kwargs.get("encounter_id") or args[0]
    run_id = kwargs.get("run_id") or (args[1] if len(args) > 1 else None)
    attempt = task.request.retries + 1
    finish_failed(runtime(), run_id, encounter_id, reason(exc), attempt)
    log.error(
        "encounter dead-lettered",
        extra={
            "encounter_id": encounter_id,
            "run_id": run_id,
            "error": type(exc).__name__,
            "reason": reason(exc),
            "attempt": attempt,
        },
    )


@ptbill_task(TASK_PROCESS, give_up=_encounter_given_up, rate_limit=settings.rate_limit)
def process_encounter(self: Task, encounter_id: str, run_id: str | None = None) -> dict[str, Any]:
    """Decide one encounter and write its difference back (one transaction at most).

    An encounter that fails for good is dead-lettered and the task ends in FAILURE (TaskFailed with
    the PHI-free reason), so Flower shows it as failed while ``ptbill retry-failed`` can re-drive it."""
    rt = runtime()
    t0 = time.perf_counter()
    outcome = process_one(rt, encounter_id, run_id)
    finish_ok(rt, run_id, encounter_id, outcome)
    dur = int((time.perf_counter() - t0) * 1000)
    log.info(
        "encounter processed",
        extra={
            "encounter_id": encounter_id,
            "run_id": run_id,
            "status": outcome.status,
            "duration_ms": dur,
            "counts": {
                "created": outcome.created,
                "updated": outcome.updated,
                "retired": outcome.retired,
                "lines": outcome.lines,
                "findings": outcome.findings,
            },
        },
    )
    return {"status": outcome.status, "created": outcome.created, "updated": outcome.updated}


@ptbill_task(TASK_RETRY_FAILED, max_retries=0)
def retry_failed(self: Task, older_than_seconds: int = 0) -> dict[str, Any]:
    """Re-drive dead-lettered encounters (each re-fetched from the server)."""
    rt = runtime()
    n = 0
    for enc in list(rt.state.dead_letters()):
        process_encounter.apply_async((enc, None), queue=QUEUE_PROCESS)
        n += 1
    log.info("dead letters re-driven", extra={"counts": {"requeued": n}})
    return {"requeued": n}
