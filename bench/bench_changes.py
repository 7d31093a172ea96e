"""What following EMR changes costs in requests: `python bench/bench_changes.py --patients 20`.

A real sekmet-fhir server with a synthetic clinic, synced once in-process (the runner the workers run,
``ptbill sync --inline``'s path); then, one at a time, an EMR edit and an incremental sync: nothing
changed, a Procedure deleted, a Procedure moved to another Encounter, a Coverage's payer changed. Each
line gives the run's FHIR requests (reads at the client, writes), pages and what the run re-ran, so the
cost of the change detection reads off the "nothing changed" line and the difference to it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from integration.fhir.client import FhirClient  # noqa: E402
from integration.runner import Runtime, begin_run, page_run, run_encounter  # noqa: E402
from integration.settings import Settings  # noqa: E402
from ptbill_demo.embedded import SekmetServer  # noqa: E402
from tests.integration.support import env_for, seed  # noqa: E402


def sync(rt: Runtime) -> dict[str, str]:
    run = begin_run(rt, uuid.uuid4().hex[:16], None, None, False)
    if run is None:
        raise SystemExit("another sync holds this server's lock")
    before = rt.client.stats.snapshot()["requests"]
    page_run(rt, run, lambda enc, rid: run_encounter(rt, enc, rid) and None)
    info = rt.state.run(run.run_id)
    info["all_requests"] = str(rt.client.stats.snapshot()["requests"] - before)
    return info


def line(name: str, info: dict[str, Any]) -> str:
    reruns = {k: v for k, v in info.items() if k.startswith("rerun:")}
    return (
        f"{name:<22} reads {info.get('fhir_read_requests', 0):>4}"
        f"  writes {info.get('fhir_write_requests', 0):>4}"
        f"  pages {info.get('pages', 0):>4}  dispatched {info.get('dispatched', 0):>4}"
        f"  processed {info.get('processed', 0):>4}  {reruns or ''}"
    )


def put(client: FhirClient, res: dict[str, Any]) -> None:
    entry = {"resource": res, "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}}
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/10", help="flushed first")
    args = ap.parse_args()
    redis.Redis.from_url(args.redis_url).flushdb()
    with tempfile.TemporaryDirectory(prefix="ptbill-changes-") as tmp, SekmetServer(Path(tmp)) as srv:
        seed(srv.base_url, patients=args.patients, seed_value=args.seed)
        env = env_for(srv.base_url, args.redis_url, PTBILL_CONTEXT_LOOKBACK_DAYS="400")
        rt = Runtime(Settings.from_env(env))
        client = rt.client
        first = sync(rt)
        encounters = int(first.get("dispatched", 0))
        print(
            line("first sync", first),
            f" ({int(first['fhir_read_requests']) / max(1, encounters):.3f} reads/enc)",
        )
        procs = [e["resource"] for e in client.search_entries("Procedure", [("_count", "500")])]
        covs = [e["resource"] for e in client.search_entries("Coverage", [("_count", "500")])]

        def delete() -> None:
            client._request("DELETE", f"{client.base_url}/Procedure/{procs[0]['id']}")

        def move() -> None:
            p = procs[1]
            others = [x for x in procs if x["encounter"] != p["encounter"] and x["subject"] == p["subject"]]
            p["encounter"] = others[0]["encounter"]
            put(client, p)

        def coverage() -> None:
            c = covs[0]
            c["payor"] = next(x["payor"] for x in covs if x["payor"] != c["payor"])
            put(client, c)

        steps: list[tuple[str, Callable[[], None] | None]] = [
            ("nothing changed", None),
            ("Procedure deleted", delete),
            ("Procedure moved", move),
            ("Coverage changed", coverage),
            ("nothing changed", None),
        ]
        for name, change in steps:
            if change is not None:
                change()
            print(line(name, sync(rt)))
        rt.client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
