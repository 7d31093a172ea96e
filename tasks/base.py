"""The one decorator every ptbill Celery task is made with: ``@ptbill_task(name, ...)``.

It sets, in one place:

* ``bind=True``, ``acks_late=True`` (writes are idempotent; ``task_reject_on_worker_lost`` is global);
* soft and hard time limits: ``soft_time_limit`` (default ``PTBILL_TASK_TIME_LIMIT``) raises
  ``SoftTimeLimitExceeded`` in the task, which gives up like any fatal error; the hard limit, 30 s later,
  kills the pool process and still gives up through :meth:`PtbillTask.on_failure`;
* what retries: an exception whose class is a :class:`integration.errors.TemporaryError` (Redis errors
  count as :class:`integration.errors.StateUnavailable`), with exponential backoff and jitter, at least
  the server's ``Retry-After``, at most ``PTBILL_RETRY_MAX_SECONDS``, ``PTBILL_MAX_RETRIES`` times;
* giving up: the task's ``give_up(task, exc, args, kwargs)`` records it (a dead letter, a failed run),
  then the task ends in Celery's FAILURE state with :class:`integration.errors.TaskFailed`, whose text is
  the PHI-free reason only (what Flower shows), raised ``from None`` so no server text rides along in a
  chained traceback;
* logging through the allow-listed fields, and after every attempt the process's FHIR request metrics
  go to Redis (``integration.metrics.flush``).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import redis.exceptions
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery import Task
from celery.exceptions import Retry

from integration.errors import StateUnavailable, TaskFailed, TaskTimeLimit, TemporaryError, reason
from tasks.app import app, flush_metrics, runtime, settings

log = logging.getLogger("ptbill.tasks")

HARD_LIMIT_GRACE = 30.0  # seconds between the soft and the hard time limit

GiveUp = Callable[[Task, BaseException, tuple[Any, ...], dict[str, Any]], None]


def as_ptbill(exc: BaseException, task: Task | None = None) -> BaseException:
    """Sort an exception into ptbill's tree: Redis errors are temporary, a time limit is fatal."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return StateUnavailable(f"Redis did not answer ({type(exc).__name__})")
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        limit = getattr(task, "soft_time_limit", None) if task is not None else None
        return TaskTimeLimit(f"the task ran past its time limit ({limit or '?'} s)")
    return exc


def retry_delay(task: Task, exc: BaseException) -> float:
    """Exponential backoff (PTBILL_RETRY_BASE_SECONDS * 2**attempt), at least the server's Retry-After,
    at most PTBILL_RETRY_MAX_SECONDS (kept below the visibility timeout by tasks.config), with jitter."""
    cap = settings.retry_max_seconds
    base = min(cap, settings.retry_base_seconds * 2 ** (task.request.retries + 1))
    after = getattr(exc, "retry_after", None)
    if isinstance(after, int | float) and after > 0:
        base = min(cap, max(base, float(after)))
    return float(base * (0.8 + random.random() * 0.4))  # noqa: S311 - jitter, not crypto


class PtbillTask(Task):
    """Celery's Task with ptbill's handling of a hard time limit (the pool process was killed)."""

    give_up: GiveUp | None = None

    def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if not isinstance(exc, TimeLimitExceeded) or self.give_up is None:
            return  # every other failure was given up on inside the task already
        err = TaskTimeLimit(f"the task was killed at its hard time limit ({self.time_limit} s)")
        try:
            self.give_up(self, err, tuple(args or ()), dict(kwargs or {}))
        except Exception as e:  # the main process must not fall over: the run stays unfinished
            log.error("could not record a task killed at its time limit", extra={"error": type(e).__name__})
        log.error("task killed at its hard time limit", extra={"task_name": self.name, "task_id": task_id})


def ptbill_task(
    name: str,
    *,
    give_up: GiveUp | None = None,
    soft_time_limit: float | None = None,
    max_retries: int | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    soft = float(soft_time_limit if soft_time_limit is not None else settings.task_time_limit)

    def decorate(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            attempt = self.request.retries + 1
            try:
                return fn(self, *args, **kwargs)
            except Retry:
                raise
            except Exception as raw:
                exc = as_ptbill(raw, self)
                why = reason(exc)
                if isinstance(exc, TemporaryError) and self.request.retries < self.max_retries:
                    delay = retry_delay(self, exc)
                    log.warning(
                        "task will be retried",
                        extra={
                            "task_name": name,
                            "reason": why,
                            "attempt": attempt,
                            "retry_in": round(delay, 2),
                        },
                    )
                    raise self.retry(exc=TaskFailed(why), countdown=delay) from None
                if give_up is not None:
                    try:
                        give_up(self, exc, args, kwargs)
                    except redis.exceptions.RedisError:
                        # nowhere to record it: try again later rather than ack and lose it
                        delay = retry_delay(self, exc)
                        log.warning(
                            "task failed and Redis is down; retried",
                            extra={"task_name": name, "reason": why, "attempt": attempt},
                        )
                        raise self.retry(
                            exc=TaskFailed(why), countdown=delay, max_retries=self.request.retries + 1
                        ) from None
                log.error(
                    "task failed",
                    extra={
                        "task_name": name,
                        "reason": why,
                        "error": type(exc).__name__,
                        "attempt": attempt,
                        "duration_ms": int((time.perf_counter() - t0) * 1000),
                    },
                )
                raise TaskFailed(why) from None
            finally:
                flush_metrics()

        task_options: dict[str, Any] = {
            "name": name,
            "base": PtbillTask,
            "bind": True,
            "acks_late": True,
            "soft_time_limit": soft,
            "time_limit": soft + HARD_LIMIT_GRACE,
            "max_retries": settings.max_retries if max_retries is None else max_retries,
            "throws": (TaskFailed,),  # an expected end: logged without a traceback
            **options,
        }
        task = app.task(**task_options)(run)
        task.give_up = give_up
        return task

    return decorate


__all__ = ["HARD_LIMIT_GRACE", "as_ptbill", "ptbill_task", "retry_delay", "runtime"]
