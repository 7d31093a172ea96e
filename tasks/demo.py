"""``ptbill demo``: the whole product on one machine with one command.

1. an embedded FHIR server (sekmet-fhir on 127.0.0.1, simulator off, temporary database);
2. an embedded Redis-protocol broker (fakeredis, in this process) -- or the Redis named by
   PTBILL_BROKER_URL when it is set;
3. a synthetic PT clinic seeded into the server;
4. one full sync through a real Celery worker process (not eager mode), with a progress bar;
5. a summary of what was written, read back from the FHIR server.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from integration.embedded import EmbeddedRedis, SekmetServer, WorkerProcess
from integration.fhir.client import FhirClient
from integration.fhir.writeback import EXT_MODIFIER, PTBILL_TAG
from integration.synth import clinic_summary, generate_clinic


def _count(client: FhirClient, rtype: str, extra: list[tuple[str, str]] | None = None) -> int:
    b = client.get(rtype, [("_tag", f"{PTBILL_TAG}|ptbill"), ("_summary", "count"), *(extra or [])])
    t = b.get("total")
    return t if isinstance(t, int) else 0


def _charge_summary(client: FhirClient) -> tuple[Counter[str], Counter[str], int]:
    units: Counter[str] = Counter()
    mods: Counter[str] = Counter()
    n = 0
    for e in client.search_entries("ChargeItem", [("_tag", f"{PTBILL_TAG}|ptbill"), ("status", "planned")]):
        r = e.get("resource") or {}
        n += 1
        code = ((r.get("code") or {}).get("coding") or [{}])[0].get("code", "?")
        units[code] += int((r.get("quantity") or {}).get("value") or 0)
        for x in r.get("extension") or []:
            if x.get("url") == EXT_MODIFIER:
                mods[x["valueCodeableConcept"]["coding"][0]["code"]] += 1
    return units, mods, n


def run_demo(*, patients: int = 50, seed: int = 0, workers: int = 2, keep: bool = False) -> int:
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="ptbill-demo-"))
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    external_broker = os.environ.get("PTBILL_BROKER_URL")
    redis_srv = None if external_broker else EmbeddedRedis().start()
    # embedded: an SQLite-backed kombu broker (no server) and an in-process Redis-protocol state store
    broker = external_broker or f"sqla+sqlite:///{tmp / 'broker.sqlite'}"
    state_url = os.environ.get("PTBILL_REDIS_URL") or (redis_srv.url if redis_srv else broker)
    server = SekmetServer(tmp / "fhir")
    worker: WorkerProcess | None = None
    try:
        say(f"[1/4] starting embedded FHIR server (sekmet-fhir) in {tmp}")
        server.start()
        say(f"      FHIR base URL {server.base_url}; broker {'(embedded)' if redis_srv else broker}")
        env = {
            **os.environ,
            "PTBILL_FHIR_BASE_URL": server.base_url,
            "PTBILL_BROKER_URL": broker,
            "PTBILL_REDIS_URL": state_url,
            "PTBILL_LOG_FORMAT": "json",
            "PTBILL_CLOCK_LAG_SECONDS": "0",  # nothing else writes to the embedded server
            "PTBILL_RATE_LIMIT": os.environ.get("PTBILL_RATE_LIMIT", "1000/s"),
        }
        worker = WorkerProcess(env, tmp / "worker.log", concurrency=workers, name="ptbill-demo").start()
        say(f"[2/4] seeding a synthetic clinic: {patients} patients (seed {seed})")
        bundles = generate_clinic(patients=patients, seed=seed)
        with FhirClient(server.base_url, timeout=60) as client:
            for b in bundles:
                client.transaction(b, idempotent=True)
        seeded = clinic_summary(bundles)
        say(f"      {seeded.get('encounters', 0)} encounters, {seeded.get('procedures', 0)} procedures")
        say("[3/4] one sync through the Celery worker")
        os.environ.update(
            {
                k: env[k]
                for k in (
                    "PTBILL_FHIR_BASE_URL",
                    "PTBILL_BROKER_URL",
                    "PTBILL_REDIS_URL",
                    "PTBILL_CLOCK_LAG_SECONDS",
                )
            }
        )
        from integration.settings import Settings
        from integration.state import StateStore
        from tasks.app import app
        from tasks.cli import _wait_run
        from tasks.config import QUEUE_READ, TASK_SYNC

        settings = Settings.from_env()
        app.conf.broker_url = settings.broker_url
        state = StateStore.from_url(settings.redis_url, settings.server_key)
        run_id = uuid.uuid4().hex[:16]
        t_sync = time.perf_counter()
        app.send_task(TASK_SYNC, kwargs={"run_id": run_id}, queue=QUEUE_READ)
        info = _wait_run(state, run_id, timeout=600, progress=True)
        sync_s = time.perf_counter() - t_sync
        if info.get("status") in ("failed", "timeout"):
            say(f"sync did not finish: {info.get('status')} {info.get('reason', '')}")
            say(worker.log_tail())
            return 1
        say("[4/4] reading back what was written")
        with FhirClient(server.base_url, timeout=60) as client:
            units, mods, n_ci = _charge_summary(client)
            written = {
                t: _count(client, t) for t in ("ChargeItem", "DetectedIssue", "Task", "Flag", "Provenance")
            }
            findings: Counter[str] = Counter()
            for e in client.search_entries("DetectedIssue", [("_tag", f"{PTBILL_TAG}|ptbill")]):
                codes = ((e.get("resource") or {}).get("code") or {}).get("coding") or [{}]
                findings[codes[0].get("code", "?")] += 1
        summary: dict[str, Any] = {
            "encounters_synced": int(info.get("encounters", 0) or 0),
            "processed": int(info.get("processed", 0) or 0),
            "dead_lettered": int(info.get("dead_lettered", 0) or 0),
            "skipped_procedures": {
                k.split(":", 1)[1]: int(v) for k, v in info.items() if k.startswith("skipped:")
            },
            "written_to_fhir": written,
            "units_by_code": dict(sorted(units.items())),
            "modifiers": dict(sorted(mods.items())),
            "findings_by_code": dict(findings.most_common()),
            "sync_seconds": round(sync_s, 1),
            "wall_seconds": round(time.perf_counter() - t_start, 1),
        }
        _print_summary(summary, n_ci)
        if keep:
            say(f"embedded FHIR server still running at {server.base_url}; Ctrl-C to stop")
            while True:
                time.sleep(3600)
        return 0 if written.get("ChargeItem", 0) > 0 else 1
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        if redis_srv is not None:
            redis_srv.stop()


def _print_summary(s: dict[str, Any], n_ci: int) -> None:
    w = s["written_to_fhir"]
    print("ptbill demo summary")
    print(
        f"  encounters synced     {s['encounters_synced']} (processed {s['processed']}, "
        f"dead-lettered {s['dead_lettered']})"
    )
    print("  written to the EMR    " + ", ".join(f"{k} {v}" for k, v in w.items()))
    print(f"  billing lines         {n_ci} ChargeItems, {sum(s['units_by_code'].values())} units")
    for code, u in s["units_by_code"].items():
        print(f"    {code:<8} {u:>5} units")
    print("  modifiers             " + (", ".join(f"{k} x{v}" for k, v in s["modifiers"].items()) or "none"))
    print("  findings (DetectedIssue) by code:")
    for code, n in list(s["findings_by_code"].items())[:15]:
        print(f"    {code:<34} {n}")
    if s["skipped_procedures"]:
        print("  procedures skipped    " + ", ".join(f"{k} {v}" for k, v in s["skipped_procedures"].items()))
    print(f"  sync {s['sync_seconds']} s, demo wall time {s['wall_seconds']} s")
    print(json.dumps(s, sort_keys=True))
