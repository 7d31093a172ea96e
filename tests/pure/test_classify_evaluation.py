"""Evaluation complexity (PT 97161-97163, OT 97165-97167) from the documented components: the lowest level
met by every component; a component the note does not document never lifts the level (the finding names it
so a person can attest). Notes written for these tests."""

from __future__ import annotations

import pytest

from integration.classify import classify
from integration.classify.wider import F_EVAL_COMPLEXITY
from integration.model import Intervention
from mappings.loader import Tables, default_tables

# (note, code, finding expected)
CASES: list[tuple[str, str, bool]] = [
    # --- PT: every component documented ---------------------------------------------------------
    (
        "PT initial evaluation: 41 y/o with acute low back pain after lifting; no comorbidities or personal "
        "factors affecting the plan of care. Exam: lumbar ROM, ODI 30%. Presentation stable.",
        "97161",
        False,
    ),
    (
        "Initial PT eval, 58 y/o s/p R TKA: obesity and lives alone, both affecting the plan. "
        "Exam: knee ROM, quad strength, gait, TUG. Presentation evolving with swelling that changes daily.",
        "97162",
        False,
    ),
    (
        "PT eval: 80 y/o after hip fracture. CHF, COPD on home O2, diabetes, lives alone upstairs. "
        "Exam: hip ROM, strength, sitting balance, standing balance, transfers, gait, skin. Presentation "
        "unstable, SpO2 drops with exertion.",
        "97163",
        False,
    ),
    # the lowest component decides: a large exam does not lift a stable, uncomplicated case
    (
        "PT evaluation: 25 y/o runner, patellofemoral pain; no PMH. Exam: knee ROM, hip strength, single leg "
        "stance, step down quality, LEFS 61. Stable.",
        "97161",
        False,
    ),
    # stated level capped by what is documented
    (
        "PT eval, high complexity. 30 y/o ankle sprain, no comorbidities. Exam: ankle ROM. Stable.",
        "97161",
        True,
    ),
    # --- PT: a component not documented -> the lowest level, with the finding ----------------------
    (
        "PT initial evaluation: 67 y/o, diabetes and neuropathy and a fall history. "
        "Exam: sensation, balance, gait, strength.",
        "97161",
        True,
    ),
    ("Initial evaluation completed, POC established", "97161", True),
    # --- OT ------------------------------------------------------------------------------------------
    (
        "OT evaluation: 45 y/o, distal radius fracture; brief history from the referral. "
        "Performance deficits: dressing, cooking (2). No comorbidities. Completed testing without "
        "modification. Limited treatment options, protocol based.",
        "97165",
        False,
    ),
    (
        "OT eval: 71 y/o after stroke; expanded review of hospital records. Performance deficits: bathing, "
        "dressing, meal prep, medication management (4). Depression affects performance. Needed rest breaks "
        "and minimal assist during the assessment. Several treatment options considered.",
        "97166",
        False,
    ),
    (
        "OT evaluation: 52 y/o, multiple trauma; extensive review of ICU and surgical records. Deficits: "
        "feeding, grooming, toileting, dressing, bathing, writing, driving (7). Diabetes and PTSD affect "
        "performance. Significant assistance and modified testing required. Multiple treatment options.",
        "97167",
        False,
    ),
    # template: only checked boxes document anything; lists under their own headings
    (
        "PT EVAL | Personal factors: lives alone; Comorbidities: DM, HTN | Exam: ROM, strength, gait, "
        "balance | Presentation: [x] stable [ ] evolving [ ] unstable",
        "97161",
        False,
    ),
    (
        "PT EVAL | Personal factors: lives alone; Comorbidities: DM, HTN. Exam: ROM, strength, gait, "
        "balance. Presentation: [ ] stable [ ] evolving [x] unstable",
        "97163",
        False,
    ),
    (
        "PT eval. Factors affecting POC: 2. Exam: hip ROM, hip strength, gait. Presentation evolving.",
        "97162",
        False,
    ),
    (
        "OT evaluation: brief history, 2 performance deficits, no comorbidities; multiple treatment options.",
        "97165",
        True,
    ),
]


@pytest.fixture(scope="module")
def tables() -> Tables:
    return default_tables()


@pytest.mark.parametrize(("text", "code", "finding"), CASES, ids=[c[0][:40] for c in CASES])
def test_evaluation_level(tables: Tables, text: str, code: str, finding: bool) -> None:
    c = classify(Intervention(id="p", text=text), tables)
    assert c.code == code, (c.code, [e.value for e in c.evidence])
    assert (F_EVAL_COMPLEXITY in {f.code for f in c.findings}) is finding, c.findings


def test_missing_component_names_it_and_what_the_rest_supports(tables: Tables) -> None:
    text = (
        "PT eval: 70 y/o, COPD, CHF and osteoporosis affecting the plan. Exam: strength, balance, gait, "
        "transfers, endurance."
    )
    c = classify(Intervention(id="p", text=text), tables)
    assert c.code == "97161"
    assert {"97162", "97163"} <= set(c.alternatives)
    (f,) = [f for f in c.findings if f.code == F_EVAL_COMPLEXITY]
    assert "clinical presentation" in f.message and "97163" in f.message


@pytest.mark.parametrize(
    "text",
    [
        "PT eval " + "deficits " * 400_000,
        "OT eval deficits: " + "(" * 200_000,
        "PT eval Exam: " + "a, " * 300_000,
    ],
    ids=["repeated-word", "parens", "long-list"],
)
def test_huge_evaluation_text_is_bounded(tables: Tables, text: str) -> None:
    import time

    t0 = time.process_time()
    c = classify(Intervention(id="p", text=text), tables)
    assert c.code in ("97161", "97162", "97163", "97165", "97166", "97167")
    assert time.process_time() - t0 < 20
