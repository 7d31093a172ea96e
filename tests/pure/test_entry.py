"""Deciding an entry from its items (integration.classify.entry).

The decision rules are tested with a stub engine (each item's code is given), so they do not depend on the
lexicons; a few cases then run the real classifier on the shipped tables. Cases are written for these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integration.billing.steps.entries import A_SPLIT_MINUTES
from integration.classify import classify
from integration.classify.entry import F_HEADING, F_MIXED, CodeSets, classify_entry
from integration.fhir.extract import group_bundle
from integration.model import CPT, UNSUPPORTED, Classification, Coding, Intervention
from integration.pipeline import dry_run_bundle
from integration.sync import Group
from mappings.loader import Tables, default_tables

SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"


def stub(codes: dict[str, str | tuple[str, tuple[str, ...]]], whole: str):
    """An engine that knows each item's code by a word in it; any other text (the whole note) is ``whole``."""

    def one(itv: Intervention) -> Classification:
        for word, c in codes.items():
            if itv.text.strip().lower() == word.lower() or (
                itv.text != NOTE[0] and word.lower() in itv.text.lower()
            ):
                code, alts = (c, ()) if isinstance(c, str) else c
                return Classification(code, alts, 0.8)
        if itv.text == NOTE[0]:
            return Classification(whole, (), 0.8)
        return Classification(UNSUPPORTED)

    return one


NOTE = [""]  # the note being classified (the stub's "whole text")
NO_SETS = CodeSets()


def decide(
    text: str,
    codes: dict[str, str | tuple[str, tuple[str, ...]]],
    whole: str,
    *,
    minutes: int | None = None,
    coded: str | None = None,
    sets: CodeSets = NO_SETS,
) -> Classification:
    NOTE[0] = text
    itv = Intervention(
        id="p1",
        text=text,
        minutes=minutes,
        codings=(Coding(CPT, coded),) if coded else (),
    )
    return classify_entry(stub(codes, whole), itv, sets)


def mixed(c: Classification) -> bool:
    return any(f.code == F_MIXED for f in c.findings)


