"""Push latency: `python bench/bench_push.py [--edits 40] [--patients 10] [--redis-url URL]`.

Real processes, the shipped defaults (debounce, rate limit, retries, clock lag), nothing else running:

1. sekmet-fhir with rest-hook Subscriptions (``subscriptions.notify_method: put-resource``), seeded with a
   synthetic clinic; Redis (``--redis-url``, flushed first) as broker and state store;
2. one real Celery worker (``-c 2``, all queues), one `ptbill serve`, `ptbill subscribe` (the default
   ``Procedure? Encounter?`` Subscriptions);
3. ``--edits`` edits, one at a time, each of a timed Procedure of a finished encounter (its documented end
   moved by 15 minutes, alternately later and back, so every edit changes the suggestions); after each, the
   encounter's Provenance is polled until ptbill's write shows.

Prints, per edit: notification received (the service's request log) -> suggestions written (the server's
``meta.lastUpdated`` of the Provenance of that write), and edit sent -> written; p50, p95, max. Target:
p95 <= 3 s from notification received to suggestions written.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from integration.fhir.client import FhirClient  # noqa: E402
from integration.fhir.writeback import ENCOUNTER_TAG  # noqa: E402
from ptbill_demo.embedded import WorkerProcess, free_port  # noqa: E402
from tests.integration.serve_support import ServeProcess, notifying_sekmet  # noqa: E402
from tests.integration.support import ptbill, seed, wait_for  # noqa: E402

print = functools.partial(print, flush=True)


def instant(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def targets(client: FhirClient, n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(encounter, one timed Procedure) for up to ``n`` finished encounters."""
    out = []
    for e in client.search_entries("Encounter", [("status", "finished"), ("_count", "500")]):
        enc = e["resource"]
        procs = [
            p["resource"]
            for p in client.search_entries("Procedure", [("encounter", f"Encounter/{enc['id']}")])
            if p["resource"].get("status") == "completed"
            and (p["resource"].get("performedPeriod") or {}).get("end")
        ]
        if procs:
            out.append((enc, procs[0]))
        if len(out) >= n:
            break
    return out


def shifted(proc: dict[str, Any], minutes: int) -> dict[str, Any]:
    period = dict(proc["performedPeriod"])
    period["end"] = (datetime.fromisoformat(period["end"]) + timedelta(minutes=minutes)).isoformat()
    return {k: v for k, v in {**proc, "performedPeriod": period}.items() if k != "meta"}


def put(client: FhirClient, resource: dict[str, Any]) -> None:
    client.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": resource, "request": {"method": "PUT", "url": f"Procedure/{resource['id']}"}}
            ],
        }
    )


def prov_version(client: FhirClient, encounter_id: str) -> tuple[str, str] | None:
    """(id, lastUpdated) of the encounter's newest Provenance (ptbill creates one per change)."""
    b = client.get(
        "Provenance",
        [("_tag", f"{ENCOUNTER_TAG}|{encounter_id}"), ("_sort", "-_lastUpdated"), ("_count", "1")],
    )
    for e in b.get("entry") or []:
        return e["resource"]["id"], e["resource"]["meta"]["lastUpdated"]
    return None


def received_times(log: Path, since: float) -> list[float]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if (
            d.get("msg") == "request"
            and str(d.get("path", "")).startswith("/notify/")
            and d.get("http_status") == 200
        ):
            t = instant(d["ts"])
            if t >= since:
                out.append(t - float(d.get("duration_ms") or 0) / 1000)  # when the request arrived
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", type=int, default=40)
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one write")
    a = ap.parse_args()

    redis.Redis.from_url(a.redis_url).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="ptbill-bench-push-"))
    with notifying_sekmet(tmp / "fhir", "put-resource") as fhir:
        seed(fhir.base_url, patients=a.patients, seed_value=9)
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PTBILL_")},
            "PTBILL_FHIR_BASE_URL": fhir.base_url,
            "PTBILL_BROKER_URL": a.redis_url,
            "PTBILL_REDIS_URL": a.redis_url,
            "PTBILL_NOTIFY_SECRET": "bench-secret",
            "PTBILL_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        with WorkerProcess(env, tmp / "worker.log", concurrency=2, name="bench-push") as worker:
            from celery import Celery

            app = Celery(broker=a.redis_url)
            wait_for(lambda: worker.alive() and app.control.ping(timeout=0.5), 120, "the worker")
            app.close()
            with ServeProcess(env, tmp / "serve.log", port=port):
                r = ptbill(env, "subscribe")
                if r.returncode != 0:
                    raise SystemExit(f"ptbill subscribe failed: {r.stdout} {r.stderr[-1000:]}")
                subs = json.loads(r.stdout)["subscriptions"]
                print("subscriptions: " + ", ".join(f"{s['criteria']} {s['status']}" for s in subs))
                with FhirClient(fhir.base_url, timeout=60) as client:
                    pool = targets(client, max(1, min(a.edits, 20)))
                    print(f"{len(pool)} encounters, {a.edits} edits, one at a time")
                    t_start = time.time()
                    sent: list[float] = []
                    written: list[float] = []
                    missed = 0
                    for i in range(a.edits):
                        enc, proc = pool[i % len(pool)]
                        before = prov_version(client, enc["id"])
                        minutes = 15 if (i // len(pool)) % 2 == 0 else 0
                        t0 = time.time()
                        put(client, shifted(proc, minutes))
                        deadline = time.monotonic() + a.timeout
                        got = None
                        while time.monotonic() < deadline:
                            got = prov_version(client, enc["id"])
                            if got is not None and got != before:
                                break
                            time.sleep(0.02)
                        if got is None or got == before:
                            missed += 1
                            print(f"  edit {i + 1}: nothing written within {a.timeout:.0f} s")
                            continue
                        sent.append(t0)
                        written.append(instant(got[1]))
                    time.sleep(0.5)
                    recv = received_times(tmp / "serve.log", t_start)
        # pair each write with the last notification received before it (edits are one at a time)
        push_lat, edit_lat = [], []
        for t_sent, t_written in zip(sent, written, strict=True):
            before = [t for t in recv if t_sent - 0.5 <= t <= t_written]
            if before:
                push_lat.append(t_written - min(before))
            edit_lat.append(t_written - t_sent)
    print(f"\nnotification received -> suggestions written ({len(push_lat)} edits):")
    if push_lat:
        print(
            f"  p50 {pct(push_lat, 50):.2f} s  p95 {pct(push_lat, 95):.2f} s  max {max(push_lat):.2f} s  "
            f"mean {statistics.mean(push_lat):.2f} s"
        )
    if edit_lat:
        print(
            f"edit sent -> suggestions written: p50 {pct(edit_lat, 50):.2f} s  "
            f"p95 {pct(edit_lat, 95):.2f} s  "
            f"max {max(edit_lat):.2f} s"
        )
    print(f"edits without a write: {missed}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if push_lat:
        print(f"target p95 <= 3 s: {'MET' if pct(push_lat, 95) <= 3.0 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
