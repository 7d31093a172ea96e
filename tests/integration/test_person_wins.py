"""A person's work survives ptbill (issue 10), with real processes: sekmet <- fault proxy <- a Celery worker.

One seeded server, one worker, one test walking through the cases in order (each on its own encounter):

* race: a biller moves a ChargeItem planned -> billable while ptbill's transaction for that encounter is
  held in flight; the transaction's If-Match fails (412), ptbill reads back, leaves the billable item alone
  and writes a DetectedIssue pointing at it;
* edits on a still-planned item (quantity, note) survive a re-decision, explained the same way;
* a person's entered-in-error stays, even when the suggestion changes;
* a transaction committed but unanswered (the connection drops after the server wrote it): the retry
  reads back first and writes nothing twice;
* ptbill's Redis state lost mid-run, then a biller's change and a partial re-sync: nothing is written
  blind, the ledger is not marked complete by a partial run, and retry-failed reads back too.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from integration.fhir.writeback import ENCOUNTER_TAG, IDENTIFIER_SYSTEM, PTBILL_TAG, REVIEW_DIFFERS
from ptbill_demo.embedded import SekmetServer
from tests.integration.faultproxy import Fault, FaultPlan, FaultProxy, Rule, transaction_for_encounter
from tests.integration.support import env_for, ptbill, seed, send_sync, state_for, wait_for, wait_run

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


class Emr:
    """The EMR's users, straight to the server (not through the proxy)."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()
        self.http.headers.update(JSON)

    def search(self, rtype: str, **params: str) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.base}/{rtype}", params={"_count": "500", **params}, timeout=30)
        r.raise_for_status()
        return [e["resource"] for e in r.json().get("entry") or []]

    def read(self, ref: str) -> dict[str, Any]:
        r = self.http.get(f"{self.base}/{ref}", timeout=30)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in resource.items() if k != "meta"}
        if "meta" in resource and resource["meta"].get("tag"):
            body["meta"] = {"tag": resource["meta"]["tag"]}
        r = self.http.put(f"{self.base}/{resource['resourceType']}/{resource['id']}", json=body, timeout=30)
        assert r.status_code in (200, 201), r.text[:300]
        return r.json()  # type: ignore[no-any-return]

    def charges(self, encounter_id: str) -> list[dict[str, Any]]:
        return self.search("ChargeItem", _tag=f"{ENCOUNTER_TAG}|{encounter_id}")

    def reviews(self, encounter_id: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.search("DetectedIssue", _tag=f"{ENCOUNTER_TAG}|{encounter_id}")
            if r["code"]["coding"][0]["code"] == REVIEW_DIFFERS and r["status"] == "preliminary"
        ]

    def document_longer(self, charge: dict[str, Any]) -> None:
        """The therapist documents the charge's Procedure 15 minutes longer (the suggestion changes)."""
        proc = self.read(charge["service"][0]["reference"])
        period = dict(proc["performedPeriod"])
        period["end"] = (datetime.fromisoformat(period["end"]) + timedelta(minutes=15)).isoformat()
        self.put({**proc, "performedPeriod": period})

    def no_duplicates(self) -> None:
        idents: Counter[tuple[str, str]] = Counter()
        for t in ("ChargeItem", "DetectedIssue", "Task", "Flag"):
            for r in self.search(t, _tag=f"{PTBILL_TAG}|ptbill"):
                for i in r.get("identifier") or []:
                    if i.get("system") == IDENTIFIER_SYSTEM:
                        idents[(t, i["value"])] += 1
        assert max(idents.values()) == 1, {k: n for k, n in idents.items() if n > 1}


def sync(env: dict[str, str], timeout: float = 180) -> dict[str, str]:
    run = uuid.uuid4().hex[:16]
    send_sync(env, run)
    return wait_run(state_for(env), run, timeout)


def points_at(review: dict[str, Any], charge: dict[str, Any]) -> bool:
    return {"reference": f"ChargeItem/{charge['id']}"} in review["implicated"]