# (case, text, item codes by keyword, whole-text code, minutes, coded code, expected code, flagged, shares)
CASES = [
    (
        "all items one code",
        "bridges 2x10; clamshells 2x10",
        {"bridges": "97110", "clamshells": "97110"},
        "97110",
        None,
        None,
        "97110",
        False,
        (),
    ),
    (
        "per-item minutes: one share per code",
        "bike 8 min; gait drills 12 min",
        {"bike": "97110", "gait": "97116"},
        "97116",
        20,
        None,
        "97116",
        True,
        (("97110", 8), ("97116", 12)),
    ),
    (
        "per-item minutes: shares summed per code",
        "bike 5 min; rows 2x10 5 min; gait 10 min",
        {"bike": "97110", "rows": "97110", "gait": "97116"},
        "97110",
        20,
        None,
        "97110",
        True,
        (("97110", 10), ("97116", 10)),
    ),
    (
        "no per-item minutes: the Procedure's code, supported by an item, is kept",
        "lifting crates x5; bridges 2x10; clamshells 2x10",
        {"lifting": "97530", "bridges": "97110", "clamshells": "97110"},
        "97110",
        30,
        "97530",
        "97530",
        True,
        (),
    ),
    (
        "no per-item minutes: the code with the most items",
        "lifting crates x5; bridges 2x10; clamshells 2x10",
        {"lifting": "97530", "bridges": "97110", "clamshells": "97110"},
        "97530",
        30,
        None,
        "97110",
        True,
        (),
    ),
    (
        "no per-item minutes: a tie goes to the engine's code on the whole text",
        "lifting crates x5; bridges 2x10",
        {"lifting": "97530", "bridges": "97110"},
        "97530",
        30,
        None,
        "97530",
        True,
        (),
    ),
    (
        "the Procedure's code unsupported by any item: best supported",
        "rows 2x10; bridges 2x10; tandem walk",
        {"rows": "97110", "bridges": "97110", "tandem": "97112"},
        "97110",
        30,
        "97140",
        "97110",
        True,
        (),
    ),
    (
        "items' minutes above the entry's: no shares",
        "bike 20 min; gait 20 min",
        {"bike": "97110", "gait": "97116"},
        "97110",
        30,
        None,
        "97110",
        True,
        (),
    ),
    (
        "one item without minutes: no shares",
        "bike 8 min; gait drills",
        {"bike": "97110", "gait": "97116"},
        "97116",
        20,
        None,
        "97116",
        True,
        (),
    ),
    (
        "an uncoded item does not count",
        "bike 8 min; HR 110 at rest",
        {"bike": "97110"},
        "97110",
        20,
        None,
        "97110",
        False,
        (),
    ),
    (
        "the engine abstains on the whole text: no code from items",
        "aide ran bike 8 min; gait 12 min",
        {"bike": "97110", "gait": "97116"},
        UNSUPPORTED,
        20,
        None,
        UNSUPPORTED,
        False,
        (),
    ),
    (
        "items that are one intervention in parts (alternatives cover them)",
        "floor to chair transfer x3; lifts cushion",
        {"transfer": ("97530", ("97542",)), "cushion": "97542"},
        "97530",
        20,
        None,
        "97530",
        False,
        (),
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "codes", "whole", "minutes", "coded", "code", "flagged", "shares"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_decision(
    case: str,
    text: str,
    codes: dict[str, str | tuple[str, tuple[str, ...]]],
    whole: str,
    minutes: int | None,
    coded: str | None,
    code: str,
    flagged: bool,
    shares: tuple[tuple[str, int], ...],
) -> None:
    c = decide(text, codes, whole, minutes=minutes, coded=coded)
    assert c.code == code
    assert mixed(c) == flagged
    assert tuple((s.code, s.minutes) for s in c.shares) == shares
    assert [text[it.start : it.end] for it in c.items] == [it.text for it in c.items]
    if flagged:
        (f,) = [f for f in c.findings if f.code == F_MIXED]
        assert f.severity == ("low" if shares else "moderate")
        for it in c.items:  # the finding names the items per code
            if it.code != UNSUPPORTED:
                assert it.code in f.message and it.text in f.message


def test_untimed_minutes_never_make_the_dominant_code():
    c = decide(
        "paraffin 15 min; putty grip 10 min",
        {"paraffin": "97018", "putty": "97110"},
        "97018",
        minutes=25,
        sets=CodeSets(untimed=frozenset({"97018"})),
    )
    assert [(s.code, s.minutes) for s in c.shares] == [("97018", 15), ("97110", 10)]
    assert c.code == "97110"


def test_an_evaluation_or_group_session_is_one_service():
    c = decide(
        "PT eval: hip ROM 2x; gait observed",
        {"hip": "97110", "gait": "97116"},
        "97161",
        sets=CodeSets(session=frozenset({"97161"})),
    )
    assert c.code == "97161" and not mixed(c)


def test_a_heading_contradicting_its_items_is_decided_by_the_items():
    c = decide(
        "Ther act: SLR 2x10; quad sets 2x10",
        {"ther act": "97530", "slr": "97110", "quad sets": "97110"},
        "97530",
    )
    assert c.code == "97110"
    assert F_HEADING in {f.code for f in c.findings}
    assert not mixed(c)


def test_a_heading_over_nothing_coded_is_the_item():
    c = decide(
        "Hinged knee brace fitted, 3rd visit: strap tension adjusted; skin checked",
        {"hinged knee brace fitted, 3rd visit": "97763", "rows": "97110"},
        "97763",
    )
    assert c.code == "97763"
    assert [it.code for it in c.items if it.code != UNSUPPORTED] == ["97763"]


# --- the real classifier on the shipped tables ------------------------------------------------------------


@pytest.fixture(scope="module")
def tables() -> Tables:
    return default_tables()


@pytest.mark.parametrize(
    "text",
    [
        "Bridges 2x15, glutes, blue TB",
        "Gait training 150 ft w/ SPC, cues for step length, CGA",
        "Squats 3x10, lunges 3x10, step-ups 3x10 for quad strength",
        "Exercise | Sets | Load\nLeg press | 3x10 | 40 lb\nHamstring curl | 3x12 | 15 lb",
    ],
)
def test_one_intervention_described_with_commas_is_not_flagged(tables: Tables, text: str) -> None:
    c = classify(Intervention(id="p", text=text), tables)
    assert not mixed(c) and not c.shares
    assert c.items


def test_a_mixed_flowsheet_with_minutes_is_split(tables: Tables) -> None:
    text = (
        "Intervention | Time | Notes\n"
        "Recumbent bike | 10 min | warm-up\n"
        "STM to R upper trapezius | 8 min | trigger points"
    )
    c = classify(Intervention(id="p", text=text, minutes=18), tables)
    assert {(s.code, s.minutes) for s in c.shares} == {("97110", 10), ("97140", 8)}
    assert [it.minutes for it in c.items] == [10, 8]


def test_a_mixed_list_without_minutes_is_flagged(tables: Tables) -> None:
    text = "Grade III PA mobs L4-5; then prone press-ups 2x10 and bird dogs 2x10"
    c = classify(Intervention(id="p", text=text, minutes=30, codings=(Coding(CPT, "97140"),)), tables)
    assert mixed(c) and not c.shares
    assert c.code == "97140"  # the Procedure's code, supported by an item
    assert {it.code for it in c.items} >= {"97140", "97110"}


def test_mixed_entry_findings_and_task_are_written_back() -> None:
    """Scenario 45 through the `ptbill process --bundle` path: the DetectedIssue and the Task are written."""
    bundle = json.loads((SCENARIOS / "45_mixed_entry_without_item_minutes.json").read_text())
    groups, problems = group_bundle(bundle)
    assert problems == []
    out = dry_run_bundle([Group(e, dict(r)) for e, r in groups], default_tables())
    res = [e["resource"] for e in out["entry"]]
    (di,) = [r for r in res if r["resourceType"] == "DetectedIssue" and r["code"]["text"] == F_MIXED]
    assert "97530" in di["detail"] and "97110" in di["detail"] and "SLR 3x10" in di["detail"]
    (task,) = [r for r in res if r["resourceType"] == "Task" and r["code"]["text"] == A_SPLIT_MINUTES]
    assert "minutes" in task["description"] and "97530" in task["description"]


def test_one_item_under_a_category_label_is_coded_by_its_content():
    c = decide(
        "Ther act: SLR 2x10 and quad sets 2x10",
        {"ther act": "97530", "slr": "97110"},
        "97530",
    )
    assert c.code == "97110"
    assert "97530" in c.alternatives  # what the label names stays a defensible alternative
    assert F_HEADING in {f.code for f in c.findings}
    assert [it.text for it in c.items] == ["SLR 2x10 and quad sets 2x10"]


def test_a_label_over_content_that_names_nothing_leaves_the_whole_text_to_decide():
    c = decide("Manual therapy: R knee", {"manual therapy": "97140"}, "97140")
    assert c.code == "97140"
    assert F_HEADING not in {f.code for f in c.findings}
