"""CPU cost per Procedure of the pure pipeline, on one core: `python bench/bench_cpu.py [--procedures N]`.

Generated clinic (``ptbill_demo.synth.generate_clinic``) -> search-like pages of ~100 encounters (the
clinic's master data + the patients' resources, as a sync page plus its context batch would bring) ->
per page ``group_bundle`` -> per finished encounter the same steps as ``integration.sync.process_group``
without I/O:

  parse     group_bundle (per page, shared by its encounters) + extract_encounter
  decide    integration.decide.decide (classify each intervention, bill the encounter)
  build     build_outputs + digest + plan_writes (first sync: nothing exists yet, so all is written)
  validate  integration.sync.r4b_validator() over every entry of the transaction (optional stage)
  claimchk  slim + json.dumps + json.loads of the group (the claim check the worker reads from Redis)

All figures are ``time.process_time()`` (CPU of this process, one core). The target (issue 5) is
parse+decide+build <= 1 ms per Procedure. Each pass re-extracts and re-decides everything; pass 1 runs
with cold per-token caches of the classifier (as a freshly started worker would), later passes warm.

``measure(bundles, passes)`` is reused by bench_sync.py.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from integration.classify import classify
from integration.decide import decide
from integration.fhir.extract import extract_encounter, group_bundle
from integration.fhir.writeback import build_outputs, build_transaction, plan_writes
from integration.model import Intervention
from integration.pipeline import digest
from integration.sync import Group, attach_context, r4b_validator, slim
from mappings.loader import Tables, load_tables
from ptbill_demo.synth import generate_clinic

PROCS_PER_PATIENT = 18.6  # generate_clinic's average (visits 4-12, ~2.5 Procedures per visit)
PAGE_ENCOUNTERS = 100  # PTBILL_PAGE_SIZE default
CONTEXT_TYPES = ("Coverage", "Practitioner", "PractitionerRole", "Organization", "ChargeItem")
STAGES = ("parse", "decide", "build", "validate", "claimchk")


def clinic_for(procedures: int, seed: int = 0) -> list[dict[str, Any]]:
    """``generate_clinic`` with just enough patients for ``procedures`` Procedures (prefix-stable)."""
    guess = max(1, int(procedures / PROCS_PER_PATIENT * 1.15) + 2)
    while True:
        bundles = generate_clinic(patients=guess, seed=seed)
        total = 0
        for i, b in enumerate(bundles[1:], start=1):
            total += sum(1 for e in b["entry"] if e["resource"]["resourceType"] == "Procedure")
            if total >= procedures:
                return bundles[: i + 1]
        guess *= 2


def count_procedures(bundles: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(all Procedures, Procedures of finished Encounters, finished Encounters)."""
    status: dict[str, str] = {}
    procs: list[str] = []
    for b in bundles:
        for e in b["entry"]:
            r = e["resource"]
            if r["resourceType"] == "Encounter":
                status[e["fullUrl"]] = r.get("status", "")
            elif r["resourceType"] == "Procedure":
                procs.append(r["encounter"]["reference"])
    fin = sum(1 for p in procs if status.get(p) == "finished")
    return len(procs), fin, sum(1 for s in status.values() if s == "finished")


def pages_of(bundles: list[dict[str, Any]], per_page: int = PAGE_ENCOUNTERS) -> list[dict[str, Any]]:
    """Collection Bundles of whole patients, ~per_page encounters each, with the master data."""
    master = bundles[0]["entry"]
    pages: list[dict[str, Any]] = []
    cur: list[dict[str, Any]] = []
    n_enc = 0
    for b in bundles[1:]:
        cur.extend(b["entry"])
        n_enc += sum(1 for e in b["entry"] if e["resource"]["resourceType"] == "Encounter")
        if n_enc >= per_page:
            pages.append({"resourceType": "Bundle", "type": "collection", "entry": master + cur})
            cur, n_enc = [], 0
    if cur:
        pages.append({"resourceType": "Bundle", "type": "collection", "entry": master + cur})
    return pages


@dataclass
class CpuResult:
    procedures: int = 0  # Procedures of the finished encounters that were decided
    encounters: int = 0
    interventions: int = 0
    transaction_entries: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def ms_per_procedure(self, *stages: str) -> float:
        return 1000 * sum(self.seconds[s] for s in stages) / max(1, self.procedures)


