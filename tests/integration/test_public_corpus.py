"""Real public FHIR R4 data (read from /work/shared/fhir-data, never copied) -> sekmet -> inline sync.

A representative subset: HL7 R4 examples (Encounter/Procedure/Patient/Practitioner/Coverage), two Synthea
SMART patient bundles, the eCQM test-deck resources and the first lines of the Synthea bulk ndjson. What
the server rejects is counted with its status. The sync must not crash; non-therapy procedures (almost
all of this corpus) are skipped with a ``skipped:not-therapy`` count, not flagged as errors; unreadable
inputs are counted (``input_problems`` / ``bundle_problems``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.errors import FhirError
from integration.fhir.client import FhirClient, parse_transaction_response
from tests.integration.support import env_for, ptbill, state_for

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "fhir-data"
TYPES = ("Patient", "Practitioner", "PractitionerRole", "Organization", "Coverage", "Encounter", "Procedure")
ALL_STATUSES = "planned,arrived,triaged,in-progress,onleave,finished,cancelled,entered-in-error,unknown"
BULK_LINES = 40
SMART_BUNDLES = 2

if not CORPUS.is_dir():
    pytest.skip(f"public FHIR corpus not present at {CORPUS}", allow_module_level=True)


def _json_files(folder: Path, prefixes: tuple[str, ...]) -> Iterator[Path]:
    for p in sorted(folder.rglob("*.json")):
        if p.name.split("-", 1)[0] in prefixes:
            yield p


def corpus_resources(tally: Counter[str]) -> list[dict[str, Any]]:
    """Single resources from the HL7 examples, the eCQM deck and the bulk ndjson (unreadable ones counted)."""
    out: list[dict[str, Any]] = []
    files = list(_json_files(CORPUS / "hl7-r4-examples-4.0.1", TYPES))
    files += list(_json_files(CORPUS / "ecqm-qicore-2024-tests", TYPES))
    for f in files:
        try:
            res = json.loads(f.read_text(encoding="utf-8", errors="replace"))
        except ValueError:
            tally["unreadable:not-json"] += 1
            continue
        if not isinstance(res, dict) or res.get("resourceType") not in TYPES or not res.get("id"):
            tally["unreadable:not-a-resource-with-id"] += 1
            continue
        out.append(res)
    bulk = CORPUS / "synthea-bulk-10-patients"
    for t in TYPES:
        path = bulk / f"{t}.000.ndjson"
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh):
                if i >= BULK_LINES:
                    break
                try:
                    out.append(json.loads(line))
                except ValueError:
                    tally["unreadable:ndjson-line"] += 1
    return out


def smart_bundles() -> list[dict[str, Any]]:
    """The smallest Synthea SMART transaction bundles, reduced to the resource types ptbill reads."""
    paths = sorted((CORPUS / "synthea-smart-r4-subset").glob("*.json"), key=lambda p: p.stat().st_size)
    out = []
    for p in paths[:SMART_BUNDLES]:
        b = json.loads(p.read_text(encoding="utf-8"))
        b["entry"] = [e for e in b.get("entry", []) if (e.get("resource") or {}).get("resourceType") in TYPES]
        out.append(b)
    return out


def load(client: FhirClient, resources: list[dict[str, Any]], bundles: list[dict[str, Any]]) -> Counter[str]:
    tally: Counter[str] = Counter()
    for i in range(0, len(resources), 100):
        chunk = resources[i : i + 100]
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in chunk
            ],
        }
        try:
            answer = client.batch(batch, idempotent=True)
        except FhirError as e:
            tally[f"rejected:batch:{e.status}"] += len(chunk)
            continue
        for r in parse_transaction_response(answer):
            tally["loaded" if r.ok else f"rejected:{r.status}"] += 1
    for b in bundles:
        try:
            client.transaction(b, idempotent=True)
            tally["loaded"] += len(b["entry"])
        except FhirError as e:
            tally[f"rejected:transaction:{e.status}"] += len(b["entry"])
    return tally


def test_public_corpus_inline_sync(fhir_server, redis_url):
    tally: Counter[str] = Counter()
    resources = corpus_resources(tally)
    with FhirClient(fhir_server.base_url, timeout=60) as client:
        tally.update(load(client, resources, smart_bundles()))
        n_enc = client.get("Encounter", [("_summary", "count")]).get("total")
        n_proc = client.get("Procedure", [("_summary", "count")]).get("total")
    print(f"corpus load: {dict(tally)}; on server: {n_enc} Encounters, {n_proc} Procedures")
    assert tally["loaded"] > 300, tally
    assert isinstance(n_enc, int) and n_enc > 50

    env = env_for(
        fhir_server.base_url, redis_url, PTBILL_ENCOUNTER_STATUSES=ALL_STATUSES, PTBILL_LOG_LEVEL="WARNING"
    )
    proc = ptbill(env, "sync", "--inline", timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = {k: v for k, v in json.loads(proc.stdout).items()}
    counters = {k: int(v) for k, v in info.items() if isinstance(v, str) and v.isdigit()}
    print("sync:", json.dumps(counters, sort_keys=True))

    dispatched = counters["dispatched"]
    assert dispatched > 50
    # every encounter is accounted for; none crashed the run
    assert (
        counters.get("processed", 0) + counters.get("unchanged", 0) + counters.get("dead_lettered", 0)
        == dispatched
    )
    state = state_for(env)
    dead = state.dead_letters()
    assert counters.get("dead_lettered", 0) == len(dead)
    assert state.last()["status"] in ("ok", "partial")  # the run finished and closed
    # non-therapy procedures are skipped with a count, not turned into errors
    assert counters.get("skipped:not-therapy", 0) > 0
    # whatever was odd in the corpus is counted, with reasons, not dropped
    assert counters.get("input_problems", 0) > 0
    # a dead letter is a ptbill bug on real data
    reasons = Counter(v["reason"] for v in dead.values())
    # encounters without any therapy intervention are not flagged: nothing is written for them
    assert counters.get("findings", 0) < counters["dispatched"] // 4
    assert not dead, dict(reasons)
