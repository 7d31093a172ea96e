"""The I/O floor: replay the exact HTTP requests ptbill made, with a minimal client, and time them.

    python bench/io_floor.py --base http://127.0.0.1:8101 --records requests.jsonl --phase first --threads 2

``records`` is the JSON-lines file written by bench/proxy.py while ptbill synced (method, path with query,
replayable headers, POST body). The floor makes the SAME requests -- the same paging GETs (same queries,
same offsets), the same context batches, the same transaction bodies -- in the order the server first saw
them, from ``threads`` plain ``requests.Session``s pulling from one queue (to match 2 worker processes),
against a freshly seeded identical server. It reads each response body and does nothing else: no JSON
parsing, no deciding, no Redis, no Celery. The wall time is what the I/O alone costs.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests


def load_records(path: str, phases: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("phase") in phases:
                out.append(r)
    out.sort(key=lambda r: r["seq"])
    return out


@dataclass
class FloorResult:
    wall: float = 0.0
    requests: int = 0
    by_cat: Counter[str] = field(default_factory=Counter)
    status_mismatch: int = 0  # replayed status differs from what ptbill got (2xx vs not)
    errors: list[str] = field(default_factory=list)


def replay(root_url: str, records: list[dict[str, Any]], threads: int = 2) -> FloorResult:
    """Replay ``records`` against ``root_url`` (scheme://host:port; paths carry the /fhir base)."""
    q: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    for r in records:
        q.put(r)
    for _ in range(threads):
        q.put(None)
    res = FloorResult()
    lock = threading.Lock()

    def work() -> None:
        with requests.Session() as s:
            while True:
                r = q.get()
                if r is None:
                    return
                try:
                    resp = s.request(
                        r["method"],
                        root_url + r["path"],
                        data=r["body"].encode() if r.get("body") else None,
                        headers=r.get("headers") or {},
                        timeout=300,
                    )
                    _ = resp.content
                    bad = (resp.status_code < 400) != (int(r.get("status", 200)) < 400)
                    with lock:
                        res.requests += 1
                        res.by_cat[r["cat"]] += 1
                        res.status_mismatch += int(bad)
                except requests.RequestException as e:
                    with lock:
                        res.errors.append(type(e).__name__)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, name=f"floor-{i}") for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    res.wall = time.perf_counter() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--base", required=True, help="root URL of the server (or its proxy), without /fhir")
    ap.add_argument("--records", required=True)
    ap.add_argument("--phase", action="append", default=None, help="phase(s) to replay (default: first)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    recs = load_records(args.records, tuple(args.phase or ["first"]))
    res = replay(args.base.rstrip("/"), recs, args.threads)
    print(
        f"floor: {res.requests} requests in {res.wall:.2f}s with {args.threads} threads "
        f"({dict(res.by_cat)}); status mismatches {res.status_mismatch}, errors {len(res.errors)}"
    )


if __name__ == "__main__":
    main()
