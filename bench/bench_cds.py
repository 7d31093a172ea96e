"""CDS Hooks latency: `python bench/bench_cds.py [--calls 2000] [--concurrency 20] [--procedures 10]`.

1. a real sekmet-fhir server seeded with a synthetic clinic; one finished encounter is given exactly
   ``--procedures`` Procedures (copies of the clinic's own, on the server);
2. the EHR's side, not measured: its prefetch for that encounter, made by running ptbill's discovery
   templates against the server; one signed RS384 JWT per call (a stand-in EHR with its own JWKS);
3. one `ptbill serve` process (one uvicorn worker, the shipped defaults; the JWT replay store on
   ``--redis-url``), called ``--calls`` times with ``encounter-discharge`` + prefetch by ``--concurrency``
   concurrent clients (HTTP/1.1 keep-alive), after ``--warmup`` calls.

Prints the latency percentiles seen by the clients (target p95 <= 150 ms, p99 <= 300 ms), throughput,
cards per call and the server's own handling time (from its /metrics histogram).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from integration.cds.prefetch import DISCHARGE_PREFETCH  # noqa: E402
from integration.fhir.client import FhirClient  # noqa: E402
from ptbill_demo.embedded import SekmetServer, free_port  # noqa: E402
from tests.integration.serve_support import FakeEhr, ServeProcess, hook_request, run_prefetch  # noqa: E402
from tests.integration.support import seed  # noqa: E402

print = functools.partial(print, flush=True)
SERVICE = "ptbill-encounter-discharge"


def encounter_with(client: FhirClient, n: int) -> dict[str, Any]:
    """A finished encounter with exactly ``n`` Procedures (adds copies of other encounters' Procedures)."""
    encounters = [
        e["resource"] for e in client.search_entries("Encounter", [("status", "finished"), ("_count", "500")])
    ]
    pool = [
        p["resource"]
        for p in client.search_entries("Procedure", [("status", "completed"), ("_count", "500")])
        if (p["resource"].get("performedPeriod") or {}).get("end")
    ]
    enc = encounters[0]
    mine = [
        p["resource"] for p in client.search_entries("Procedure", [("encounter", f"Encounter/{enc['id']}")])
    ]
    entries = []
    for i, src in enumerate(pool):
        if len(mine) + len(entries) >= n:
            break
        if (src.get("encounter") or {}).get("reference") == f"Encounter/{enc['id']}":
            continue
        copy = {k: v for k, v in src.items() if k not in ("meta", "id", "identifier")}
        copy["id"] = f"bench-{i}-{uuid.uuid4().hex[:8]}"
        copy["encounter"] = {"reference": f"Encounter/{enc['id']}"}
        copy["subject"] = enc["subject"]
        entries.append({"resource": copy, "request": {"method": "PUT", "url": f"Procedure/{copy['id']}"}})
    if entries:
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if len(mine) > n:  # not expected with the synthetic clinic
        raise SystemExit(f"encounter already has {len(mine)} > {n} Procedures")
    return enc


class Connection:
    """A minimal HTTP/1.1 keep-alive client (asyncio streams): the load generator runs on the same two
    cores as the server, so it must cost little CPU (httpx costs ~4 ms per call here)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None  # noqa: S101 - set just above
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def run_calls(
    url: str, bodies: list[bytes], tokens: list[str], concurrency: int
) -> tuple[list[float], list[int], float]:
    parts = urllib.parse.urlsplit(url)
    latencies: list[float] = []
    cards: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)

    async def worker() -> None:
        conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                status, body = await conn.post(
                    parts.path,
                    bodies[i],
                    {"Authorization": f"Bearer {tokens[i]}", "Content-Type": "application/json"},
                )
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    raise SystemExit(f"call failed: HTTP {status} {body[:300]!r}")
                cards.append(body.count(b'"uuid"'))
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, cards, time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (from /proc), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def server_histogram(metrics: str) -> dict[str, float]:
    route = 'route="/cds-services/{service_id}"'
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith("ptbill_http_request_duration_seconds_bucket") and route in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("ptbill_http_request_duration_seconds_sum") and route in line:
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("ptbill_http_request_duration_seconds_count") and route in line:
            count = float(line.rsplit(" ", 1)[1])
    out = {"mean_ms": 1000 * total / count if count else 0.0}
    for p in (50, 95, 99):
        need = count * p / 100
        out[f"p{p}_le_ms"] = next((1000 * le for le, c in sorted(buckets) if c >= need), float("inf"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--procedures", type=int, default=10)
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="server restarts, each measured (median reported)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ptbill-bench-cds-"))
    with SekmetServer(tmp / "fhir") as fhir, FakeEhr() as ehr:
        seed(fhir.base_url, patients=a.patients, seed_value=5)
        with FhirClient(fhir.base_url, timeout=60) as client:
            enc = encounter_with(client, a.procedures)
        ctx = {"patientId": enc["subject"]["reference"].split("/")[-1], "encounterId": enc["id"]}
        prefetch = run_prefetch(fhir.base_url, dict(DISCHARGE_PREFETCH), ctx)
        n_procs = sum(
            1
            for e in (prefetch["procedures"] or {}).get("entry", [])
            if e["resource"]["resourceType"] == "Procedure"
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}/cds-services/{SERVICE}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PTBILL_")},
            "PTBILL_FHIR_BASE_URL": fhir.base_url,
            "PTBILL_REDIS_URL": a.redis_url,
            "PTBILL_BROKER_URL": a.redis_url,
            "PTBILL_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PTBILL_CDS_CLIENTS": ehr.clients_env(),
        }
        total = a.warmup + a.calls
        bodies = []
        for _ in range(total):
            bodies.append(
                httpx.Request(
                    "POST", url, json=hook_request("encounter-discharge", ctx, prefetch=prefetch)
                ).content
            )
        print(
            f"prefetch: {len(bodies[0]) / 1024:.0f} KiB per call, {n_procs} Procedures; "
            f"signing {total} JWTs ..."
        )
        tokens = [ehr.token(url) for _ in range(total)]
        rounds: list[tuple[float, float]] = []
        for rnd in range(1, a.rounds + 1):
            with ServeProcess(env, tmp / f"serve-{rnd}.log", port=port) as srv:
                if srv.process is None:
                    raise SystemExit("ptbill serve did not start")
                asyncio.run(run_calls(url, bodies[: a.warmup], tokens[: a.warmup], a.concurrency))
                cpu0, mine0 = cpu_seconds(srv.process.pid), time.process_time()
                lat, cards, wall = asyncio.run(
                    run_calls(url, bodies[a.warmup :], tokens[a.warmup :], a.concurrency)
                )
                server_cpu = (cpu_seconds(srv.process.pid) - cpu0) / a.calls * 1000
                client_cpu = (time.process_time() - mine0) / a.calls * 1000
                hist = server_histogram(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)
            tokens = [ehr.token(url) for _ in range(total)]  # fresh jti for the next round
            ms = [x * 1000 for x in lat]
            rounds.append((pct(ms, 95), pct(ms, 99)))
            print(
                f"\nround {rnd}: encounter-discharge with prefetch, {n_procs} Procedures, "
                f"{a.concurrency} concurrent clients, {len(ms)} calls, one ptbill serve process (defaults)"
            )
            print(
                f"  client latency ms: p50 {pct(ms, 50):.1f}  p95 {pct(ms, 95):.1f}  p99 {pct(ms, 99):.1f}  "
                f"max {max(ms):.1f}  mean {statistics.mean(ms):.1f}"
            )
            print(f"  throughput {len(ms) / wall:.0f} calls/s; {statistics.mean(cards):.1f} cards per call")
            print(
                f"  CPU per call: server {server_cpu:.2f} ms, this client {client_cpu:.2f} ms "
                f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, shared)"
            )
            print(
                f"  server handling (histogram): mean {hist['mean_ms']:.1f} ms, "
                f"p95 <= {hist['p95_le_ms']:.0f} ms, p99 <= {hist['p99_le_ms']:.0f} ms"
            )
        p95 = statistics.median(r[0] for r in rounds)
        p99 = statistics.median(r[1] for r in rounds)
        ok = p95 <= 150 and p99 <= 300
        print(f"\nmedian of {len(rounds)} rounds: p95 {p95:.1f} ms, p99 {p99:.1f} ms")
        print(f"target p95 <= 150 ms and p99 <= 300 ms: {'MET' if ok else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
