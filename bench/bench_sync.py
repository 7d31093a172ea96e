"""End-to-end sync benchmark with real processes: `python bench/bench_sync.py --procedures 2000 --workers 2`.

One run of the script does all of this and prints the figures, then a summary against the targets:

 1. CPU per Procedure of the pure pipeline on the same generated clinic (bench_cpu.measure, one pass);
 2. a real sekmet-fhir server (A) behind a counting reverse proxy (bench/proxy.py, its own process),
    seeded with a synthetic clinic of about ``--procedures`` Procedures (seeding is not measured);
    A is then stopped and its data directory copied, so server B starts later from identical data;
 3. a real Celery worker (``--workers`` = its concurrency) on Redis (``--redis-url``, flushed first);
    one sync through it (``ptbill.sync.run`` via send_task with a run id, waiting for the run record):
    wall time, Procedures/s, encounters/s, HTTP requests per encounter counted at the proxy (by kind)
    and from the run counters, worker CPU and RSS (idle, after ~1,000 Procedures, after all);
 4. an unchanged re-sync (empty window) and a backfill of the same window: requests and writes;
 5. the I/O floor (bench/io_floor.py): the first sync's exact requests replayed against server B
    through its own proxy with ``--workers`` plain requests Sessions; ratio ptbill / floor.

Both ptbill and the floor go through a proxy of the same kind, so its cost is on both sides.
The machine's other load is printed (load average); 2 shared cores make wall times noisy.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis  # noqa: E402
import requests  # noqa: E402
from bench_cpu import clinic_for, count_procedures  # noqa: E402
from bench_cpu import measure as cpu_measure  # noqa: E402
from bench_cpu import report as cpu_report  # noqa: E402
from celery import Celery  # noqa: E402
from io_floor import load_records, replay  # noqa: E402

from integration.fhir.client import FhirClient  # noqa: E402
from ptbill_demo.embedded import SekmetServer, WorkerProcess, free_port  # noqa: E402
from tests.integration.support import send_sync, state_for  # noqa: E402

print = functools.partial(print, flush=True)  # progressive output
TICK = os.sysconf("SC_CLK_TCK")
PAGE_CATS = ("page", "probe", "metadata")


# what the integration tests used to force on every worker, kept here as the "tuned" comparison
TUNED = {"PTBILL_RATE_LIMIT": "1000/s"}


def bench_env(server_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The shipped defaults: only the server, broker and state URLs (and no clock lag: nothing else
    writes to the benchmark's server). No PTBILL_* value of the calling shell leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTBILL_")}
    env.update(
        {
            "PTBILL_FHIR_BASE_URL": server_url,
            "PTBILL_BROKER_URL": redis_url,
            "PTBILL_REDIS_URL": redis_url,
            "PTBILL_CLOCK_LAG_SECONDS": "0",
            "PTBILL_METRICS_PORT": "0",
            **extra,
        }
    )
    return env


# --- /proc helpers -----------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parent[int(d)] = int(fields[1])
            except OSError:
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def rss_mb(pid: int) -> tuple[float, float, int]:
    """(sum VmRSS, sum Pss) in MB over the process tree, number of processes."""
    rss = pss = 0
    pids = tree(pid)
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024, len(pids)


def cpu_s(pid: int) -> float:
    """utime+stime (s) of the process tree (live processes; pool children live as long as the worker)."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / TICK


# --- processes --------------------------------------------------------------------------------


