"""``ptbill demo``: the whole product on one machine with one command.

1. an embedded FHIR server (sekmet-fhir on 127.0.0.1, simulator off, temporary database);
2. an embedded Redis-protocol broker (fakeredis, in this process) -- or the Redis named by
   PTBILL_BROKER_URL when it is set;
3. a synthetic PT clinic seeded into the server;
4. one full sync through a real Celery worker process (not eager mode), with a progress bar;
5. what was written, read back from the FHIR server: tables per code (with descriptions and estimated
   amounts), therapist and payer, every finding code with its meaning, open attestations; and the same
   as an HTML report with charts (its path is printed). ``--json`` prints JSON instead of the tables;
6. real-time feedback: one encounter's CDS Hooks ``encounter-discharge`` cards, as ``ptbill serve`` would
   answer the EMR (the same decide() as the sync: ``integration.hooks.cards_for_encounter``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from integration.errors import FhirError, InputError
from integration.fhir.client import FhirClient
from integration.fhir.writeback import PTBILL_TAG
from ptbill_demo.embedded import EmbeddedRedis, SekmetServer, WorkerProcess
from ptbill_demo.synth import clinic_summary, generate_clinic


def _count(client: FhirClient, rtype: str, extra: list[tuple[str, str]] | None = None) -> int:
    b = client.get(rtype, [("_tag", f"{PTBILL_TAG}|ptbill"), ("_summary", "count"), *(extra or [])])
    t = b.get("total")
    return t if isinstance(t, int) else 0


def run_demo(
    *,
    patients: int = 50,
    seed: int = 0,
    workers: int = 2,
    keep: bool = False,
    as_json: bool = False,
    report_path: str | None = None,
) -> int:
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
        from tasks.cli import _wait_run, build_report, write_report_files
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
            written = {
                t: _count(client, t) for t in ("ChargeItem", "DetectedIssue", "Task", "Flag", "Provenance")
            }
        summary, views = build_report(settings, *_dates_of(bundles))
        html_path = Path(report_path) if report_path else tmp / "report.html"
        write_report_files(settings, summary, views, str(html_path), None)
        cds = _example_cards(settings, server.base_url, views)
        run: dict[str, Any] = {
            "encounters_synced": int(info.get("encounters", 0) or 0),
            "processed": int(info.get("processed", 0) or 0),
            "unchanged": int(info.get("unchanged", 0) or 0),
            "dead_lettered": int(info.get("dead_lettered", 0) or 0),
            "skipped_procedures": {
                k.split(":", 1)[1]: int(v) for k, v in info.items() if k.startswith("skipped:")
            },
            "written_to_fhir": written,
            "sync_seconds": round(sync_s, 1),
            "wall_seconds": round(time.perf_counter() - t_start, 1),
            "html_report": str(html_path.resolve()),
            "cds_example": cds,
        }
        if as_json:
            doc = asdict(summary)
            doc.pop("lines_detail", None)
            print(json.dumps({"run": run, "report": doc}, indent=2, sort_keys=True))
        else:
            _print_summary(run, summary)
        if keep:
            say(f"embedded FHIR server still running at {server.base_url}; Ctrl-C to stop")
            while True:
                time.sleep(3600)
        return 0 if written.get("ChargeItem", 0) > 0 and run["dead_lettered"] == 0 else 1
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        if redis_srv is not None:
            redis_srv.stop()


def _dates_of(bundles: list[dict[str, Any]]) -> tuple[date, date]:
    """The synthetic clinic's first and last date of service (the report's period)."""
    days = sorted(
        str((e.get("resource") or {}).get("period", {}).get("start", ""))[:10]
        for b in bundles
        for e in b.get("entry") or []
        if (e.get("resource") or {}).get("resourceType") == "Encounter"
    )
    days = [d for d in days if d]
    if not days:
        today = date.today()
        return today, today
    return date.fromisoformat(days[0]), date.fromisoformat(days[-1])


def _print_summary(run: dict[str, Any], summary: Any) -> None:
    from integration.review.text import render_summary, table

    w = run["written_to_fhir"]
    print("ptbill demo")
    print(
        f"  synced {run['encounters_synced']} encounter(s): {run['processed']} processed, "
        f"{run['unchanged']} unchanged, {run['dead_lettered']} dead-lettered "
        f"(sync {run['sync_seconds']} s, demo {run['wall_seconds']} s)"
    )
    print("  written to the FHIR server: " + ", ".join(f"{n} {k}" for k, n in w.items()))
    mods: Counter[str] = Counter(m for ln in summary.lines_detail for m in ln.modifiers)
    if mods:
        print("  modifiers suggested: " + ", ".join(f"{k} x{v}" for k, v in sorted(mods.items())))
    skipped = run["skipped_procedures"]
    if skipped:
        print("")
        print("PROCEDURES NOT BILLED (why)")
        rows = [[reason, str(n)] for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1])]
        print("\n".join("  " + line for line in table(["reason", "procedures"], rows, right=(1,))))
    print("")
    sys.stdout.write(render_summary(summary))
    _print_cards(run["cds_example"])
    print("")
    print(f"HTML report: {run['html_report']}")


def _example_encounter(views: list[Any]) -> Any | None:
    """The encounter that shows the most kinds of advice: billed lines, then findings and open tasks."""
    billed = [v for v in views if v.lines]
    if not billed:
        return None
    return max(billed, key=lambda v: (len(v.findings) + len(v.open_tasks), len(v.lines), v.encounter_id))


def _example_cards(settings: Any, base_url: str, views: list[Any]) -> dict[str, Any] | None:
    """One encounter's ``encounter-discharge`` cards, read from the server as the CDS service would."""
    from integration.cds.cards import card_rows
    from integration.hooks import cards_for_encounter
    from integration.runner import load_settings_tables

    view = _example_encounter(views)
    if view is None:
        return None
    try:
        with FhirClient(base_url, timeout=60) as client:
            cards = cards_for_encounter(client, view.encounter_id, load_settings_tables(settings))
    except (FhirError, InputError) as e:
        print(f"no CDS cards for Encounter/{view.encounter_id}: {type(e).__name__}", file=sys.stderr)
        return None
    return {
        "encounter": view.encounter_id,
        "date": view.date,
        "payer": view.payer,
        "cards": [
            {"indicator": indicator, "code": code, "summary": summary}
            for indicator, code, summary in card_rows(cards)
        ],
    }


def _print_cards(example: dict[str, Any] | None) -> None:
    from integration.review.text import table

    if not example:
        return
    print("")
    print("REAL-TIME FEEDBACK (CDS Hooks encounter-discharge cards, as ptbill serve answers the EMR)")
    print(
        f"  Encounter/{example['encounter']} ({example['date'] or 'no date'}, {example['payer']}): "
        f"{len(example['cards'])} card(s)"
    )
    rows = [[c["indicator"], c["code"], c["summary"]] for c in example["cards"]]
    print("\n".join("  " + line for line in table(["indicator", "topic", "card"], rows, wrap=80)))
