"""Profile one sync in this process (no Celery): `python bench/profile_sync.py [--procedures 600]`.

Starts a sekmet-fhir server, seeds a synthetic clinic, then runs the same code path as
``ptbill sync --inline`` (begin_run -> page_run with process_one/finish_ok per encounter) under cProfile,
first sync and then a backfill of the same window, and prints the top functions of each (tottime and
cumulative). The sekmet server's time shows up as waiting in socket reads. Redis: ``--redis-url``
(flushed first; default db 10).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from bench_cpu import clinic_for

from integration.fhir.client import FhirClient
from integration.runner import Runtime, begin_run, finish_ok, page_run, process_one
from integration.settings import Settings
from ptbill_demo.embedded import SekmetServer
from tests.integration.support import env_for


def one_sync(rt: Runtime, since: str | None, until: str | None, backfill: bool) -> dict[str, str]:
    def dispatch(enc: str, run_id: str) -> None:
        finish_ok(rt, run_id, enc, process_one(rt, enc, run_id))

    run = begin_run(rt, None, since, until, backfill)
    if run is None:
        raise RuntimeError("sync lock busy")
    page_run(rt, run, dispatch)
    return rt.state.run(run.run_id)


def show(prof: cProfile.Profile, n: int) -> None:
    for key in ("tottime", "cumulative"):
        s = io.StringIO()
        pstats.Stats(prof, stream=s).strip_dirs().sort_stats(key).print_stats(n)
        text = s.getvalue()
        print(text[text.index("   ncalls") :] if "   ncalls" in text else text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--procedures", type=int, default=600)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--no-profile", action="store_true", help="only print CPU per encounter, no cProfile")
    args = ap.parse_args()
    redis.Redis.from_url(args.redis_url).flushdb()
    bundles = clinic_for(args.procedures)
    with tempfile.TemporaryDirectory(prefix="ptbill-prof-") as tmp, SekmetServer(Path(tmp) / "fhir") as srv:
        with FhirClient(srv.base_url, timeout=120) as c:
            for b in bundles:
                c.transaction(b, idempotent=True)
        env = env_for(srv.base_url, args.redis_url, PTBILL_LOG_LEVEL="WARNING")
        rt = Runtime(Settings.from_env(env))
        for label, since, backfill in (
            ("first sync", None, False),
            ("backfill", "1970-01-01T00:00:00Z", True),
        ):
            prof = cProfile.Profile()
            t0, c0 = time.perf_counter(), time.process_time()
            until = None if not backfill else rt.state.watermark()
            if not args.no_profile:
                prof.enable()
            info = one_sync(rt, since, until, backfill)
            prof.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            n = int(info.get("encounters", 0))
            note = "" if args.no_profile else ", under cProfile"
            print(
                f"\n##### {label}: {n} encounters, wall {wall:.2f}s, CPU of this process {cpu:.2f}s "
                f"({1000 * cpu / max(1, n):.2f} ms/encounter{note}), processed "
                f"{info.get('processed', 0)}, unchanged {info.get('unchanged', 0)}"
            )
            if not args.no_profile:
                show(prof, args.top)


if __name__ == "__main__":
    main()
