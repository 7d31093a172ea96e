"""Billing on what the live pipeline hands over: server-shaped groups, claim-check round trips, paging.

Two pipeline bugs made the synthetic-clinic demo report duplicated Procedures and unknown performer
disciplines; these tests pin the fixes:

* a Group stored as JSON (the Redis claim check) loses object identity between the ``Type/id`` and
  absolute-fullUrl aliases of one resource; extraction must still see each Procedure once;
* ``context_requests`` fetches each performer once per run, so a group on a later page must get the
  performer's Practitioner/PractitionerRole from what was fetched earlier (``performer_context``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from integration.fhir.extract import group_bundle
from integration.model import NUCC
from integration.sync import Group, context_requests, decide_group, performer_context
from mappings.loader import Tables, default_tables

BASE = "http://fhir.example/fhir"
CPT = "http://www.ama-assn.org/go/cpt"


@pytest.fixture(scope="module")
def tables() -> Tables:
    return default_tables()


def _entry(res: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"{BASE}/{res['resourceType']}/{res['id']}", "resource": res}


def _proc(pid: str, enc: str, code: str, start: str, end: str, actor: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": {"coding": [{"system": CPT, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{enc}"},
        "performedPeriod": {"start": start, "end": end},
        "performer": [{"actor": {"reference": actor}}],
    }


def _encounter(eid: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": f"{day}T09:00:00-07:00", "end": f"{day}T10:00:00-07:00"},
    }


PATIENT = {"resourceType": "Patient", "id": "p1"}
COVERAGE = {
    "resourceType": "Coverage",
    "id": "c1",
    "status": "active",
    "type": {"coding": [{"system": "https://nahdo.org/sopt", "code": "1"}]},
    "beneficiary": {"reference": "Patient/p1"},
    "payor": [{"display": "Medicare Part B"}],
}
PTA = {"resourceType": "Practitioner", "id": "pta"}
PTA_ROLE = {
    "resourceType": "PractitionerRole",
    "id": "pta-role",
    "practitioner": {"reference": "Practitioner/pta"},
    "code": [{"coding": [{"system": NUCC, "code": "225200000X"}]}],
}


def _search_page(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [_entry(r) for r in resources]}


def _group(*resources: dict[str, Any]) -> Group:
    (enc, related), *_ = group_bundle(_search_page(*resources))[0]
    return Group(enc, dict(related))


def test_claim_check_round_trip_does_not_duplicate_procedures(tables: Tables):
    g = _group(
        _encounter("e1", "2026-03-02"),
        PATIENT,
        COVERAGE,
        PTA,
        PTA_ROLE,
        _proc(
            "x1", "e1", "97110", "2026-03-02T09:00:00-07:00", "2026-03-02T09:23:00-07:00", "Practitioner/pta"
        ),
        _proc(
            "x2", "e1", "97010", "2026-03-02T09:23:00-07:00", "2026-03-02T09:33:00-07:00", "Practitioner/pta"
        ),
    )
    # the search page's absolute fullUrls are aliases of the Type/id keys
    assert f"{BASE}/Procedure/x1" in g.related and "Procedure/x1" in g.related
    stored = Group.from_json(json.loads(json.dumps(g.to_json())))
    before_facts, before = decide_group(g, tables)
    after_facts, after = decide_group(stored, tables)
    assert [i.id for i in after_facts.interventions] == ["x1", "x2"]
    assert after_facts.interventions == before_facts.interventions
    assert after.lines == before.lines
    assert {ln.code: ln.units for ln in after.lines} == {"97110": 2}  # 97010 bundled for Medicare
    assert not any(f.code == "BILL-UNTIMED-REPEATED" for f in after.findings)


def test_performer_fetched_on_an_earlier_page_still_resolves(tables: Tables):
    page1 = _group(
        _encounter("e1", "2026-03-02"),
        PATIENT,
        _proc(
            "x1", "e1", "97110", "2026-03-02T09:00:00-07:00", "2026-03-02T09:23:00-07:00", "Practitioner/pta"
        ),
    )
    page2 = _group(
        _encounter("e2", "2026-03-04"),
        PATIENT,
        _proc(
            "y1", "e2", "97110", "2026-03-04T09:00:00-07:00", "2026-03-04T09:23:00-07:00", "Practitioner/pta"
        ),
    )
    known: set[str] = set()
    first = context_requests([page1], known)
    assert ("perf:Practitioner/pta", "PractitionerRole?practitioner=Practitioner/pta") in first
    # the second page asks for the patient's context again but not for the performer
    second = context_requests([page2], {k for k in known if k.startswith("perf:")})
    assert all(not k.startswith("perf:") for k, _ in second)
    staff = {"Practitioner/pta": PTA, "PractitionerRole/pta-role": PTA_ROLE}
    extra = performer_context(page2, staff)
    assert set(extra) == {"Practitioner/pta", "PractitionerRole/pta-role"}
    page2_ctx = Group(page2.encounter, {**page2.related, **extra, "Coverage/c1": COVERAGE})
    _, d = decide_group(page2_ctx, tables)
    (line,) = d.lines
    assert [m.code for m in line.modifiers] == ["GP", "CQ"]  # the PTA's role code was read
    assert not any(f.code == "BILL-DISCIPLINE-ASSUMED" for f in d.findings)
    assert not any(a.code == "DOC-PERFORMER" for a in d.actions)


def test_performer_context_follows_role_to_practitioner():
    g = _group(
        _encounter("e1", "2026-03-02"),
        _proc(
            "x1",
            "e1",
            "97110",
            "2026-03-02T09:00:00-07:00",
            "2026-03-02T09:23:00-07:00",
            "PractitionerRole/pta-role",
        ),
    )
    staff = {
        "Practitioner/pta": PTA,
        "PractitionerRole/pta-role": PTA_ROLE,
        "Practitioner/other": {"id": "o"},
    }
    assert set(performer_context(g, staff)) == {"PractitionerRole/pta-role", "Practitioner/pta"}
