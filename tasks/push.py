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
from typing import Any

from celery import Task

from integration.push import PushState, resolve
from tasks.app import runtime, settings
from tasks.base import ptbill_task
from tasks.config import QUEUE_PROCESS, TASK_PUSH_RESOLVE
from tasks.sync import process_encounter

log = logging.getLogger("ptbill.push")


def _resolve_given_up(task: Task, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Counted; the periodic sync is the safety net for what this notification named."""
    PushState(runtime().state).incr({"resolve_failed": 1})


@ptbill_task(TASK_PUSH_RESOLVE, give_up=_resolve_given_up)
def resolve_notified(
    self: Task,
    encounter_ids: list[str] | None = None,
    procedure_ids: list[str] | None = None,
    claims: list[str] | None = None,
) -> dict[str, Any]:
    rt = runtime()
    push = PushState(rt.state)
    push.release(claims or [])
    found = resolve(rt.client, encounter_ids or [], procedure_ids or [], settings.encounter_statuses)
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
