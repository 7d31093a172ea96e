"""The end-to-end suite on every FHIR server ptbill is tested against, with the DEFAULT settings.

sekmet-fhir (client ids, create-by-PUT, atomic transactions), and Medplum's router (tests/servers/medplum)
with its profiles ``lenient``, ``rules`` (UUID ids only, no create-by-PUT, transactions processed as
batches) and ``rules-tx`` (atomic transactions limited to 8 entries with a conditional, 50 updates).
PTBILL_WRITE_MODE is left at its default (``auto``): ptbill picks the strategy from each server's
CapabilityStatement.

One test per server, one server and one real Celery worker each:
seed -> sync -> re-sync writes nothing -> EMR-side edits (an encounter withdrawn, a Procedure documented
longer, a Procedure marked not-done) -> sync writes only the difference -> Redis state lost -> sync writes
nothing -> backfill writes nothing. Throughout: no duplicate business identifier, no dangling reference
(each one resolves; no urn:uuid or placeholder stored), every Provenance kept (none ever rewritten).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from integration.fhir.writeback import ENCOUNTER_TAG, IDENTIFIER_SYSTEM, LOCAL_REF, PTBILL_TAG, RETIRED_STATUS
from ptbill_demo.embedded import SekmetServer
from tests.integration.medplum_server import MedplumServer, seed_clinic, unavailable_reason
from tests.integration.support import env_for, seed, send_sync, state_for, wait_for, wait_run

pytestmark = pytest.mark.integration

TYPES = ("ChargeItem", "DetectedIssue", "Task", "Flag")
SERVERS = ("sekmet", "lenient", "rules", "rules-tx")
JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@contextmanager
def fhir(kind: str, tmp_path: Path) -> Iterator[str]:
    """A seeded server of ``kind``; yields its FHIR base."""
    if kind == "sekmet":
        with SekmetServer(tmp_path / "sekmet") as srv:
            seed(srv.base_url, patients=2, seed_value=5)
            yield srv.base_url
        return
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with MedplumServer(kind, log_dir=tmp_path / "medplum") as srv:
        seed_clinic(srv.url, patients=2, seed=5)
        yield srv.url


class Server:
    """Plain HTTP to the server, as the EMR and a person would use it (not ptbill's client)."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.http = requests.Session()
        self.http.headers.update(JSON)

    def search(self, rtype: str, **params: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.base}/{rtype}"
        query: dict[str, str] | None = {"_count": "500", **params}
        while url:
            r = self.http.get(url, params=query, timeout=60)
            r.raise_for_status()
            page = r.json()
            out += [
                e["resource"] for e in page.get("entry") or [] if e.get("search", {}).get("mode") != "include"
            ]
            url = next((ln["url"] for ln in page.get("link") or [] if ln.get("relation") == "next"), None)
            query = None
        return out

    def read(self, ref: str) -> dict[str, Any] | None:
        r = self.http.get(f"{self.base}/{ref}", timeout=30)
        return r.json() if r.status_code == 200 else None

    def put(self, resource: dict[str, Any]) -> None:
        body = {k: v for k, v in resource.items() if k != "meta"}
        r = self.http.put(f"{self.base}/{resource['resourceType']}/{resource['id']}", json=body, timeout=30)
        assert r.status_code in (200, 201), r.text[:500]
        stamp = ((r.json() or {}).get("meta") or {}).get("lastUpdated")
        if isinstance(stamp, str):
            edited = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            self.last_edit = max(self.last_edit or edited, edited)

    last_edit: datetime | None = None

    def clock(self) -> datetime:
        """The server's clock (its HTTP Date header: whole seconds)."""
        r = self.http.get(f"{self.base}/metadata", timeout=30)
        return parsedate_to_datetime(r.headers["Date"])

    def settle(self) -> None:
        """Wait until the server's clock (whole seconds) has passed the last edit: a sync window ends at the
        server's clock, never after it, so an edit of this very second belongs to the next run."""
        if self.last_edit is not None:
            edited = self.last_edit
            wait_for(lambda: self.clock() > edited, 10, "the server's clock to pass the last edit")

    def ptbill(self) -> dict[str, dict[str, Any]]:
        """Every resource ptbill wrote, by ``Type/id`` (Provenances included)."""
        out = {}
        for t in (*TYPES, "Provenance"):
            for r in self.search(t, _tag=f"{PTBILL_TAG}|ptbill"):
                out[f"{t}/{r['id']}"] = r
        return out


def refs(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "reference" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from refs(v)


def check_invariants(srv: Server, resources: dict[str, dict[str, Any]]) -> None:
    idents = Counter(
        (r["resourceType"], i["value"])
        for r in resources.values()
        for i in r.get("identifier") or []
        if i.get("system") == IDENTIFIER_SYSTEM
    )
    dupes = {k: n for k, n in idents.items() if n > 1}
    assert not dupes, f"duplicate business identifiers: {dupes}"
    known: dict[str, bool] = {}
    for key, r in resources.items():
        for ref in refs({k: v for k, v in r.items() if k != "meta"}):
            assert not ref.startswith(("urn:", LOCAL_REF)), f"{key} keeps {ref}"
            target = ref.split("/_history/")[0]
            if target not in known:
                known[target] = target in resources or srv.read(target) is not None
            assert known[target], f"{key} refers to {ref}, which does not exist"


def run_sync(env: dict[str, str], **kwargs: Any) -> dict[str, str]:
    run = uuid.uuid4().hex[:16]
    send_sync(env, run, **kwargs)
    info = wait_run(state_for(env), run, 240)
    assert int(info.get("dead_lettered", 0) or 0) == 0, info
    return info


def versions(resources: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: r["meta"]["versionId"] for k, r in resources.items()}


def tagged(resources: dict[str, dict[str, Any]], encounter_id: str) -> dict[str, dict[str, Any]]:
    return {
        k: r
        for k, r in resources.items()
        if {"system": ENCOUNTER_TAG, "code": encounter_id} in (r.get("meta") or {}).get("tag", [])
    }


def longer(proc: dict[str, Any], minutes: int = 15) -> dict[str, Any]:
    period = dict(proc["performedPeriod"])
    period["end"] = (datetime.fromisoformat(period["end"]) + timedelta(minutes=minutes)).isoformat()
    return {**proc, "performedPeriod": period}


@pytest.mark.parametrize("kind", SERVERS)
def test_e2e_on_every_server(kind: str, tmp_path: Path, redis_url: str, workers: Any) -> None:
    with fhir(kind, tmp_path) as base:
        srv = Server(base)
        env = env_for(base, redis_url)  # no PTBILL_WRITE_MODE: the default chooses
        state = state_for(env)
        state.r.delete(*state.r.keys(f"{state.p}:*") or ["-"])
        finished = srv.search("Encounter", status="finished")
        workers.start(env, concurrency=2)

        info = run_sync(env)
        assert int(info["processed"]) == len(finished)
        first = srv.ptbill()
        kinds = Counter(k.split("/")[0] for k in first)
        assert kinds["ChargeItem"] > 0 and kinds["Provenance"] > 0, kinds
        check_invariants(srv, first)
        if kind in ("rules", "rules-tx"):  # server-assigned ids: the default chose conditional creates
            assert not any(k.split("/")[1].startswith("ptb-") for k in first)

        # re-sync: nothing to do, nothing written
        run_sync(env)
        assert versions(srv.ptbill()) == versions(first)

        # EMR-side edits on three encounters that have ChargeItems
        charges = [r for k, r in first.items() if k.startswith("ChargeItem/")]
        by_enc: dict[str, list[dict[str, Any]]] = {}
        for c in charges:
            by_enc.setdefault(c["context"]["reference"].split("/")[1], []).append(c)
        assert len(by_enc) >= 3
        withdrawn, longer_enc, not_done_enc = sorted(by_enc)[:3]
        enc = srv.read(f"Encounter/{withdrawn}")
        assert enc is not None
        srv.put({**enc, "status": "entered-in-error"})
        timed = [
            p
            for p in srv.search("Procedure", encounter=f"Encounter/{longer_enc}")
            if p.get("status") == "completed" and (p.get("performedPeriod") or {}).get("end")
        ]
        assert timed
        srv.put(longer(timed[0]))
        proc_ref = by_enc[not_done_enc][0]["service"][0]["reference"]
        proc = srv.read(proc_ref)
        assert proc is not None
        srv.put({**proc, "status": "not-done"})
        srv.settle()

        info = run_sync(env)
        assert int(info["processed"]) >= 3 and int(info["withdrawn"]) == 1, info
        after = srv.ptbill()
        check_invariants(srv, after)
        for k, r in tagged(after, withdrawn).items():
            if not k.startswith("Provenance/"):
                assert r["status"] == RETIRED_STATUS[r["resourceType"]], k
        changed = {
            k
            for k in after
            if k not in first or after[k]["meta"]["versionId"] != first[k]["meta"]["versionId"]
        }
        assert changed & set(tagged(after, longer_enc)), "the longer Procedure changed nothing"
        assert changed & set(tagged(after, not_done_enc)), "the not-done Procedure changed nothing"
        untouched = set(by_enc) - {withdrawn, longer_enc, not_done_enc}
        for e in untouched:
            for k in tagged(first, e):
                assert after[k]["meta"]["versionId"] == first[k]["meta"]["versionId"], k
        # every Provenance kept, none rewritten; the new changes got new ones
        provs = {k: v for k, v in versions(first).items() if k.startswith("Provenance/")}
        assert {k: versions(after).get(k) for k in provs} == provs
        assert len([k for k in after if k.startswith("Provenance/")]) > len(provs)

        # Redis loses ptbill's state: the next sync re-reads everything and writes nothing
        state.r.delete(*state.r.keys(f"{state.p}:*"))
        info = run_sync(env)
        again = srv.ptbill()
        assert versions(again) == versions(after), "a sync after losing Redis rewrote something"
        assert int(info.get("created", 0)) == int(info.get("updated", 0)) == int(info.get("retired", 0)) == 0
        assert state.has_epoch()  # a complete, successful full run: the ledger is known complete again

        # backfill of the whole history: nothing changes
        info = run_sync(env, since="1970-01-01T00:00:00Z", until=info["until"], backfill=True)
        assert int(info.get("fhir_write_requests", 0)) == 0
        final = srv.ptbill()
        assert versions(final) == versions(after)
        check_invariants(srv, final)