class Proxy:
    def __init__(self, upstream_root: str, record: Path, log: Path):
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        with open(log, "ab") as lf:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "proxy.py"), "--port", str(self.port),
                 "--upstream", upstream_root, "--record", str(record)],
                stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.root}/__proxy/stats", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.05)  # readiness polling with a deadline
        raise RuntimeError("proxy did not start")

    def phase(self, name: str) -> None:
        requests.get(f"{self.root}/__proxy/phase", params={"name": name}, timeout=5).raise_for_status()

    def stats(self, name: str) -> dict[str, Any]:
        r = requests.get(f"{self.root}/__proxy/stats", params={"phase": name}, timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def sekmet(tmp: Path, port: int | None, public_base: str) -> SekmetServer:
    return SekmetServer(tmp, port=port, extra_settings={"base_url": public_base}, startup_timeout=90).start()


def wait_ping(env: dict[str, str], w: WorkerProcess, timeout: float = 90) -> None:
    app = Celery(broker=env["PTBILL_BROKER_URL"])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not w.alive():
                raise RuntimeError(f"worker died:\n{w.log_tail()}")
            if app.control.ping(timeout=0.5):
                return
        raise RuntimeError(f"worker did not answer ping:\n{w.log_tail()}")
    finally:
        app.close()


def run_sync(
    env: dict[str, str], worker_pid: int, timeout: float, sample_at: int | None = None,
    procs_per_encounter: float = 0.0, **kw: Any,
) -> dict[str, Any]:  # fmt: skip
    """Send one sync, wait for its run record to be final; wall time, RSS samples, worker CPU."""
    state = state_for(env)
    run_id = uuid.uuid4().hex[:16]
    cpu0 = cpu_s(worker_pid)
    peak = 0.0
    sample: tuple[float, float, int] | None = None
    t0 = time.perf_counter()
    send_sync(env, run_id, **kw)
    deadline = time.monotonic() + timeout
    while True:
        if state.r.exists(f"{state.p}:run:{run_id}:final"):
            break
        last = state.last()
        if last.get("status") == "failed" and last.get("run_id") == run_id:
            raise RuntimeError(f"sync run failed: {last.get('reason')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"sync run {run_id} did not finish in {timeout:.0f}s: {state.run(run_id)}")
        if sample_at is not None and sample is None:
            done = int(state.r.hget(f"{state.p}:run:{run_id}", "encounters") or 0)
            if done * procs_per_encounter >= sample_at:
                sample = (*rss_mb(worker_pid)[:2], done)
        peak = max(peak, rss_mb(worker_pid)[0])
        time.sleep(0.1)  # polling the run record with a deadline
    wall = time.perf_counter() - t0
    info = state.run(run_id)
    return {"run_id": run_id, "wall": wall, "info": info, "cpu": cpu_s(worker_pid) - cpu0, "sample": sample,
            "peak_rss": peak}  # fmt: skip


def print_rerun(label: str, run: dict[str, Any], st: dict[str, Any]) -> None:
    info = run["info"]
    print(f"\n== {label} ==")
    print(
        f"wall {run['wall']:.2f}s  encounters {info.get('encounters', 0)} (processed "
        f"{info.get('processed', 0)}, unchanged {info.get('unchanged', 0)})  requests {st['requests']} "
        f"{dict(st['by_cat'])}"
    )
    print(
        f"writes (transactions) {st['by_cat'].get('transaction', 0)}  fhir_write_requests "
        f"{info.get('fhir_write_requests', 0)}  worker CPU {run['cpu']:.2f}s"
    )


# --- main ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--procedures", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2, help="Celery worker concurrency (and floor threads)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, records)")
    ap.add_argument("--skip-cpu", action="store_true", help="skip the in-process CPU measurement")
    ap.add_argument(
        "--soak-backfills",
        type=int,
        default=0,
        help="extra backfills after the run, printing worker RSS after each",
    )
    args = ap.parse_args()

    # a SIGTERM (e.g. from `timeout`) unwinds through the finally below, which stops every process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="ptbill-bench-"))
    print(f"tmp dir: {tmp}   load average: {os.getloadavg()}   cores: {os.cpu_count()}")

    bundles = clinic_for(args.procedures, args.seed)
    total, fin_procs, fin_encs = count_procedures(bundles)
    print(
        f"clinic: {len(bundles) - 1} patients, {total} Procedures, {fin_procs} of them in "
        f"{fin_encs} finished encounters (the ones ptbill decides)"
    )
    cpu_best: float | None = None
    cpu_val: float | None = None
    if not args.skip_cpu:
        print("\n== CPU, pure pipeline, this process, one pass (cold caches) ==")
        res = cpu_measure(bundles, passes=1)
        cpu_best = cpu_report(res)
        cpu_val = res[0].ms_per_procedure("parse", "decide", "build", "validate")

    procs: list[Any] = []
    try:
        # server A behind proxy A; seed; stop; copy data for B; restart A
        port_a = free_port()
        rec_a = tmp / "requests-a.jsonl"
        dir_a = tmp / "fhir-a"
        proxy_a = Proxy(f"http://127.0.0.1:{port_a}", rec_a, tmp / "proxy-a.log")
        procs.append(proxy_a)
        srv_a = sekmet(dir_a, port_a, f"{proxy_a.root}/fhir")
        procs.append(srv_a)
        base_a = f"{proxy_a.root}/fhir"
        proxy_a.phase("seed")
        t0 = time.perf_counter()
        with FhirClient(base_a, timeout=120) as c:
            for b in bundles:
                c.transaction(b, idempotent=True)
        print(f"\nseeded server A in {time.perf_counter() - t0:.1f}s (not measured)")
        srv_a.stop()
        shutil.copytree(dir_a / "data", tmp / "fhir-b" / "data")
        shutil.copytree(dir_a / "data", tmp / "fhir-c" / "data")  # for the tuned comparison
        srv_a = sekmet(dir_a, port_a, base_a)
        procs.append(srv_a)

        env = bench_env(base_a, args.redis_url)  # the shipped defaults
        worker = WorkerProcess(env, tmp / "worker.log", concurrency=args.workers)
        worker.start()
        procs.append(worker)
        wait_ping(env, worker)
        if worker.process is None:
            raise RuntimeError("worker not started")
        wpid = worker.process.pid
        time.sleep(1.0)  # let the pool settle before the idle RSS reading (a measurement, not sync)
        rss0, pss0, nproc = rss_mb(wpid)
        sk_pid = srv_a.process.pid if srv_a.process else 0
        sk_cpu0, px_cpu0 = cpu_s(sk_pid), cpu_s(proxy_a.proc.pid)
        print(f"worker: {nproc} processes, idle RSS {rss0:.1f} MB (PSS {pss0:.1f} MB)")

        timeout = max(300.0, fin_encs * 0.5)
        ppe = fin_procs / max(1, fin_encs)
        proxy_a.phase("first")
        first = run_sync(env, wpid, timeout, sample_at=1000, procs_per_encounter=ppe)
        rss1, pss1, _ = rss_mb(wpid)
        sk_cpu, px_cpu = cpu_s(sk_pid) - sk_cpu0, cpu_s(proxy_a.proc.pid) - px_cpu0
        s1 = proxy_a.stats("first")
        info1 = first["info"]
        encs = int(info1.get("encounters", 0))
        wall1 = first["wall"]
        cats1 = s1["by_cat"]
        paging1 = sum(cats1.get(c, 0) for c in PAGE_CATS)
        beyond1 = s1["requests"] - paging1
        writes1 = cats1.get("transaction", 0)
        print(f"\n== first sync ({args.workers} worker processes, shipped defaults) ==")
        print(
            f"wall {wall1:.2f}s  encounters {encs} (processed {info1.get('processed', 0)}, "
            f"dead-lettered {info1.get('dead_lettered', 0)})  Procedures {fin_procs}"
        )
        print(f"throughput: {fin_procs / wall1:,.1f} Procedures/s, {encs / wall1:,.1f} encounters/s")
        print(f"paging (in the sync task): {info1.get('paging_ms')} ms, pages {info1.get('pages')}")
        print(f"HTTP requests at the proxy: {s1['requests']} ({s1['errors']} errors), by kind:")
        for c, n in sorted(cats1.items()):
            print(
                f"  {c:<15} {n:6d}  {n / max(1, encs):6.3f}/encounter  "
                f"server+proxy time {s1['ms_by_cat'][c] / 1000:8.2f}s"
            )
        print(
            f"  paging/probe reads {paging1} ({paging1 / max(1, encs):.3f}/enc), beyond paging {beyond1} "
            f"({beyond1 / max(1, encs):.3f}/enc), of which writes {writes1} "
            f"({writes1 / max(1, encs):.3f}/enc)"
        )
        print(
            f"run counters: fhir_read_requests {info1.get('fhir_read_requests')} + fhir_write_requests "
            f"{info1.get('fhir_write_requests')} = "
            f"{int(info1.get('fhir_read_requests', 0)) + int(info1.get('fhir_write_requests', 0))} "
            f"(the proxy also sees begin_run's probes: {cats1.get('probe', 0)} probe requests)"
        )
        print(
            f"CPU during the first sync: worker {first['cpu']:.2f}s = "
            f"{1000 * first['cpu'] / max(1, fin_procs):.3f} ms/Procedure end to end "
            f"({1000 * first['cpu'] / max(1, encs):.2f} ms/encounter); "
            f"sekmet {sk_cpu:.2f}s; proxy {px_cpu:.2f}s"
        )
        smp = first["sample"]
        print(
            f"worker RSS (sum over {nproc} processes; PSS in brackets): idle {rss0:.1f} MB [{pss0:.1f}]"
            + (
                f", after ~{smp[2] * ppe:.0f} Procedures ({smp[2]} enc) {smp[0]:.1f} MB [{smp[1]:.1f}]"
                if smp
                else ", (sync finished before ~1,000 Procedures could be sampled)"
            )
            + f", after all {rss1:.1f} MB [{pss1:.1f}], peak during the sync {first['peak_rss']:.1f} MB"
        )

        proxy_a.phase("resync")
        second = run_sync(env, wpid, timeout)
        s2 = proxy_a.stats("resync")
        print_rerun("unchanged re-sync", second, s2)

        proxy_a.phase("backfill")
        third = run_sync(
            env, wpid, timeout, since="1970-01-01T00:00:00Z", until=info1["until"], backfill=True
        )
        s3 = proxy_a.stats("backfill")
        print_rerun("backfill of the same window", third, s3)

        rss3, pss3, _ = rss_mb(wpid)
        print(f"worker RSS after re-sync+backfill {rss3:.1f} MB [{pss3:.1f}]")
        # soak: every extra backfill re-decides every Procedure of the window in the worker (no writes),
        # so N backfills of a 2,000-Procedure clinic put N x 2,000 Procedures through it
        decided = fin_procs * 2  # the first sync and the backfill above
        for i in range(args.soak_backfills):
            run_sync(env, wpid, timeout, since="1970-01-01T00:00:00Z", until=info1["until"], backfill=True)
            decided += fin_procs
            rss_i, pss_i, _ = rss_mb(wpid)
            print(
                f"soak backfill {i + 1}: {decided} Procedures decided by the worker, "
                f"RSS {rss_i:.1f} MB [{pss_i:.1f}]"
            )
        worker.stop()
        srv_a.stop()
        proxy_a.stop()

        # the floor: server B (identical data) behind proxy B, replay the first sync's requests
        port_b = free_port()
        proxy_b = Proxy(f"http://127.0.0.1:{port_b}", tmp / "requests-b.jsonl", tmp / "proxy-b.log")
        procs.append(proxy_b)
        srv_b = sekmet(tmp / "fhir-b", port_b, f"{proxy_b.root}/fhir")
        procs.append(srv_b)
        proxy_b.phase("floor")
        recs = load_records(str(rec_a), ("first",))
        floor = replay(proxy_b.root, recs, threads=args.workers)
        sb = proxy_b.stats("floor")
        ratio = wall1 / floor.wall if floor.wall else float("inf")
        print(f"\n== I/O floor (bench/io_floor.py, {args.workers} threads, same {len(recs)} requests) ==")
        print(
            f"floor wall {floor.wall:.2f}s  requests {floor.requests} {dict(floor.by_cat)}  "
            f"status mismatches {floor.status_mismatch}  errors {len(floor.errors)}  "
            f"proxy errors {sb['errors']}"
        )
        print(f"ratio ptbill / floor = {wall1:.2f} / {floor.wall:.2f} = {ratio:.2f}")
        srv_b.stop()
        proxy_b.stop()

        # the tuned figure beside it: server C (identical data), a fresh worker with TUNED
        port_c = free_port()
        proxy_c = Proxy(f"http://127.0.0.1:{port_c}", tmp / "requests-c.jsonl", tmp / "proxy-c.log")
        procs.append(proxy_c)
        srv_c = sekmet(tmp / "fhir-c", port_c, f"{proxy_c.root}/fhir")
        procs.append(srv_c)
        env_c = bench_env(f"{proxy_c.root}/fhir", args.redis_url, **TUNED)
        worker_c = WorkerProcess(env_c, tmp / "worker-c.log", concurrency=args.workers)
        worker_c.start()
        procs.append(worker_c)
        wait_ping(env_c, worker_c)
        if worker_c.process is None:
            raise RuntimeError("worker not started")
        proxy_c.phase("first")
        tuned = run_sync(env_c, worker_c.process.pid, timeout)
        wall_t = tuned["wall"]
        tuned_txt = " ".join(f"{k}={v}" for k, v in TUNED.items())
        print(f"\n== first sync, tuned ({tuned_txt}), server C with identical data ==")
        print(
            f"wall {wall_t:.2f}s  encounters {tuned['info'].get('encounters', 0)}  "
            f"({fin_procs / wall_t:,.1f} Procedures/s); shipped defaults: {wall1:.2f}s"
        )
        worker_c.stop()

    finally:
        for p in reversed(procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                print(f"stop failed: {type(e).__name__}: {e}", file=sys.stderr)

    rss_grow = rss3 - rss0

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    w2 = s2["by_cat"].get("transaction", 0)
    w3 = s3["by_cat"].get("transaction", 0)
    print(f"\n== summary: {fin_procs} Procedures / {encs} encounters, {args.workers} workers ==")
    print(
        f"  wall time first sync           {wall1:8.2f} s   ({fin_procs / wall1:,.1f} Procedures/s) with the "
        f"shipped defaults; tuned ({tuned_txt}) {wall_t:.2f} s ({fin_procs / wall_t:,.1f} Procedures/s)"
    )
    print(f"  ratio ptbill/floor <= 1.25     {ratio:8.2f}     {verdict(ratio <= 1.25)}")
    if cpu_best is not None and cpu_val is not None:
        print(
            f"  CPU <= 1 ms/Procedure          {cpu_best:8.3f} ms  {verdict(cpu_best <= 1.0)}"
            f"  (with R4B validation {cpu_val:.3f} ms: {verdict(cpu_val <= 1.0)}; worker end to end "
            f"{1000 * first['cpu'] / max(1, fin_procs):.3f} ms)"
        )
    rpe = beyond1 / max(1, encs)
    print(f"  requests/enc beyond paging<=1.2 {rpe:8.3f}     {verdict(rpe <= 1.2)}")
    print(
        f"  writes on unchanged re-sync = 0 {w2:8d}     {verdict(w2 == 0)}"
        f"   (backfill of the same window: {w3} writes: {verdict(w3 == 0)})"
    )
    print(
        f"  RSS growth <= 50 MB            {rss1 - rss0:8.1f} MB  {verdict(rss1 - rss0 <= 50)}"
        f"  (idle -> after the first sync; after re-sync+backfill: {rss_grow:.1f} MB: "
        f"{verdict(rss_grow <= 50)})"
    )
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
