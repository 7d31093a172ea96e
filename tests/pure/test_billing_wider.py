"""The wider code set through the billing steps (issue 8 §5): payer coverage as data, the discipline's
modifier (GN for speech-language pathology, GO for OT evaluations), documentation checks and the Tasks a
person must act on. Encounters written for these tests."""

from __future__ import annotations

from datetime import date

import pytest

from integration.billing.steps.documentation import A_ATTEST_EVAL_COMPLEXITY, A_DOC_NEEDLING_MUSCLES
from integration.decide import decide
from integration.model import (
    NUCC,
    SOPT_SYSTEMS,
    Coding,
    CoverageFacts,
    Decision,
    EncounterFacts,
    Intervention,
    PerformerRef,
    PractitionerFacts,
)
from mappings.loader import Tables, default_tables

DAY = date(2026, 3, 6)
MEDICARE = CoverageFacts("cov", "active", (Coding(SOPT_SYSTEMS[0], "1"),), order=1)
COMMERCIAL = CoverageFacts("cov", "active", (Coding(SOPT_SYSTEMS[0], "5"),), order=1)
TAXONOMY = {"PT": "225100000X", "OT": "225X00000X", "SLP": "235Z00000X"}


@pytest.fixture(scope="module")
def tables() -> Tables:
    return default_tables()


def _decide(tables: Tables, text: str, who: str, payer: CoverageFacts, minutes: int | None = 15) -> Decision:
    ref = f"Practitioner/{who.lower()}"
    itv = Intervention(
        id="p1",
        text=text,
        minutes=minutes,
        performed_date=DAY,
        performers=(PerformerRef(ref),),
    )
    facts = EncounterFacts(
        "e1",
        "finished",
        "pat",
        DAY,
        (itv,),
        coverages=(payer,),
        practitioners=(PractitionerFacts(ref, ref, (Coding(NUCC, TAXONOMY[who]),)),),
    )
    return decide(facts, tables)


def _lines(d: Decision) -> list[tuple[str, int, tuple[str, ...]]]:
    return [(ln.code, ln.units, tuple(m.code for m in ln.modifiers)) for ln in d.lines]


@pytest.mark.parametrize(
    ("text", "who", "payer", "line"),
    [
        ("Resonant voice therapy, humming to phrases, 70% accuracy", "SLP", MEDICARE, ("92507", 1, ("GN",))),
        ("Effortful swallow with thin liquid sips x10, no cough", "SLP", COMMERCIAL, ("92526", 1, ("GN",))),
        ("Epley maneuver R posterior canal, Dix-Hallpike + before", "PT", MEDICARE, ("95992", 1, ("GP",))),
        ("Dry needling R upper trapezius and levator scapulae", "PT", COMMERCIAL, ("20560", 1, ("GP",))),
        ("Attention process training, sustained attention drills", "OT", MEDICARE, ("97129", 1, ("GO",))),
        (
            "OT eval: brief history; performance deficits: typing, cooking (2). No comorbidities. Testing "
            "without modification. Limited treatment options.",
            "OT",
            MEDICARE,
            ("97165", 1, ("GO",)),
        ),
    ],
)
def test_wider_code_line(
    tables: Tables, text: str, who: str, payer: CoverageFacts, line: tuple[str, int, tuple[str, ...]]
) -> None:
    d = _decide(tables, text, who, payer)
    assert _lines(d) == [line], (d.lines, d.findings)


def test_dry_needling_not_covered_by_medicare(tables: Tables) -> None:
    d = _decide(tables, "Dry needling R upper trapezius and levator scapulae", "PT", MEDICARE)
    assert not d.lines
    assert "BILL-PAYER-NOT-COVERED" in {f.code for f in d.findings}


def test_needling_without_muscles_asks_for_them(tables: Tables) -> None:
    d = _decide(tables, "Dry needling performed, 6 insertions", "PT", COMMERCIAL)
    assert _lines(d) == [("20560", 1, ("GP",))]
    assert A_DOC_NEEDLING_MUSCLES in {a.code for a in d.actions}


def test_evaluation_without_its_presentation_gets_an_attestation_task(tables: Tables) -> None:
    text = "PT eval: COPD, CHF, osteoporosis affect the plan. Exam: strength, balance, gait, transfers."
    d = _decide(tables, text, "PT", MEDICARE, minutes=45)
    assert _lines(d) == [("97161", 1, ("GP",))]
    (task,) = [a for a in d.actions if a.code == A_ATTEST_EVAL_COMPLEXITY]
    assert "clinical presentation" in task.description


@pytest.mark.parametrize(
    ("text", "finding", "present"),
    [
        ("Epley maneuver x2, symptoms resolved", "DOC-95992-CANAL", True),
        ("Epley maneuver x2 for L posterior canal BPPV", "DOC-95992-CANAL", False),
        ("Triple hop and crossover hop testing for limb symmetry", "DOC-97750-REPORT", True),
        ("Triple hop testing, written report to the surgeon", "DOC-97750-REPORT", False),
        ("Pool: marching and squats in waist-deep water", "DOC-97113-ONE-ON-ONE", True),
        ("Pool 1:1 with PT in the water: marching with cues for posture", "DOC-97113-ONE-ON-ONE", False),
    ],
)
def test_documentation_checks(tables: Tables, text: str, finding: str, present: bool) -> None:
    d = _decide(tables, text, "PT", COMMERCIAL)
    assert (finding in {f.code for f in d.findings}) is present, d.findings