def one_pass(pages: list[dict[str, Any]], tables: Tables, validate: bool = True) -> CpuResult:
    res = CpuResult()
    check = r4b_validator()
    clock = time.process_time
    sec = res.seconds
    for page in pages:
        t0 = clock()
        grouped, _problems = group_bundle(page)
        t1 = clock()
        sec["parse"] += t1 - t0
        # the context batch of a sync page is attached to every group of the page (integration.runner)
        context = {
            k: v
            for enc, rel in grouped
            for k, v in rel.items()
            if v.get("resourceType") in CONTEXT_TYPES and "/" in k and not k.startswith("urn:")
        }
        for enc, rel in grouped:
            if enc.get("status") != "finished":
                continue
            g = attach_context(Group(enc, dict(rel)), context)
            t0 = clock()
            # what the worker stores in and reads back from Redis: the slimmed group (integration.sync.slim).
            # Decisions below use the full group: these synthetic pages use urn:uuid references, which a
            # server would have resolved to Type/id before slim() sees them.
            Group.from_json(json.loads(json.dumps(slim(g).to_json())))
            t1 = clock()
            facts = extract_encounter(g.encounter, g.related)  # = sync.decide_group, split in two
            t2 = clock()
            decision = decide(facts, tables)
            t3 = clock()
            desired = build_outputs(facts, decision)
            digest(desired)
            plan = plan_writes(facts, decision, desired, {})
            bundle = build_transaction(facts, decision, plan)
            t4 = clock()
            if validate and bundle is not None:
                for e in bundle["entry"]:
                    check(e["resource"])
            t5 = clock()
            sec["claimchk"] += t1 - t0
            sec["parse"] += t2 - t1
            sec["decide"] += t3 - t2
            sec["build"] += t4 - t3
            sec["validate"] += t5 - t4
            res.encounters += 1
            res.procedures += len(facts.interventions)
            res.interventions += len(decision.classified)
            res.transaction_entries += len(bundle["entry"]) if bundle else 0
    return res


def classifications_per_second(tables: Tables, n: int = 20_000) -> tuple[float, float]:
    """(cold, warm) classifications/s of varied phrasings (bench_classify's templates), process CPU."""
    from bench_classify import TEMPLATES

    rnd = random.Random(7)
    itvs = [
        Intervention(
            id=str(i),
            text=rnd.choice(TEMPLATES).format(
                n=rnd.randint(5, 20),
                w=rnd.randint(1, 9),
                d=rnd.randint(20, 400),
                m=rnd.randint(5, 30),
                h=rnd.choice(["low couch", "mat", "chair", "bed"]),
            ),
        )
        for i in range(n)
    ]
    out = []
    for _ in range(2):
        t0 = time.process_time()
        for itv in itvs:
            classify(itv, tables)
        out.append(n / max(1e-9, time.process_time() - t0))
    return out[0], out[1]


def measure(bundles: list[dict[str, Any]], passes: int = 2) -> list[CpuResult]:
    tables = load_tables()
    pages = pages_of(bundles)
    return [one_pass(pages, tables) for _ in range(passes)]


def report(results: list[CpuResult], out: Any = sys.stdout) -> float:
    """Print per-stage figures; return the best parse+decide+build ms/Procedure (without validation)."""
    for i, r in enumerate(results, start=1):
        label = "cold caches" if i == 1 else "warm caches"
        print(
            f"pass {i} ({label}): {r.procedures} Procedures in {r.encounters} finished encounters, "
            f"{r.transaction_entries} transaction entries",
            file=out,
        )
        for s in STAGES:
            print(
                f"  {s:<9} {r.seconds[s]:8.3f} s CPU  {r.ms_per_procedure(s):7.3f} ms/Procedure"
                f"  {1000 * r.seconds[s] / max(1, r.encounters):7.3f} ms/encounter",
                file=out,
            )
        core = r.ms_per_procedure("parse", "decide", "build")
        full = r.ms_per_procedure("parse", "decide", "build", "validate")
        print(f"  parse+decide+build            {core:7.3f} ms/Procedure (without R4B validation)", file=out)
        print(f"  parse+decide+build+validate   {full:7.3f} ms/Procedure (with R4B validation)", file=out)
        allin = r.ms_per_procedure(*STAGES)
        print(f"  all stages incl. claim check  {allin:7.3f} ms/Procedure", file=out)
    return min(r.ms_per_procedure("parse", "decide", "build") for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--procedures", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--classify-n", type=int, default=20_000)
    ap.add_argument("--profile", metavar="FILE", help="cProfile one pass into FILE (pstats) and print top 25")
    args = ap.parse_args()

    bundles = clinic_for(args.procedures, args.seed)
    total, fin, encs = count_procedures(bundles)
    print(
        f"clinic: {len(bundles) - 1} patients, {total} Procedures ({fin} in {encs} finished encounters), "
        f"seed {args.seed}"
    )
    if args.profile:
        import cProfile
        import pstats

        tables = load_tables()
        pages = pages_of(bundles)
        one_pass(pages, tables)  # warm
        cProfile.runctx("one_pass(pages, tables)", globals(), locals(), args.profile)
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(25)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
        return
    results = measure(bundles, args.passes)
    best = report(results)
    with_val = min(r.ms_per_procedure("parse", "decide", "build", "validate") for r in results)
    cold, warm = classifications_per_second(load_tables(), args.classify_n)
    print(
        f"classify: {cold:,.0f} classifications/s CPU cold caches, {warm:,.0f}/s warm "
        f"({args.classify_n} varied phrasings, bench_classify templates)"
    )
    met = "MET" if best <= 1.0 else "NOT MET"
    print(
        f"target parse+decide+build <= 1 ms/Procedure: {best:.3f} ms -> {met} "
        f"(with R4B validation: {with_val:.3f} ms -> {'MET' if with_val <= 1.0 else 'NOT MET'})"
    )


if __name__ == "__main__":
    main()
