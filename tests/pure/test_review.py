"""integration/review: amounts from the fee schedule, a period's figures, and renderings a person can read
(text tables with nothing cut off, HTML that escapes what the server sent, CSV safe for spreadsheets)."""

from __future__ import annotations

import csv
import io
import re

import pytest

from integration.review.csv_lines import COLUMNS, write_csv
from integration.review.html import MAX_BARS, bar_chart, render_html
from integration.review.lookup import code_description, estimated_amount, fees_are_placeholders
from integration.review.model import EncounterView, FindingView, FlagView, LineView, TaskView
from integration.review.read import payer_name, person_name, procedure_text
from integration.review.summary import summarize
from integration.review.text import render_encounter, render_summary, table
from mappings.loader import default_tables


@pytest.fixture(scope="module")
def tables():
    return default_tables()


@pytest.mark.parametrize(
    ("code", "units", "on", "expected"),
    [
        ("97110", 2, "2026-03-02", 60.0),  # shipped example: 30.00 per unit
        ("97110", 0, "2026-03-02", 0.0),
        ("97140", 1, None, 28.0),
        ("97010", 1, "2026-03-02", 5.0),  # every billable code has a fee row
        ("99999", 1, "2026-03-02", None),
    ],
)
def test_estimated_amount(tables, code, units, on, expected):
    assert estimated_amount(tables, code, units, on) == expected


def test_code_description_and_placeholder_fees(tables):
    assert code_description(tables, "97110", "2026-03-02").startswith("Therapeutic exercise")
    assert code_description(tables, "99999") == "(not in billable_codes)"
    assert fees_are_placeholders(tables) is True  # the shipped fee schedule says it is an example


def line(enc: str, code: str, units: int, amount: float | None, **kw) -> LineView:
    base = dict(
        encounter_id=enc,
        date="2026-03-02",
        code=code,
        description=f"desc of {code}",
        units=units,
        modifiers=("GP",),
        minutes=15 * units,
        unit_rule="CMS",
        status="planned",
        evidence=("rule: CMS total-time rule",),
        documented=("ther ex quad sets R knee for strength",),
        therapist="Morgan Exampleton PT",
        payer="Medicare Part B",
        amount=amount,
    )
    base.update(kw)
    return LineView(**base)


def views() -> list[EncounterView]:
    long_meaning = "Therapeutic exercise without its purpose " + "and a very long explanation " * 8
    e1 = EncounterView(
        "e1",
        "2026-03-02",
        "finished",
        "Patient/p1",
        "Medicare Part B",
        (line("e1", "97110", 2, 60.0), line("e1", "97530", 1, 35.0, therapist="Jordan Placeholder PTA")),
        (
            FindingView("e1", "DOC-97110-PURPOSE", "moderate", long_meaning, "preliminary"),
            FindingView(
                "e1", "DOC-UNSUPPORTED-VAGUE", "high", "The note names no intervention.", "preliminary"
            ),
        ),
        (
            TaskView("e1", "ATTEST-59", "Attest distinct time blocks for 97530.", "requested", "routine"),
            TaskView("e1", "ATTEST-KX", "Done already.", "completed", "routine"),
        ),
    )
    e2 = EncounterView(
        "e2",
        "2026-03-03",
        "finished",
        "Patient/p2",
        "Acme Commercial",
        (
            line("e2", "97110", 1, 30.0, payer="Acme Commercial"),
            line("e2", "97010", 1, None, payer="Acme Commercial"),
        ),
        (
            FindingView("e2", "DOC-97110-PURPOSE", "moderate", long_meaning, "preliminary"),
            FindingView("e2", "DOC-97110-BODY-PART", "moderate", "short", "preliminary"),
        ),
        (),
        retired=2,
    )
    return [e1, e2]


def test_summary_per_code_therapist_payer_findings_and_open_tasks():
    s = summarize(views(), since="2026-03-01", until="2026-03-31", placeholder_fees=True)
    assert (s.encounters, s.lines, s.units, s.amount, s.findings_total) == (2, 4, 5, 125.0, 4)
    by_code = {r.key: r for r in s.by_code}
    assert (
        by_code["97110"].units == 3 and by_code["97110"].amount == 90.0 and by_code["97110"].encounters == 2
    )
    assert by_code["97010"].unpriced_lines == 1 and by_code["97010"].amount == 0.0
    assert s.by_code[0].key == "97110"  # largest amount first
    assert {r.key: r.units for r in s.by_therapist} == {
        "Morgan Exampleton PT": 4,
        "Jordan Placeholder PTA": 1,
    }
    assert {r.key: r.amount for r in s.by_payer} == {"Medicare Part B": 95.0, "Acme Commercial": 30.0}
    findings = {f.code: f for f in s.findings}
    assert findings["DOC-97110-PURPOSE"].count == 2 and findings["DOC-97110-PURPOSE"].encounters == 2
    assert findings["DOC-97110-PURPOSE"].meaning.startswith("Therapeutic exercise without its purpose")
    assert s.findings[0].code == "DOC-UNSUPPORTED-VAGUE"  # high severity first
    assert [(t.code, t.count) for t in s.open_tasks] == [("ATTEST-59", 1)]  # the completed one is not open
    assert s.retired == 2


def test_text_summary_hides_nothing():
    s = summarize(views(), since="2026-03-01", until="2026-03-31", placeholder_fees=True)
    text = render_summary(s)
    for needle in ("97110", "97530", "97010", "DOC-97110-PURPOSE", "DOC-UNSUPPORTED-VAGUE", "ATTEST-59"):
        assert needle in text
    assert "$125.00" in text and "EXAMPLE placeholder" in text
    assert "…" not in text.split("FINDINGS")[1]  # meanings are wrapped, never cut off
    flat = " ".join(text.split())
    assert ("and a very long explanation " * 8).strip() in flat
    assert "ATTEST-KX" not in text  # completed: not an open task
    assert "{" not in text  # a table, not a JSON dump


