"""Classifier: table validation, dev-set targets, CLI contract, therapy relevance on real FHIR data."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from integration.classify import classify, therapy_relevance
from integration.classify.cli import classify_main, eval_main
from integration.errors import MappingTableError
from integration.model import CPT, SNOMED, Coding, Intervention
from mappings.loader import MAPPINGS_DIR, Tables, default_tables, load_tables

REPO = Path(__file__).resolve().parents[2]
DEV = REPO.parent / "shared/eval/dev.jsonl"
FHIR = REPO.parent / "shared/fhir-data"


@pytest.fixture(scope="module")
def tables() -> Tables:
    return default_tables()


# --- tables --------------------------------------------------------------------------------------


def test_shipped_tables_load(tables: Tables) -> None:
    assert "classify_rules" in tables and "classify_lex_gait" in tables
    assert len(tables["classify_rules"].rows) > 30


def _broken_copy(tmp_path: Path, rel: str, old: str, new: str) -> Path:
    root = tmp_path / "mappings"
    shutil.copytree(MAPPINGS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    f = root / rel
    text = f.read_text()
    assert old in text
    f.write_text(text.replace(old, new, 1))
    return root


@pytest.mark.parametrize(
    ("rel", "old", "new", "expect"),
    [
        # duplicate rule id (key)
        (
            "classify/rules.yaml",
            "id: R-EVAL-HIGH,",
            "id: R-EVAL-RE,",
            ["classify/rules.yaml", "R-EVAL-RE", "duplicate key"],
        ),
        # bad date
        (
            "classify/concepts.yaml",
            'label: "therapeutic activities", source: *C, effective: "2017-01-01"',
            'label: "therapeutic activities", source: *C, effective: "2017-13-01"',
            ["classify/concepts.yaml", "ther_act"],
        ),
        # unknown cross-reference: a rule names a missing concept
        (
            "classify/rules.yaml",
            "id: R-MOD-IONTO, order: 43, concept: ionto,",
            "id: R-MOD-IONTO, order: 43, concept: iontoX,",
            ["classify/rules.yaml", "R-MOD-IONTO", "unknown concept 'iontoX'"],
        ),
        # unknown cross-reference: a lexicon maps to a missing signal
        (
            "classify/lex_gait.yaml",
            "id: gait.curb, signal: gait.curb,",
            "id: gait.curb, signal: gait.kerb,",
            ["classify/lex_gait.yaml", "gait.curb", "unknown signal 'gait.kerb'"],
        ),
    ],
    ids=["duplicate-key", "bad-date", "unknown-concept", "unknown-signal"],
)
def test_broken_tables_are_rejected_with_file_and_row(
    tmp_path: Path, rel: str, old: str, new: str, expect: list[str]
) -> None:
    root = _broken_copy(tmp_path, rel, old, new)
    with pytest.raises(MappingTableError) as ei:
        load_tables(root)
    msg = str(ei.value)
    for part in expect:
        assert part in msg, msg


def test_missing_source_is_rejected(tmp_path: Path) -> None:
    root = _broken_copy(
        tmp_path, "classify/code_map.yaml", 'source: "SYNTHEA_CODES.md (2025 bulk data)"', 'source: ""'
    )
    with pytest.raises(MappingTableError) as ei:
        load_tables(root)
    assert "classify/code_map.yaml" in str(ei.value) and "source" in str(ei.value)


def test_rule_with_unknown_signal_is_rejected(tmp_path: Path) -> None:
    root = _broken_copy(tmp_path, "classify/rules.yaml", "all: [modality.ionto]", "all: [modality.iontox]")
    with pytest.raises(MappingTableError) as ei:
        load_tables(root)
    assert "R-MOD-IONTO" in str(ei.value) and "modality.iontox" in str(ei.value)


def test_bad_phrase_token_is_rejected(tmp_path: Path) -> None:
    root = _broken_copy(tmp_path, "classify/lex_group.yaml", '"group therapy"', '"Group-Therapy"')
    with pytest.raises(MappingTableError) as ei:
        load_tables(root)
    assert "classify/lex_group.yaml" in str(ei.value) and "grp.session" in str(ei.value)


# --- dev set targets ----------------------------------------------------------------------------


@pytest.mark.skipif(not DEV.exists(), reason="shared/eval/dev.jsonl not present beside the clone")
def test_dev_set_targets(tables: Tables) -> None:
    out = io.StringIO()
    assert eval_main(str(DEV), out, tables) == 0
    last = out.getvalue().strip().splitlines()[-1]
    figures = dict(kv.split("=") for kv in last.split())
    assert float(figures["lenient"]) >= 0.95
    assert float(figures["strict"]) >= 0.90
    assert float(figures["unsupported_recall"]) >= 0.90
    assert float(figures["unsupported_precision"]) >= 0.90
    assert int(figures["n"]) == sum(1 for line in DEV.read_text().splitlines() if line.strip())


# --- CLI ------------------------------------------------------------------------------------------


def test_classify_main_one_line_per_input_in_order(tmp_path: Path, tables: Tables) -> None:
    lines = [
        json.dumps(
            {"id": "a", "text": "SLR 3x10 R knee for quad strength", "body_site": "right knee", "minutes": 10}
        ),
        "{not json",
        json.dumps({"id": "c", "text": 5}),
        json.dumps({"id": "d", "text": "", "codings": [{"system": CPT, "code": "97140"}]}),
        json.dumps(["x"]),
        json.dumps({"id": "f", "text": "see flowsheet", "body_site": None, "minutes": None}),
    ]
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    assert classify_main(str(f), out, tables) == 0
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["id"] for r in rows] == ["a", "line-2", "c", "d", "line-5", "f"]
    assert [r["code"] for r in rows] == [
        "97110",
        "UNSUPPORTED",
        "UNSUPPORTED",
        "97140",
        "UNSUPPORTED",
        "UNSUPPORTED",
    ]
    for r in rows:
        assert set(r) == {
            "id",
            "code",
            "alternatives",
            "confidence",
            "evidence",
            "findings",
            "items",
            "shares",
        }
    assert rows[1]["findings"][0]["code"] == "INPUT-INVALID"
    assert "text" in rows[2]["findings"][0]["message"]


def test_eval_main_reports_headline_last(tmp_path: Path, tables: Tables) -> None:
    cases = [
        {"id": "1", "text": "SLR 3x10", "expected_code": "97110", "acceptable_codes": ["97110"]},
        {"id": "2", "text": "Transfer training", "expected_code": "97530", "acceptable_codes": ["97530"]},
        {
            "id": "3",
            "text": "see flowsheet",
            "expected_code": "UNSUPPORTED",
            "acceptable_codes": ["UNSUPPORTED"],
        },
        {
            "id": "4",
            "text": "Stair training w/ rails",
            "expected_code": "97530",
            "acceptable_codes": ["97530", "97116"],
        },
    ]
    f = tmp_path / "e.jsonl"
    f.write_text("\n".join(json.dumps(c) for c in cases))
    out = io.StringIO()
    eval_main(str(f), out, tables)
    text = out.getvalue()
    assert "97110<->97530" in text and "4 97530 97116 lenient-ok" in text
    assert text.strip().splitlines()[-1] == (
        "strict=0.750 lenient=1.000 unsupported_precision=1.000 unsupported_recall=1.000 n=4"
    )


# --- therapy relevance --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("itv", "relevant"),
    [
        (
            Intervention(id="1", text="Appendectomy", codings=(Coding(SNOMED, "80146002", "Appendectomy"),)),
            False,
        ),
        (Intervention(id="2", text="Colonoscopy"), False),
        (Intervention(id="3", text="Vaccination for diphtheria, pertussis, and tetanus"), False),
        (Intervention(id="4", text="Ultrasound scan for fetal viability"), False),
        (Intervention(id="5", text="Biopsy of soft tissue of forearm (Procedure)"), False),
        (Intervention(id="6", text="Pulmonary rehabilitation (regime/therapy)"), False),
        (
            Intervention(
                id="7", codings=(Coding(SNOMED, "699253003", "Surgical manipulation of joint of knee"),)
            ),
            False,
        ),
        (Intervention(id="8", text="Gait training (regime/therapy)"), True),
        (Intervention(id="9", codings=(Coding(CPT, "97110", None),)), True),
        (Intervention(id="10", codings=(Coding(SNOMED, "229064008", "Movement therapy"),)), True),
        (Intervention(id="11", text="SLR 3x10, LAQ 3x10"), True),
        (Intervention(id="12", text="Assessment of passive range of motion"), True),
    ],
)
def test_therapy_relevance(tables: Tables, itv: Intervention, relevant: bool) -> None:
    r = therapy_relevance(itv, tables)
    assert (r is None) is relevant, r
    if not relevant:
        assert r == "not-therapy"


def _procedures() -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for p in sorted((FHIR / "synthea-smart-r4-subset").glob("*.json")):
        for e in json.loads(p.read_text()).get("entry", []):
            if e.get("resource", {}).get("resourceType") == "Procedure":
                found.append(e["resource"])
    nd = FHIR / "synthea-bulk-10-patients/Procedure.000.ndjson"
    if nd.exists():
        found.extend(json.loads(line) for line in nd.read_text().splitlines() if line.strip())
    return found


def _itv(res: dict[str, object]) -> Intervention:
    code = res.get("code") or {}
    assert isinstance(code, dict)
    codings = tuple(Coding(c.get("system"), c.get("code"), c.get("display")) for c in code.get("coding", []))
    return Intervention(id=str(res.get("id")), text=code.get("text") or "", codings=codings)


@pytest.mark.skipif(not (FHIR / "synthea-smart-r4-subset").exists(), reason="shared/fhir-data not present")
def test_synthea_procedures_are_mostly_not_therapy(tables: Tables) -> None:
    procs = _procedures()
    assert procs
    reasons = Counter(therapy_relevance(_itv(p), tables) for p in procs)
    relevant = reasons[None]
    assert relevant / len(procs) < 0.05, reasons
    # the therapy ones that do exist in the bulk data are recognised
    movement = [p for p in procs if "229064008" in json.dumps(p.get("code"))]
    assert all(therapy_relevance(_itv(p), tables) is None for p in movement)


def test_classification_is_deterministic_and_cached(tables: Tables) -> None:
    itv = Intervention(id="x", text="Gait training w/ RW, cues for step length")
    assert classify(itv, tables) == classify(itv, tables)
