"""The Celery application. Start a worker with::

celery -A tasks.app worker -E -Q fhir_read,process,maintenance
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from celery.worker.control import inspect_command

from integration import logs, metrics
from integration.errors import MappingTableError
from integration.runner import Runtime, load_settings_tables
from integration.settings import Settings, unknown_variable_lines
from tasks import broker_guard
from tasks.config import celery_config

settings = Settings.from_env()
if settings.broker_url.startswith("sqla+"):  # embedded demo broker: it is local, so poll it often
    from kombu.transport import sqlalchemy as _kombu_sqla

    _kombu_sqla.Transport.polling_interval = 0.05
broker_guard.install()  # a broker restart must not end the worker (tasks/broker_guard.py)
app = Celery("ptbill", include=["tasks.sync"])
app.conf.update(celery_config(settings))

log = logging.getLogger("ptbill.worker")

_runtime: Runtime | None = None
_meter: metrics.RequestMeter | None = None  # this process's FHIR request counts (flushed to Redis)
_tables_fingerprint: str | None = None  # of the tables this worker checked at start-up


def runtime() -> Runtime:
    """One runtime (FHIR client with its Session, Redis state, tables) per worker process."""
    global _runtime, _meter
    if _runtime is None:
        rt = Runtime(settings)
        _meter = metrics.RequestMeter()
        metrics.install(rt.client._session, rt.client.base_url, _meter)
        _runtime = rt
    return _runtime


def flush_metrics() -> None:
    """After each task: this process's FHIR request counts to Redis (one round trip; never raises)."""
    if _runtime is not None and _meter is not None:
        try:
            metrics.flush(_meter, _runtime.state)
        except Exception as e:  # metrics must never fail a task
            log.warning("metrics not flushed", extra={"error": type(e).__name__})


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    logs.configure(settings.log_level, settings.log_format)


@signals.worker_init.connect
def _check_tables(**_: Any) -> None:
    """Refuse to start on a bad mapping table: a worker must never bill from broken rules."""
    if not logging.getLogger().handlers:  # worker_init can run before setup_logging
        logs.configure(settings.log_level, settings.log_format)
    for line in unknown_variable_lines():
        log.warning(line)  # a typo in a PTBILL_* name must not pass for a setting in silence
    global _tables_fingerprint
    try:
        tables = load_settings_tables(settings)
    except MappingTableError as e:
        log.critical("mapping tables invalid; worker refuses to start", extra={"problems": len(e.problems)})
        for f, row, msg in e.problems:
            log.critical("mapping table problem", extra={"reason": f"{f}:{row}: {msg}"[:300]})
        raise SystemExit(3) from None
    _tables_fingerprint = tables.fingerprint()
    log.info("mapping tables loaded", extra={"tables": dict(tables.versions())})


@inspect_command(name="ptbill_settings")
def _ptbill_settings(state: Any) -> dict[str, Any]:
    """This worker's FHIR server, state Redis, tables and queues (ids, hashes, redacted URLs only)."""
    from tasks.workers import identity

    consumer = getattr(state.consumer, "task_consumer", None)
    queues = [q.name for q in consumer.queues] if consumer is not None else []
    global _tables_fingerprint
    if _tables_fingerprint is None:
        _tables_fingerprint = load_settings_tables(settings).fingerprint()
    return identity(settings, _tables_fingerprint, queues)


@signals.worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    """The worker's main process serves ptbill's Prometheus metrics (read from Redis on each scrape)."""
    if not settings.metrics_port:
        return
    from integration.state import StateStore

    state = StateStore.from_url(settings.redis_url, settings.server_key, settings.dead_letter_days * 86400)
    try:
        metrics.serve(state, settings.metrics_port, settings.metrics_host)
    except OSError as e:  # e.g. another worker on this host serves them already (the same numbers)
        log.warning(
            "metrics port not available; not serving metrics from this worker",
            extra={"port": settings.metrics_port, "error": type(e).__name__},
        )
        return
    log.info("metrics served", extra={"port": settings.metrics_port})


@signals.worker_process_init.connect
def _fresh_runtime(**_: Any) -> None:
    global _runtime, _meter
    _runtime = None  # never share a Session or Redis connection across fork
    _meter = None


@signals.worker_init.connect
def _check_server(**_: Any) -> None:
    """Refuse to start against a FHIR server that lacks what ptbill needs (its CapabilityStatement), with
    the one message naming all of it; an unreachable server is only a warning (each run checks again)."""
    from integration.errors import FhirError
    from integration.runner import make_client, server_verdict

    try:
        with make_client(settings.model_copy(update={"http_timeout": 5.0})) as client:
            statement = client.capabilities()
    except FhirError as e:
        log.warning(
            "FHIR server not checked at start-up; each sync run checks it", extra={"error": type(e).__name__}
        )
        return
    ok, detail, _fix = server_verdict(statement, settings)
    if not ok:
        log.critical("FHIR server unsupported; worker refuses to start", extra={"reason": detail[:1000]})
        raise SystemExit(3)
    log.info("FHIR server supported", extra={"reason": detail[:300]})