def test_text_encounter_shows_lines_evidence_findings_and_open_tasks():
    v = views()[0]
    text = render_encounter(v, placeholder_fees=False)
    assert "Encounter/e1" in text and "payer Medicare Part B" in text
    assert re.search(r"97110\s+desc of 97110\s+2\s+GP\s+30\s+\$60\.00", text)
    assert 'documented: "ther ex quad sets R knee for strength"' in text
    assert "evidence: rule: CMS total-time rule" in text
    assert "DOC-UNSUPPORTED-VAGUE  [high]" in text and "The note names no intervention." in text
    assert "OPEN TASKS (1;" in text and "ATTEST-59" in text and "(1 closed task(s) not shown)" in text
    assert "ATTEST-KX" not in text


def test_table_wraps_the_last_column():
    lines = table(["a", "b"], [["x", "one two three four five six"]], wrap=9)
    assert lines[2].split() == ["x", "one", "two"]
    assert lines[3].strip() == "three" and lines[4].strip() == "four five" and lines[5].strip() == "six"


def test_html_is_self_contained_escaped_and_has_charts():
    evil = '<script>alert("x")</script>'
    vs = views()
    vs[0] = EncounterView(**{**vs[0].__dict__, "lines": (line("e1", "97110", 2, 60.0, therapist=evil),)})
    s = summarize(vs, since="2026-03-01", until="2026-03-31", placeholder_fees=True)
    html = render_html(s, server="https://emr.example/fhir")
    assert evil not in html and "&lt;script&gt;alert(" in html
    assert "<script" not in html.lower()  # no scripts at all
    assert not re.search(r'(src|href)="https?://', html)  # nothing loaded at view time
    assert "<link" not in html.lower() and "@import" not in html
    for chart in ("chart-code", "chart-therapist", "chart-payer", "chart-findings"):
        assert f'<svg class="chart" id="{chart}"' in html
    for t in ("table-code", "table-therapist", "table-payer", "table-findings", "table-tasks", "table-lines"):
        assert f'<table id="{t}">' in html
    assert html.count("<rect") >= 6


def test_bar_chart_scales_and_folds_the_tail():
    c = bar_chart("c", "t", [(f"k{i}", float(i + 1), str(i + 1), "#000") for i in range(MAX_BARS + 5)])
    assert len(c.bars) == MAX_BARS and c.bars[-1].label == "other (6)"
    one = bar_chart("c", "t", [("a", 10.0, "10", "#000"), ("b", 5.0, "5", "#000"), ("z", 0.0, "0", "#000")])
    assert one.bars[0].width == 2 * one.bars[1].width and one.bars[2].width == 0
    assert one.height > one.top


def test_csv_one_row_per_line_and_formula_safe():
    vs = views()
    vs[1] = EncounterView(
        **{
            **vs[1].__dict__,
            "lines": tuple(line("e2", ln.code, ln.units, ln.amount, payer="=cmd|x") for ln in vs[1].lines),
        }
    )
    out = io.StringIO()
    assert write_csv(vs, out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == COLUMNS
    assert rows[0]["encounter_findings"] == "DOC-97110-PURPOSE;DOC-UNSUPPORTED-VAGUE"
    assert rows[2]["encounter_findings"] == "DOC-97110-BODY-PART;DOC-97110-PURPOSE"
    assert rows[0]["encounter_open_tasks"] == "ATTEST-59"
    assert rows[3]["estimated_amount"] == "" and rows[2]["estimated_amount"] == "30.00"
    assert rows[2]["payer"] == "'=cmd|x"


@pytest.mark.parametrize(
    ("coverages", "on", "expected"),
    [
        ([], "2026-03-02", "(no coverage on file)"),
        ([{"status": "active", "payor": [{"display": "Medicare"}], "order": 1}], None, "Medicare"),
        (
            [
                {"status": "active", "payor": [{"display": "Secondary"}], "order": 2},
                {"status": "active", "payor": [{"display": "Primary"}], "order": 1},
            ],
            "2026-03-02",
            "Primary",
        ),
        (
            [
                {"status": "active", "payor": [{"display": "Old"}], "period": {"end": "2025-12-31"}},
                {"status": "active", "payor": [{"display": "New"}], "period": {"start": "2026-01-01"}},
            ],
            "2026-03-02",
            "New",
        ),
        ([{"status": "cancelled", "payor": [{"display": "Gone"}]}], "2026-03-02", "(no coverage on file)"),
        ([{"status": "active", "type": {"coding": [{"display": "MEDICAID"}]}}], None, "MEDICAID"),
    ],
)
def test_payer_name(coverages, on, expected):
    assert payer_name(coverages, on) == expected


def test_person_name_and_procedure_text():
    assert person_name({"name": [{"given": ["Morgan"], "family": "Exampleton", "suffix": ["PT"]}]}) == (
        "Morgan Exampleton PT"
    )
    assert person_name({"name": [{"text": "Dr. Who"}]}) == "Dr. Who"
    assert person_name({}) is None
    assert procedure_text({"code": {"text": "ther ex"}, "note": [{"text": "R knee"}]}) == "ther ex — R knee"
    assert procedure_text({"code": {"coding": [{"display": "Gait training"}]}}) == "Gait training"
    assert procedure_text({}) is None


def test_flags_are_counted():
    s = summarize(
        views(),
        since="a",
        until="b",
        placeholder_fees=False,
        flags=[FlagView("KX-THRESHOLD-NEAR", "near", "active")] * 3,
    )
    assert [(f.code, f.count) for f in s.flags] == [("KX-THRESHOLD-NEAR", 3)]
