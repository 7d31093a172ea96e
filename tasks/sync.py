"""Thin Celery tasks: serialization, routing, retries. The work is in integration.runner / integration.sync.

Tasks receive IDs only (run id, encounter id) and re-fetch: the encounter group comes from the claim
check the sync run left in Redis, or from the FHIR server when that has expired.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

from celery import Task
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from integration.errors import FhirTemporaryError, LockBusy
from integration.runner import (
    begin_run,
    failure_reason,
    page_run,
    run_encounter,
)
from tasks.app import app, runtime, settings
from tasks.config import QUEUE_PROCESS, TASK_PROCESS, TASK_RETRY_FAILED, TASK_SYNC

log = logging.getLogger("ptbill.tasks")

TEMPORARY = (FhirTemporaryError, LockBusy, RedisConnectionError, RedisTimeoutError)


def _delay(task: Task, exc: BaseException) -> float:
    """Exponential backoff (PTBILL_RETRY_BASE_SECONDS * 2**attempt), at least the server's Retry-After,
    at most PTBILL_RETRY_MAX_SECONDS (kept below the visibility timeout by tasks.config)."""
    cap = settings.retry_max_seconds
    retry_after = getattr(exc, "retry_after", None)
    base = min(cap, settings.retry_base_seconds * 2 ** (task.request.retries + 1))
    if isinstance(retry_after, int | float) and retry_after > 0:
        base = min(cap, max(base, float(retry_after)))
    return base * (0.8 + random.random() * 0.4)  # noqa: S311 - jitter, not crypto


def _log_dead_letter(run_id: str | None, encounter_id: str, exc: BaseException | None, attempt: int) -> None:
    log.error(
        "encounter dead-lettered",
        extra={
            "encounter_id": encounter_id,
            "run_id": run_id,
            "error": type(exc).__name__,
            "attempt": attempt,
        },
    )


def dispatch(encounter_id: str, run_id: str) -> None:
    process_encounter.apply_async((encounter_id, run_id), queue=QUEUE_PROCESS)


@app.task(name=TASK_SYNC, bind=True, acks_late=True, max_retries=settings.max_retries)
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
    # a run always has a name, so a retry of this task continues the same run (and its lock)
    run_id = run_id or str(self.request.id or uuid.uuid4().hex).replace("-", "")[:16]
    try:
        run = begin_run(rt, run_id, since, until, backfill)
        if run is None:
            return {"status": "skipped-locked"}
        stats = page_run(rt, run, dispatch)
    except TEMPORARY as exc:
        if self.request.retries >= self.max_retries:
            rt.state.record_failure(failure_reason(exc), run_id)
            if run_id:
                rt.state.release_sync_lock(run_id)
            log.error("sync failed after retries", extra={"run_id": run_id, "error": type(exc).__name__})
            raise
        raise self.retry(exc=exc, countdown=_delay(self, exc)) from None
    except Exception as exc:
        rt.state.record_failure(failure_reason(exc), run_id)
        if run_id:
            rt.state.release_sync_lock(run_id)
        log.error("sync failed", extra={"run_id": run_id, "error": type(exc).__name__}, exc_info=True)
        raise
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


@app.task(
    name=TASK_PROCESS,
    bind=True,
    acks_late=True,
    max_retries=settings.max_retries,
    rate_limit=settings.rate_limit,
)
def process_encounter(self: Task, encounter_id: str, run_id: str | None = None) -> dict[str, Any]:
    """Decide one encounter and write its difference back (one transaction at most)."""
    rt = runtime()
    t0 = time.perf_counter()
    attempt = self.request.retries + 1
    try:  # temporary failures are retried while retries last; anything else is a dead letter
        outcome, failed = run_encounter(
            rt,
            encounter_id,
            run_id,
            attempt=attempt,
            will_retry=lambda e: isinstance(e, TEMPORARY) and self.request.retries < self.max_retries,
        )
    except TEMPORARY as exc:
        delay = _delay(self, exc)
        log.warning(
            "encounter will be retried",
            extra={
                "encounter_id": encounter_id,
                "error": type(exc).__name__,
                "attempt": attempt,
                "retry_in": delay,
            },
        )
        raise self.retry(exc=exc, countdown=delay) from None
    if outcome is None:  # recorded for retry-failed: never lost, never stopping the batch
        _log_dead_letter(run_id, encounter_id, failed, attempt)
        return {"status": "dead-lettered"}
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


@app.task(name=TASK_RETRY_FAILED, bind=True, acks_late=True)
def retry_failed(self: Task, older_than_seconds: int = 0) -> dict[str, Any]:
    """Re-drive dead-lettered encounters (each re-fetched from the server)."""
    rt = runtime()
    n = 0
    for enc in list(rt.state.dead_letters()):
        process_encounter.apply_async((enc, None), queue=QUEUE_PROCESS)
        n += 1
    log.info("dead letters re-driven", extra={"counts": {"requeued": n}})
    return {"requeued": n}