def test_a_persons_work_is_never_overwritten(tmp_path: Path, redis_url: str, workers: Any) -> None:
    with FaultProxy(lifetime=400) as proxy:
        with SekmetServer(tmp_path / "fhir", extra_settings={"base_url": proxy.url()}) as srv:
            proxy.upstream = srv.root_url
            seed(srv.base_url, patients=2, seed_value=9)
            emr = Emr(srv.base_url)
            env = env_for(proxy.url(), redis_url)
            state = state_for(env)
            workers.start(env, concurrency=1)
            sync(env)
            # one timed ChargeItem (its Procedure has a period) per encounter
            chosen: dict[str, dict[str, Any]] = {}
            for c in emr.search("ChargeItem", _tag=f"{PTBILL_TAG}|ptbill"):
                enc = c["context"]["reference"].split("/")[1]
                if enc not in chosen and c.get("service"):
                    if (emr.read(c["service"][0]["reference"]).get("performedPeriod") or {}).get("end"):
                        chosen[enc] = c
            timed = sorted(chosen)
            assert len(timed) >= 6, "the seeded clinic needs six encounters with timed charges"
            race, edited, rejected, lost_answer, state_loss, partial = timed[:6]

            # a still-planned item edited (quantity, note); another rejected; then both re-decided
            item = chosen[edited]
            item = emr.put({**item, "quantity": {"value": 9}, "note": [{"text": "per the therapist"}]})
            no = emr.put({**chosen[rejected], "status": "entered-in-error"})
            for e in (race, edited, rejected, lost_answer):
                emr.document_longer(chosen[e])
            # the race: hold ptbill's transaction for `race` in flight; a committed-but-unanswered one
            proxy.set_plan(
                FaultPlan(
                    [
                        Rule(Fault("hold"), match=transaction_for_encounter(race), limit=1, nth=[1]),
                        Rule(
                            Fault("close", forward=True),
                            match=transaction_for_encounter(lost_answer),
                            nth=[1],
                        ),
                    ]
                )
            )
            run = uuid.uuid4().hex[:16]
            send_sync(env, run)
            wait_for(lambda: proxy.held == 1, 120, "ptbill's transaction to be held")
            billed = emr.put({**chosen[race], "status": "billable"})  # the biller, mid-flight
            proxy.release()
            info = wait_run(state, run, 180)
            assert int(info.get("dead_lettered", 0) or 0) == 0, info
            assert int(info["write_conflicts"]) >= 1, info
            assert proxy.fault_count("close") == 1

            now = emr.read(f"ChargeItem/{billed['id']}")
            assert now["status"] == "billable" and now["meta"]["versionId"] == billed["meta"]["versionId"]
            assert any(points_at(r, billed) for r in emr.reviews(race)), "no DetectedIssue explains it"
            now = emr.read(f"ChargeItem/{item['id']}")
            assert now["quantity"] == {"value": 9} and now["note"] == [{"text": "per the therapist"}]
            assert now["meta"]["versionId"] == item["meta"]["versionId"]
            assert any(points_at(r, item) for r in emr.reviews(edited))
            now = emr.read(f"ChargeItem/{no['id']}")
            assert now["status"] == "entered-in-error" and now["meta"]["versionId"] == no["meta"]["versionId"]
            # the lost answer: written once, read back, not written again (one Provenance for the change)
            provs = emr.search("Provenance", _tag=f"{ENCOUNTER_TAG}|{lost_answer}")
            assert len(provs) == 2, [p["id"] for p in provs]  # the first sync's and this change's
            emr.no_duplicates()

            # ptbill's Redis state is lost while a transaction is in flight
            emr.document_longer(chosen[state_loss])
            proxy.set_plan(
                FaultPlan([Rule(Fault("hold"), match=transaction_for_encounter(state_loss), nth=[1])])
            )
            proxy.rearm()
            send_sync(env, uuid.uuid4().hex[:16])
            wait_for(lambda: proxy.held == 1, 120, "the state-loss transaction to be held")
            state.r.delete(*state.r.keys(f"{state.p}:*"))
            proxy.release()
            wait_for(
                lambda: len(emr.search("Provenance", _tag=f"{ENCOUNTER_TAG}|{state_loss}")) == 2,
                120,
                "the held write to land",
            )
            # a biller acts; the next (full) sync ends partial: one encounter's write is refused
            kept = emr.put({**emr.read(f"ChargeItem/{chosen[state_loss]['id']}"), "status": "billable"})
            emr.document_longer(chosen[partial])
            proxy.set_plan(
                FaultPlan(
                    [
                        Rule(
                            Fault("status", 422, outcome="simulated refusal"),
                            match=transaction_for_encounter(partial),
                            probability=1.0,
                        )
                    ]
                )
            )
            wait_for(lambda: state.sync_lock_holder() is None, 60, "the lost run's lock to be gone")
            info = sync(env)
            assert int(info["dead_lettered"]) == 1 and state.last()["status"] == "partial", info
            assert not state.has_epoch(), "a partial run marked the ledger complete"
            proxy.set_plan(None)
            retried = ptbill(env, "retry-failed", "--inline")
            assert retried.returncode == 0, retried.stderr[-2000:]
            assert json.loads(retried.stdout.strip().splitlines()[-1]) == {"retried": 1, "succeeded": 1}
            now = emr.read(f"ChargeItem/{kept['id']}")
            assert now["status"] == "billable" and now["meta"]["versionId"] == kept["meta"]["versionId"]
            assert emr.read(f"ChargeItem/{billed['id']}")["status"] == "billable"
            assert emr.read(f"ChargeItem/{no['id']}")["status"] == "entered-in-error"
            emr.no_duplicates()
