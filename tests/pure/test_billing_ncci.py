"""NCCI PTP / MUE file loaders (CMS formats) and the official-file override of the seed tables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from integration.billing import (
    OfficialEdits,
    bill,
    load_mue_file,
    load_ptp_file,
    official_edits,
    register_official_edits,
)
from integration.errors import InputError
from integration.model import (
    NUCC,
    Classification,
    ClassifiedIntervention,
    Coding,
    CoverageFacts,
    EncounterFacts,
    Intervention,
    PerformerRef,
    PractitionerFacts,
)
from mappings.loader import Tables

DATA = Path(__file__).resolve().parents[1] / "data" / "ncci"
PTP = DATA / "practitioner_ptp_sample.txt"
MUE = DATA / "MCR_MUE_PractitionerServices_Eff_01-01-2026.csv"
DOS = date(2026, 3, 2)


@pytest.fixture(scope="module")
def tables(billing_tables: Tables) -> Tables:
    return billing_tables


def _facts() -> EncounterFacts:
    return EncounterFacts(
        "enc-1",
        "finished",
        "pat-1",
        DOS,
        (),
        coverages=(CoverageFacts("c", "active", (Coding("https://nahdo.org/sopt", "1"),)),),
        practitioners=(PractitionerFacts("Practitioner/pt", codes=(Coding(NUCC, "225100000X"),)),),
    )


def _ci(pid: str, code: str, minutes: int) -> ClassifiedIntervention:
    itv = Intervention(id=pid, minutes=minutes, performers=(PerformerRef("Practitioner/pt"),))
    return ClassifiedIntervention(itv, Classification(code=code))


def test_load_ptp_file_reads_cms_layout():
    edits = load_ptp_file(PTP)
    rows = {(e.column1, e.column2): e for e in edits}
    assert set(rows) == {("97140", "97530"), ("97530", "97116"), ("97150", "97110"), ("97012", "97140")}
    e = rows[("97140", "97530")]
    assert (e.effective, e.deletion, e.modifier_indicator) == (date(2020, 1, 1), None, 0)
    assert rows[("97150", "97110")].deletion == date(2021, 12, 31)
    assert not rows[("97150", "97110")].active_on(DOS)
    assert rows[("97012", "97140")].modifier_indicator == 9  # the pre-1996 '*' column is skipped
    assert all(e.source.endswith(PTP.name) for e in edits)


def test_load_mue_file_reads_header_and_mai():
    edits = {m.code: m for m in load_mue_file(MUE)}
    assert {c: (m.value, m.mai) for c, m in edits.items()} == {
        "97110": (2, 1),
        "97140": (2, 2),
        "97035": (1, 3),
    }
    assert {m.effective for m in edits.values()} == {date(2026, 1, 1)}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad_indicator.txt", "97140\t97530\t\t20200101\t*\t5\tx\n"),
        ("bad_date.txt", "97140\t97530\t\t2020-13-45\t*\t1\tx\n"),
        ("empty.txt", "just a title line\n"),
    ],
)
def test_ptp_loader_rejects_bad_rows(tmp_path: Path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError):
        load_ptp_file(p)


def test_mue_loader_needs_header(tmp_path: Path):
    p = tmp_path / "mue.csv"
    p.write_text("97110,2,1 Line Edit,Clinical\n")
    with pytest.raises(InputError):
        load_mue_file(p)


def test_official_ptp_overrides_seed(tables: Tables):
    itvs = (_ci("a", "97140", 15), _ci("b", "97530", 15))
    seed = bill(_facts(), itvs, tables)
    assert "ATTEST-59" in {a.code for a in seed.actions}  # seed: indicator 1
    official = OfficialEdits(ptp=tuple(load_ptp_file(PTP)))
    r = bill(_facts(), itvs, tables, edits=official)
    assert "ATTEST-59" not in {a.code for a in r.actions}
    f = [x for x in r.findings if x.code == "NCCI-PTP-NO-MODIFIER"]
    assert f and PTP.name in f[0].message and f[0].line_code == "97530"


def test_deleted_official_edit_not_applied(tables: Tables):
    official = OfficialEdits(ptp=tuple(load_ptp_file(PTP)))
    r = bill(_facts(), (_ci("g", "97150", 30), _ci("a", "97110", 15)), tables, edits=official)
    assert not [a for a in r.actions if a.code == "ATTEST-59"]


@pytest.mark.parametrize(
    ("code", "minutes", "finding", "severity"),
    [
        ("97110", 45, "NCCI-MUE-LINE", "moderate"),
        ("97140", 45, "NCCI-MUE-DOS", "high"),
        ("97035", 23, "NCCI-MUE-DOS", "moderate"),
        ("97110", 30, None, None),
    ],
)
def test_official_mue_per_line_and_per_date(tables: Tables, code: str, minutes: int, finding, severity):
    official = OfficialEdits(mue=tuple(load_mue_file(MUE)))
    r = bill(_facts(), (_ci("a", code, minutes),), tables, edits=official)
    got = [(f.code, f.severity) for f in r.findings if f.code.startswith("NCCI-MUE")]
    assert got == ([(finding, severity)] if finding else [])
    # the units are never cut silently
    assert sum(ln.units for ln in r.lines) == (minutes + 7) // 15


def test_registry_is_used_when_no_edits_passed(tables: Tables):
    itvs = (_ci("a", "97140", 15), _ci("b", "97530", 15))
    assert official_edits() is None
    try:
        register_official_edits(OfficialEdits(ptp=tuple(load_ptp_file(PTP))))
        r = bill(_facts(), itvs, tables)
        assert "NCCI-PTP-NO-MODIFIER" in {f.code for f in r.findings}
    finally:
        register_official_edits(None)
    assert "NCCI-PTP-NO-MODIFIER" not in {f.code for f in bill(_facts(), itvs, tables).findings}
