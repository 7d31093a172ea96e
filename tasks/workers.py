"""Do the running workers serve this ptbill? (same FHIR server, same Redis state, same rule tables)

A worker answers the ``ptbill_settings`` remote-control command (registered in ``tasks/app.py``) with its
identity: the FHIR server key, its state Redis, the fingerprint of its mapping tables, its version and
the queues it consumes. ``ptbill sync`` and ``ptbill doctor`` compare that with their own settings, so a
CLI and a worker configured differently are reported in one line at once instead of a sync that waits an
hour for a worker that will never pick it up (or picks it up against another server).

Only ids, hashes and redacted URLs travel: never a secret.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from integration import __version__
from integration.settings import Settings, redact_url
from tasks.config import QUEUE_MAINT, QUEUE_PROCESS, QUEUE_READ

COMMAND = "ptbill_settings"
WORKER_COMMAND = "celery -A tasks.app worker -E -Q fhir_read,process,maintenance"
NEEDED_QUEUES = (QUEUE_READ, QUEUE_PROCESS)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def identity(settings: Settings, tables_fingerprint: str | None, queues: list[str]) -> dict[str, Any]:
    """What a worker reports about itself (and what the CLI computes for itself)."""
    return {
        "version": __version__,
        "fhir_base_url": redact_url(settings.fhir_base_url),
        "server_key": settings.server_key,
        "redis_url": redact_url(settings.redis_url),
        "redis_key": _digest(settings.redis_url),
        "mappings_dir": settings.mappings_dir or "(shipped tables)",
        "mappings": tables_fingerprint,
        "queues": sorted(queues),
    }


@dataclass(frozen=True)
class WorkerCheck:
    ok: bool
    line: str  # one line: what was found
    fix: str = ""  # one line: what to do
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What differs between this process's identity and a worker's, in words."""
    out: list[str] = []
    if theirs.get("server_key") != mine["server_key"]:
        out.append(f"FHIR server {theirs.get('fhir_base_url')} (here: {mine['fhir_base_url']})")
    if theirs.get("redis_key") != mine["redis_key"]:
        out.append(f"state Redis {theirs.get('redis_url')} (here: {mine['redis_url']})")
    if mine.get("mappings") and theirs.get("mappings") != mine["mappings"]:
        out.append(
            f"mapping tables {theirs.get('mappings_dir')} [{theirs.get('mappings')}] "
            f"(here: {mine['mappings_dir']} [{mine['mappings']}])"
        )
    return out


def check_workers(
    app: Any, settings: Settings, tables_fingerprint: str | None, *, timeout: float = 2.0
) -> WorkerCheck:
    """Ask every worker on the broker who it is; OK when workers with our settings consume our queues."""
    mine = identity(settings, tables_fingerprint, [])
    replies: list[dict[str, Any]] = app.control.broadcast(COMMAND, reply=True, timeout=timeout) or []
    workers: dict[str, dict[str, Any]] = {}
    for reply in replies:
        for host, answer in reply.items():
            workers[host] = answer if isinstance(answer, dict) else {"error": str(answer)}
    broker = redact_url(settings.broker_url)
    if not workers:
        return WorkerCheck(
            False,
            f"no Celery worker answered on the broker {broker} within {timeout:.0f} s",
            f"start one with the same PTBILL_* settings ({WORKER_COMMAND}), or use --inline",
        )
    same: dict[str, dict[str, Any]] = {}
    other: list[str] = []
    for host, who in sorted(workers.items()):
        if "server_key" not in who:
            other.append(f"{host} runs a ptbill without the settings check ({who.get('error', 'no answer')})")
            continue
        diff = differences(mine, who)
        if diff:
            other.append(f"{host} uses another " + "; another ".join(diff))
        else:
            same[host] = who
    queues = {q for who in same.values() for q in who.get("queues", [])}
    missing = [q for q in NEEDED_QUEUES if q not in queues]
    if not same:
        return WorkerCheck(
            False,
            "no worker has this ptbill's settings: " + " | ".join(other),
            "start the workers with the same PTBILL_FHIR_BASE_URL, PTBILL_REDIS_URL and PTBILL_MAPPINGS_DIR "
            "as this command (ptbill doctor on both sides shows them)",
            workers,
        )
    if missing:
        return WorkerCheck(
            False,
            f"no worker with these settings consumes queue(s) {', '.join(missing)} "
            f"({len(same)} worker(s) consume {', '.join(sorted(queues)) or 'nothing'})",
            f"start a worker on all queues: {WORKER_COMMAND}",
            workers,
        )
    line = f"{len(same)} worker(s) with the same settings: " + ", ".join(
        f"{h} [{','.join(w.get('queues', []))}]" for h, w in same.items()
    )
    if QUEUE_MAINT not in queues:
        line += f"; none consumes {QUEUE_MAINT} (retry-failed through the workers waits)"
    if other:
        line += f"; also {len(other)} other worker(s): " + " | ".join(other)
    return WorkerCheck(True, line, "", workers)
