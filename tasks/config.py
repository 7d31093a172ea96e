"""All Celery configuration in one place: queues, routes, beat schedule, reliability settings.

Built from the one Settings object (PTBILL_* env vars). Countdowns and retry delays stay below the
Redis visibility timeout so a delayed message is never redelivered while it is still waiting.
"""

from __future__ import annotations

from typing import Any

from kombu import Queue

from integration.settings import Settings

QUEUE_READ = "fhir_read"  # paging the EMR: sync runs, backfills
QUEUE_PROCESS = "process"  # decide one encounter and write back its difference (one transaction)
QUEUE_MAINT = "maintenance"  # re-driving dead letters

TASK_SYNC = "ptbill.sync.run"
TASK_PROCESS = "ptbill.encounter.process"
TASK_RETRY_FAILED = "ptbill.maintenance.retry_failed"
TASK_PUSH_RESOLVE = "ptbill.push.resolve"  # a Subscription notification -> encounters to process

ROUTES = {
    TASK_SYNC: {"queue": QUEUE_READ},
    TASK_PROCESS: {"queue": QUEUE_PROCESS},
    TASK_RETRY_FAILED: {"queue": QUEUE_MAINT},
    TASK_PUSH_RESOLVE: {"queue": QUEUE_READ},  # small reads of the EMR, then ptbill.encounter.process
}
PUSH_TASK_MODULES = ("tasks.push",)  # imported by the worker (the Celery app includes tasks.sync)

MAX_RETRY_DELAY = 600  # seconds: the default of PTBILL_RETRY_MAX_SECONDS (Settings.retry_max_seconds)


def celery_config(s: Settings) -> dict[str, Any]:
    if s.retry_max_seconds >= s.visibility_timeout:  # a delayed message must not be redelivered
        raise ValueError("PTBILL_RETRY_MAX_SECONDS must stay below PTBILL_VISIBILITY_TIMEOUT")
    transport_options: dict[str, Any] = {}
    if s.broker_url.startswith(("redis://", "rediss://")):
        transport_options = {
            "visibility_timeout": s.visibility_timeout,
            # sweep for messages of dead workers often enough that one comes back soon after its
            # visibility timeout (kombu's default sweep runs every 10 s x throttle 10 = 100 s)
            "unacked_restore_interval": max(1, min(10, s.visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
        }
    elif s.broker_url.startswith("sqla+"):
        # the demo's embedded broker (SQLite file). kombu passes transport options to create_engine, so
        # its polling interval is set on the transport class instead (tasks/app.py).
        transport_options = {}
    return {
        "broker_url": s.broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "result_backend": None,  # tasks report through Redis state, not results (Sentry's convention)
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [Queue(QUEUE_READ), Queue(QUEUE_PROCESS), Queue(QUEUE_MAINT)],
        "task_default_queue": QUEUE_PROCESS,
        "task_routes": ROUTES,
        "imports": PUSH_TASK_MODULES,
        # idempotent writes first, then late acks: a killed worker's message is delivered again
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # a late-acked task still running when the broker connection drops cannot be acked on the new
        # connection: acking it on the closed one killed the worker ("Unrecoverable error: AttributeError" in
        # kombu's redis transport). Terminate it instead; its message comes back and the work is idempotent.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": 1,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            "ptbill-periodic-sync": {
                "task": TASK_SYNC,
                "schedule": float(s.sync_interval_seconds),
                "kwargs": {},
                # a sync that could not start before the next one is due is dropped, not piled up
                "options": {"expires": max(30.0, s.sync_interval_seconds * 0.9)},
            },
        },
    }
