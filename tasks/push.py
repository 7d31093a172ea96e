"""The push task: a Subscription notification's targets -> ``ptbill.encounter.process`` per encounter.

``ptbill serve`` schedules ``ptbill.push.resolve`` with a short countdown (PTBILL_PUSH_DEBOUNCE_SECONDS)
and a pending key per target, so a burst of notifications for one encounter (a note saved with ten
Procedures) becomes one resolution. The task first drops those keys (a notification arriving from now on
schedules a new resolution, so no edit is missed), reads the current state of what was named (the
encounter of an id-only Procedure, every encounter's status) and dispatches the encounters ptbill bills,
through the same task and guarded write path as the sync. Duplicates and reordering are harmless: the
encounter task re-fetches, holds the encounter's lock and writes only differences.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task

from integration.errors import FhirTemporaryError
from integration.push import PushState, resolve
from tasks.app import app, runtime, settings
from tasks.config import QUEUE_PROCESS, TASK_PUSH_RESOLVE
from tasks.sync import TEMPORARY, process_encounter

log = logging.getLogger("ptbill.push")


def _retry_delay(task: Task, exc: BaseException) -> float:
    cap = settings.retry_max_seconds
    base = min(cap, settings.retry_base_seconds * 2 ** (task.request.retries + 1))
    after = exc.retry_after if isinstance(exc, FhirTemporaryError) else None
    if after:
        base = min(cap, max(base, float(after)))
    return base * (0.8 + random.random() * 0.4)  # noqa: S311 - jitter, not crypto


@app.task(name=TASK_PUSH_RESOLVE, bind=True, acks_late=True, max_retries=settings.max_retries)
def resolve_notified(
    self: Task,
    encounter_ids: list[str] | None = None,
    procedure_ids: list[str] | None = None,
    claims: list[str] | None = None,
) -> dict[str, Any]:
    rt = runtime()
    push = PushState(rt.state)
    try:
        push.release(claims or [])
        found = resolve(rt.client, encounter_ids or [], procedure_ids or [], settings.encounter_statuses)
    except TEMPORARY as exc:
        if self.request.retries >= self.max_retries:
            push.incr({"resolve_failed": 1})
            log.error(
                "push resolution failed after retries; the periodic sync will catch up",
                extra={"error": type(exc).__name__, "attempt": self.request.retries + 1},
            )
            return {"status": "failed"}
        raise self.retry(exc=exc, countdown=_retry_delay(self, exc)) from None
    except Exception as exc:  # fatal for this notification: counted; the periodic sync is the safety net
        push.incr({"resolve_failed": 1})
        log.error("push resolution failed", extra={"error": type(exc).__name__})
        return {"status": "failed"}
    for eid in found.dispatch:
        process_encounter.apply_async((eid, None), queue=QUEUE_PROCESS)
    counts = {
        "dispatched": len(found.dispatch),
        "not_found": found.not_found,
        "skipped_status": found.skipped_status,
    }
    push.incr(counts)
    log.info("push notification resolved", extra={"counts": counts})
    return {"status": "ok", **counts}
