"""What the shipped defaults cost end to end: `python bench/bench_defaults.py --patients 20 --redis-url redis://127.0.0.1:6379/5`.

The same synthetic clinic (``--patients``, seed 0: 20 patients are ~145 finished encounters) is synced
once per configuration through a real sekmet-fhir server, a real Celery worker (``--workers`` = its
concurrency) and a real Redis broker (``--redis-url``, FLUSHED first: give it a database of its own):

  shipped defaults         nothing set but the server, broker and state URLs
  old default 20/s         PTBILL_RATE_LIMIT=20/s (the per-process Celery limit shipped before)
  budget 50/s              PTBILL_FHIR_REQUEST_BUDGET=50/s (one budget for every process, via Redis)

and prints wall time, encounters/s and the FHIR requests/s the worker sent (run counters) for each.
Every server is seeded the same way before its clock starts (seeding is not measured).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import Celery  # noqa: E402

from integration.fhir.client import FhirClient  # noqa: E402
from integration.settings import Settings  # noqa: E402
from integration.state import StateStore  # noqa: E402
from ptbill_demo.embedded import SekmetServer, WorkerProcess  # noqa: E402
from ptbill_demo.synth import generate_clinic  # noqa: E402

CONFIGS = {
    "shipped defaults": {},
    "old default 20/s": {"PTBILL_RATE_LIMIT": "20/s"},
    "budget 50/s": {"PTBILL_FHIR_REQUEST_BUDGET": "50/s"},
}


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def run_one(name: str, extra: dict[str, str], args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    redis.Redis.from_url(args.redis_url).flushdb()
    with SekmetServer(tmp / name.replace(" ", "-").replace("/", "")) as srv:
        with FhirClient(srv.base_url, timeout=60) as c:
            for b in generate_clinic(patients=args.patients, seed=0):
                c.transaction(b, idempotent=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PTBILL_")}
        env.update(
            {
                "PTBILL_FHIR_BASE_URL": srv.base_url,
                "PTBILL_BROKER_URL": args.redis_url,
                "PTBILL_REDIS_URL": args.redis_url,
                "PTBILL_CLOCK_LAG_SECONDS": "0",  # nothing else writes to this server
                **extra,
            }
        )
        worker = WorkerProcess(env, tmp / f"{name[:8]}.log", concurrency=args.workers).start()
        app = Celery(broker=args.redis_url)
        try:
            wait(lambda: worker.alive() and app.control.ping(timeout=0.5), 120, "the worker")
            s = Settings.from_env(env)
            state = StateStore.from_url(s.redis_url, s.server_key)
            run_id = uuid.uuid4().hex[:16]
            t0 = time.perf_counter()
            app.send_task("ptbill.sync.run", kwargs={"run_id": run_id}, queue="fhir_read")
            wait(lambda: state.r.exists(f"{state.p}:run:{run_id}:final"), 900, f"the {name} run")
            wall = time.perf_counter() - t0
            info = state.run(run_id)
        finally:
            app.close()
            worker.stop()
    encounters = int(info.get("dispatched", 0) or 0)
    requests = int(info.get("fhir_read_requests", 0) or 0) + int(info.get("fhir_write_requests", 0) or 0)
    return {"encounters": encounters, "wall": wall, "requests": requests}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=20, help="clinic size (20 -> ~145 encounters)")
    ap.add_argument("--workers", type=int, default=2, help="Celery worker concurrency (default 2)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10", help="broker and state (FLUSHED)")
    ap.add_argument("--only", choices=sorted(CONFIGS), action="append", help="run only these configurations")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 shared cores make wall times noisy)")
    with tempfile.TemporaryDirectory(prefix="ptbill-bench-defaults-") as d:
        for name, extra in CONFIGS.items():
            if args.only and name not in args.only:
                continue
            r = run_one(name, extra, args, Path(d))
            print(
                f"{name:<18} {r['encounters']:>4} encounters  {r['wall']:6.1f} s  "
                f"{r['encounters'] / r['wall']:6.1f} enc/s  {r['requests'] / r['wall']:6.1f} FHIR req/s "
                f"({r['requests']} requests; settings: {extra or 'none'})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
