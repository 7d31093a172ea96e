"""Copy-forward (DOC-CLONED, issue 8 §4): the same documentation for the same patient on consecutive visits
is not billed as is; only dates and text hashes of earlier visits travel with the encounter."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from integration.classify.cloned import hashed_words, normalize, previous_visit, text_hash
from integration.decide import decide
from integration.fhir.extract import PRIOR_VISITS_TYPE, extract_encounter
from integration.model import SOPT_SYSTEMS, Coding, CoverageFacts, EncounterFacts, Intervention, PriorVisit
from integration.sync import Group, attach_context, context_requests, slim
from mappings.loader import Tables, default_tables

NOTE = "Clamshells with red band 3x15 left hip for glute med strength, cues to avoid trunk rotation"
MEDICARE = CoverageFacts("cov", "active", (Coding(SOPT_SYSTEMS[0], "1"),), order=1)


@pytest.fixture(scope="module")
def tables() -> Tables:
    return default_tables()


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (NOTE, NOTE.upper(), True),  # case
        (NOTE, NOTE.replace(", ", " ;  "), True),  # punctuation and spacing
        (NOTE, NOTE.replace("3x15", "3x12"), False),  # a number changed
        (NOTE, NOTE.replace("left", "right"), False),  # a word changed
        ("Ｃｌａｍｓｈｅｌｌｓ", "Clamshells", True),  # full-width forms (NFKC)
    ],
)
def test_normalised_hash(a: str, b: str, same: bool) -> None:
    assert (text_hash(a)[0] == text_hash(b)[0]) is same


def test_short_text_is_not_compared() -> None:
    assert hashed_words("Gait training", 8) is None
    assert hashed_words(NOTE, 8) == text_hash(NOTE)[0]
    assert normalize("") == "" and text_hash("  ..  ") == ("", 0)


def test_previous_visit_is_the_latest_day_before() -> None:
    v1 = PriorVisit("Encounter/1", date(2026, 3, 2), ("a",))
    v2 = PriorVisit("Encounter/2", date(2026, 3, 4), ("b",))
    v3 = PriorVisit("Encounter/3", date(2026, 3, 4), ("c",))
    later = PriorVisit("Encounter/9", date(2026, 3, 9), ("d",))
    undated = PriorVisit("Encounter/0", None, ("e",))
    assert previous_visit((v1, v2, v3, later, undated), date(2026, 3, 6)) == (v2, v3)
    assert previous_visit((later,), date(2026, 3, 6)) == ()


def _facts(text: str, prior: tuple[PriorVisit, ...]) -> EncounterFacts:
    itv = Intervention(id="p1", text=text, minutes=15, performed_date=date(2026, 3, 6))
    return EncounterFacts(
        "e2", "finished", "pat", date(2026, 3, 6), (itv,), coverages=(MEDICARE,), prior_visits=prior
    )


@pytest.mark.parametrize(
    ("prior_text", "prior_day", "cloned"),
    [
        (NOTE, date(2026, 3, 4), True),  # copied from the previous visit
        (NOTE.lower() + ".", date(2026, 3, 4), True),  # copied, case and punctuation changed
        (NOTE.replace("3x15", "3x20"), date(2026, 3, 4), False),  # progressed: a new note
        (NOTE, date(2026, 3, 9), False),  # a later visit is not "previous"
    ],
)
def test_cloned_entry_gets_no_line_but_a_finding_and_task(
    tables: Tables, prior_text: str, prior_day: date, cloned: bool
) -> None:
    prior = (PriorVisit("Encounter/e1", prior_day, (text_hash(prior_text)[0],)),)
    d = decide(_facts(NOTE, prior), tables)
    assert (not d.lines) is cloned, d.lines
    assert ("DOC-CLONED" in {f.code for f in d.findings}) is cloned
    assert ("DOC-CLONED" in {a.code for a in d.actions}) is cloned
    assert d.classified[0].classification.code == "97110"  # the classification itself is unchanged


def test_only_the_most_recent_visit_counts(tables: Tables) -> None:
    older = PriorVisit("Encounter/e0", date(2026, 2, 20), (text_hash(NOTE)[0],))
    last = PriorVisit("Encounter/e1", date(2026, 3, 4), (text_hash("Bridges 3x10 and something else")[0],))
    d = decide(_facts(NOTE, (older, last)), tables)
    assert d.lines and "DOC-CLONED" not in {f.code for f in d.findings}


# --- reading: the patient's other visits, hashes and dates only -------------------------------------


def _proc(pid: str, enc: str, text: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": {"text": text},
        "subject": {"reference": "Patient/pat"},
        "encounter": {"reference": f"Encounter/{enc}"},
        "performedPeriod": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:15:00Z"},
    }


def _enc(eid: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "subject": {"reference": "Patient/pat"},
        "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T10:00:00Z"},
    }


def test_context_asks_for_the_patients_procedures() -> None:
    g = Group(_enc("e2", "2026-03-06"), {})
    urls = [u for _, u in context_requests([g], set())]
    assert "Procedure?patient=Patient/pat&_count=500" in urls


def test_claim_check_keeps_hashes_not_the_other_visits_text(tables: Tables) -> None:
    today = _proc("p2", "e2", NOTE, "2026-03-06")
    group = Group(
        _enc("e2", "2026-03-06"),
        {"Procedure/p2": today, "Patient/pat": {"resourceType": "Patient", "id": "pat"}},
    )
    context = {
        "Procedure/p1": _proc("p1", "e1", NOTE, "2026-03-04"),
        "Procedure/p0": _proc(
            "p0", "e0", "Bridges 3x10 and hip abduction for strength in sidelying", "2026-02-27"
        ),
        "Procedure/p2": today,
        "Procedure/x": {**_proc("x", "e7", NOTE, "2026-03-04"), "subject": {"reference": "Patient/other"}},
    }
    stored = Group.from_json(json.loads(json.dumps(slim(attach_context(group, context)).to_json())))
    blob = json.dumps(stored.to_json())
    assert blob.count("Clamshells") == 1  # today's Procedure only
    assert "Bridges" not in blob
    summary = stored.related[f"{PRIOR_VISITS_TYPE}/pat"]
    assert {v["encounter"] for v in summary["visits"]} == {"Encounter/e0", "Encounter/e1"}
    facts = extract_encounter(stored.encounter, stored.related)
    assert [i.id for i in facts.interventions] == ["p2"]
    assert {(v.encounter, v.date) for v in facts.prior_visits} == {
        ("Encounter/e0", date(2026, 2, 27)),
        ("Encounter/e1", date(2026, 3, 4)),
    }
    assert not facts.input_problems
    d = decide(facts, tables)
    assert "DOC-CLONED" in {f.code for f in d.findings}
