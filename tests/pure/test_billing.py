"""Billing rules engine: units, modifiers, payer rules, KX, NCCI and documentation alerts.

Tables are the shipped core + billing tables (copied to a temp dir so other concerns' tables in
progress cannot break these tests). Expected money figures are computed from the shipped fee
schedule and KX table rows, never typed in.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from integration.billing import BillingResult, allocate, bill, cms_total_units
from integration.model import (
    NUCC,
    UNSUPPORTED,
    Classification,
    ClassifiedIntervention,
    Coding,
    CoverageFacts,
    EncounterFacts,
    EpisodeFacts,
    Intervention,
    PerformerRef,
    PractitionerFacts,
    PriorCharge,
)
from mappings.loader import Tables

SOPT = "https://nahdo.org/sopt"
DOS = date(2026, 3, 2)


@pytest.fixture(scope="module")
def tables(billing_tables: Tables) -> Tables:
    return billing_tables


PT = PractitionerFacts("Practitioner/pt", codes=(Coding(NUCC, "225100000X"),))
PTA = PractitionerFacts("Practitioner/pta", codes=(Coding(NUCC, "225200000X"),))
OT = PractitionerFacts("Practitioner/ot", codes=(Coding(NUCC, "225X00000X"),))
SLP = PractitionerFacts(
    "PractitionerRole/slp", practitioner="Practitioner/slp", codes=(Coding(NUCC, "235Z00000X"),)
)
STAFF = (PT, PTA, OT, SLP)

MEDICARE = CoverageFacts("cov-mcr", "active", (Coding(SOPT, "1"),), order=1)
AETNA = CoverageFacts(
    "cov-aet", "active", (Coding(SOPT, "5"),), payor_names=("Aetna Choice POS II",), order=1
)
COMMERCIAL = CoverageFacts("cov-com", "active", (Coding(SOPT, "51"),), order=1)
NV_MEDICAID = CoverageFacts(
    "cov-nv", "active", (Coding(SOPT, "2"),), payor_names=("Nevada Medicaid",), order=1
)


def item(
    pid: str,
    code: str,
    minutes: int | None,
    who: tuple[str, ...] = ("pt",),
    start: str | None = None,
    end: str | None = None,
    group_size: int | None = None,
) -> ClassifiedIntervention:
    refs = tuple(PerformerRef(f"Practitioner/{w}") for w in who)
    itv = Intervention(
        id=pid,
        minutes=minutes,
        performers=refs,
        performed_start=start,
        performed_end=end,
        group_size=group_size,
    )
    return ClassifiedIntervention(itv, Classification(code=code))


def facts(*cov: CoverageFacts, dos: date = DOS, **kw: object) -> EncounterFacts:
    return EncounterFacts(
        "enc-1",
        "finished",
        "pat-1",
        dos,
        (),
        coverages=cov or (MEDICARE,),
        practitioners=STAFF,
        **kw,  # type: ignore[arg-type]
    )


def units_by_code(r: BillingResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for ln in r.lines:
        out[ln.code] = out.get(ln.code, 0) + ln.units
    return out


def codes(items: tuple[object, ...]) -> set[str]:
    return {getattr(i, "code") for i in items}  # noqa: B009


# --- units ----------------------------------------------------------------------------------------

# (case, minutes per code, CMS units per code, AMA units per code). Codes absent from an expected
# dict get 0 units. CMS ties go to the lower code number (documented tie-break).
UNIT_CASES = [
    ("CMS ex1", {"97112": 24, "97110": 23}, {"97112": 2, "97110": 1}, {"97112": 2, "97110": 2}),
    ("CMS ex2 tie", {"97112": 20, "97110": 20}, {"97110": 2, "97112": 1}, {"97112": 1, "97110": 1}),
    ("CMS ex3", {"97110": 33, "97140": 7}, {"97110": 2, "97140": 1}, {"97110": 2}),
    (
        "CMS ex4",
        {"97110": 18, "97140": 13, "97116": 10, "97035": 8},
        {"97110": 1, "97140": 1, "97116": 1},
        {"97110": 1, "97140": 1, "97116": 1, "97035": 1},
    ),
    ("CMS ex5 7+7+7", {"97112": 7, "97110": 7, "97140": 7}, {"97110": 1}, {}),
    ("edge 7", {"97110": 7}, {}, {}),
    ("edge 5+4", {"97110": 5, "97140": 4}, {"97110": 1}, {}),
    ("edge 8+8", {"97110": 8, "97140": 8}, {"97110": 1}, {"97110": 1, "97140": 1}),
    ("edge 10+10", {"97110": 10, "97112": 10}, {"97110": 1}, {"97110": 1, "97112": 1}),
    (
        "edge 8+8+8",
        {"97110": 8, "97140": 8, "97035": 8},
        {"97035": 1, "97110": 1},
        {"97110": 1, "97140": 1, "97035": 1},
    ),
    ("edge 22", {"97110": 22}, {"97110": 1}, {"97110": 1}),
    ("edge 23", {"97110": 23}, {"97110": 2}, {"97110": 2}),
]


@pytest.mark.parametrize(("case", "minutes", "cms", "ama"), UNIT_CASES, ids=[c[0] for c in UNIT_CASES])
def test_unit_allocation_both_rules(
    case: str, minutes: dict[str, int], cms: dict[str, int], ama: dict[str, int]
):
    got_cms = {c: u for c, u in allocate(minutes, "CMS").units.items() if u}
    got_ama = {c: u for c, u in allocate(minutes, "AMA").units.items() if u}
    assert got_cms == cms
    assert got_ama == ama
    # CMS never bills more than the pooled total allows.
    assert sum(got_cms.values()) == cms_total_units(sum(minutes.values()))


@pytest.mark.parametrize(
    ("lo", "hi", "units"),
    [
        (0, 7, 0),
        (8, 22, 1),
        (23, 37, 2),
        (38, 52, 3),
        (53, 67, 4),
        (68, 82, 5),
        (83, 97, 6),
        (98, 112, 7),
        (113, 127, 8),
    ],
)
def test_cms_unit_table(lo: int, hi: int, units: int):
    assert cms_total_units(lo) == units
    assert cms_total_units(hi) == units


def test_tie_break_is_stated_in_evidence(tables: Tables):
    r = bill(facts(), (item("a", "97112", 20), item("b", "97110", 20)), tables)
    assert units_by_code(r) == {"97110": 2, "97112": 1}
    assert "BILL-UNITS-TIE" in codes(r.findings)
    assert any("lower code number" in e.value for ln in r.lines for e in ln.evidence)


def test_cms_example4_end_to_end_one_line_per_code(tables: Tables):
    r = bill(
        facts(),
        (item("a", "97110", 18), item("b", "97140", 13), item("c", "97116", 10), item("d", "97035", 8)),
        tables,
    )
    assert units_by_code(r) == {"97110": 1, "97140": 1, "97116": 1}
    assert len(r.lines) == 3
    zero = [f for f in r.findings if f.code == "BILL-UNITS-ZERO"]
    assert zero and "97035" in zero[0].message and zero[0].procedure_ids == ("d",)


def test_same_code_documented_twice_is_one_line(tables: Tables):
    r = bill(facts(), (item("a", "97110", 10), item("b", "97110", 15)), tables)
    assert [(ln.code, ln.units, ln.procedure_ids) for ln in r.lines] == [("97110", 2, ("a", "b"))]


def test_payer_unit_rule_ama_for_strict_commercial(tables: Tables):
    r = bill(facts(AETNA), (item("a", "97110", 8), item("b", "97140", 8), item("c", "97035", 8)), tables)
    assert r.payer_profile == "commercial_strict_ncci_example"
    assert units_by_code(r) == {"97110": 1, "97140": 1, "97035": 1}
    assert {ln.unit_rule for ln in r.lines} == {"AMA"}


def test_untimed_codes_one_unit_and_not_pooled(tables: Tables):
    r = bill(facts(), (item("a", "97161", 45), item("b", "97110", 10)), tables)
    assert units_by_code(r) == {"97161": 1, "97110": 1}
    (ev,) = [ln for ln in r.lines if ln.code == "97161"]
    assert ev.timed is False and ev.unit_rule == "untimed"


def test_unsupported_gets_no_line_and_is_skipped(tables: Tables):
    r = bill(facts(), (item("a", UNSUPPORTED, 20), item("b", "97110", 20)), tables)
    assert units_by_code(r) == {"97110": 1}
    assert [(s.procedure_id, s.reason) for s in r.skipped] == [("a", "unsupported-classification")]


def test_missing_per_code_minutes_allocated_from_documented_total(tables: Tables):
    r = bill(
        facts(documented_total_timed_minutes=45, documented_total_treatment_minutes=45),
        (item("a", "97110", None), item("b", "97140", None), item("c", "97530", 15)),
        tables,
    )
    assert units_by_code(r) == {"97110": 1, "97140": 1, "97530": 1}
    f = [x for x in r.findings if x.code == "BILL-MINUTES-ALLOCATED"]
    assert f and "split evenly" in f[0].message and set(f[0].procedure_ids) == {"a", "b"}


@pytest.mark.parametrize(("cov", "provisional"), [(MEDICARE, True), (AETNA, False)], ids=["CMS", "AMA"])
def test_units_provisional_only_when_minutes_pool(tables: Tables, cov: CoverageFacts, provisional: bool):
    r = bill(facts(cov), (item("a", "97110", 20), item("b", "97140", None)), tables)
    assert units_by_code(r) == {"97110": 1}
    assert ("BILL-UNITS-PROVISIONAL" in codes(r.findings)) is provisional
    assert "DOC-MINUTES" in codes(r.actions)


def test_no_minutes_at_all_no_units_and_action(tables: Tables):
    r = bill(facts(), (item("a", "97110", None), item("b", "97140", None)), tables)
    assert r.lines == ()
    assert "DOC-MINUTES" in codes(r.actions)
    assert {s.reason for s in r.skipped} == {"no-minutes"}


# --- modifiers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "modifier"),
    [(("pt",), "GP"), (("pta",), "GP"), (("ot",), "GO"), (("slp",), "GN")],
)
def test_discipline_modifier_from_performer(tables: Tables, who: tuple[str, ...], modifier: str):
    r = bill(facts(), (item("a", "97110", 30, who),), tables)
    assert all(ln.modifiers[0].code == modifier for ln in r.lines)


def test_discipline_assumed_pt_without_performer(tables: Tables):
    r = bill(facts(), (item("a", "97110", 30, ()),), tables)
    assert r.lines[0].modifiers[0].code == "GP"
    assert "BILL-DISCIPLINE-ASSUMED" in codes(r.findings)
    assert "DOC-PERFORMER" in codes(r.actions)


# (case, interventions (id, code, minutes, performers), expected {(code, has CQ): units})
CQ_CASES = [
    (
        "CMS 23 PTA + 13 PT 97110, 30 PT 97140",
        [("a", "97110", 23, ("pta",)), ("b", "97110", 13, ("pt",)), ("c", "97140", 30, ("pt",))],
        {("97110", True): 1, ("97110", False): 1, ("97140", False): 2},
    ),
    ("PTA alone", [("a", "97110", 30, ("pta",))], {("97110", True): 2}),
    ("PT alone", [("a", "97110", 30, ("pt",))], {("97110", False): 2}),
    ("PT and PTA together = PT time", [("a", "97110", 30, ("pt", "pta"))], {("97110", False): 2}),
    (
        "PTA 1 of 15 min is de minimis",
        [("a", "97110", 1, ("pta",)), ("b", "97110", 14, ("pt",))],
        {("97110", False): 1},
    ),
    (
        "PTA 10 + PT 5: PTA majority",
        [("a", "97110", 10, ("pta",)), ("b", "97110", 5, ("pt",))],
        {("97110", True): 1},
    ),
    (
        "two mixed units 13 + 13",
        [("a", "97110", 13, ("pta",)), ("b", "97110", 13, ("pt",))],
        {("97110", True): 1, ("97110", False): 1},
    ),
]


@pytest.mark.parametrize(("case", "spec", "expected"), CQ_CASES, ids=[c[0] for c in CQ_CASES])
def test_cq_de_minimis(tables: Tables, case: str, spec: list, expected: dict):
    r = bill(facts(), tuple(item(i, c, m, w) for i, c, m, w in spec), tables)
    got = {(ln.code, any(m.code == "CQ" for m in ln.modifiers)): ln.units for ln in r.lines}
    assert got == expected
    for ln in r.lines:
        mods = [m.code for m in ln.modifiers]
        assert mods[0] == "GP"
        if "CQ" in mods:
            assert any("de minimis" in e.value or "assistant" in e.value for e in ln.evidence)


def test_cq_not_before_2020(tables: Tables):
    r = bill(facts(dos=date(2019, 6, 3)), (item("a", "97110", 30, ("pta",)),), tables)
    assert [m.code for m in r.lines[0].modifiers] == ["GP"]


def test_untimed_by_assistant_gets_cq(tables: Tables):
    r = bill(facts(), (item("a", "G0283", 15, ("pta",)),), tables)
    assert [m.code for m in r.lines[0].modifiers] == ["GP", "CQ"]


P = "2026-03-02T09:"


def test_59_only_with_separate_time_blocks(tables: Tables):
    sep = (
        item("a", "97140", 15, start=P + "00:00", end=P + "15:00"),
        item("b", "97530", 15, start=P + "15:00", end=P + "30:00"),
    )
    r = bill(facts(), sep, tables)
    by = {ln.code: [m.code for m in ln.modifiers] for ln in r.lines}
    assert by == {"97140": ["GP"], "97530": ["GP", "59"]}
    assert "ATTEST-59" not in codes(r.actions)


@pytest.mark.parametrize(
    "periods",
    [
        ((P + "00:00", P + "20:00"), (P + "10:00", P + "30:00")),  # overlapping
        ((None, None), (None, None)),  # not documented
        ((P + "00:00", P + "15:00"), (None, None)),  # one side only
    ],
)
def test_59_needs_attestation_without_separate_blocks(tables: Tables, periods):
    (s1, e1), (s2, e2) = periods
    r = bill(
        facts(), (item("a", "97140", 15, start=s1, end=e1), item("b", "97530", 15, start=s2, end=e2)), tables
    )
    assert all(m.code not in ("59", "XE", "XS", "XP", "XU") for ln in r.lines for m in ln.modifiers)
    (act,) = [a for a in r.actions if a.code == "ATTEST-59"]
    assert act.line_code == "97530" and "97140/97530" in act.description


def test_reeval_pair_puts_attestation_on_column2(tables: Tables):
    r = bill(facts(), (item("a", "97164", 20), item("b", "97110", 23)), tables)
    (act,) = [a for a in r.actions if a.code == "ATTEST-59"]
    assert act.line_code == "97164"


def test_strict_payer_pair_appeal_likely(tables: Tables):
    sep = (
        item("a", "97140", 15, start=P + "00:00", end=P + "15:00"),
        item("b", "97530", 15, start=P + "15:00", end=P + "30:00"),
    )
    r = bill(facts(AETNA), sep, tables)
    f = [x for x in r.findings if x.code == "PAYER-DENIES-PAIR-WITH-59"]
    assert f and "appeal" in f[0].message


def test_never_59_and_x_on_one_line(tables: Tables):
    sep = (
        item("a", "97140", 15, start=P + "00:00", end=P + "15:00"),
        item("b", "97530", 15, start=P + "15:00", end=P + "30:00"),
        item("c", "97116", 15, start=P + "30:00", end=P + "45:00"),
    )
    r = bill(facts(), sep, tables)
    for ln in r.lines:
        mods = [m.code for m in ln.modifiers]
        assert not ("59" in mods and {"XE", "XS", "XP", "XU"} & set(mods))
        assert mods.count("59") <= 1


# --- KX -------------------------------------------------------------------------------------------


def _fee(tables: Tables, code: str) -> float:
    return next(r.allowed_amount for r in tables.active("fee_schedule", DOS) if r.code == code)


def _threshold(tables: Tables) -> float:
    return next(
        r.amount for r in tables.active("kx_thresholds", DOS) if r.year == 2026 and r.bucket == "PT_SLP"
    )


@pytest.mark.parametrize(
    ("fraction", "flag"), [(0.5, None), (0.95, "KX-THRESHOLD-NEAR"), (1.2, "KX-THRESHOLD-EXCEEDED")]
)
def test_kx_estimate(tables: Tables, fraction: float, flag: str | None):
    th = _threshold(tables)
    visit = 2 * _fee(tables, "97110")
    prior = [
        PriorCharge("97140", 2, date(2026, 2, 1), "Encounter/old"),
        PriorCharge("97110", 1, date(2025, 12, 1)),
    ]
    prior_amt = 2 * _fee(tables, "97140")  # the 2025 charge is another year
    # the same encounter's own earlier ChargeItem must not be counted twice
    prior.append(PriorCharge("97110", 2, DOS, "Encounter/enc-1", written_by_ptbill=True))
    other = fraction * th - visit - prior_amt
    r = bill(facts(prior_charges=tuple(prior), prior_provider_spend=other), (item("a", "97110", 30),), tables)
    assert all(m.code != "KX" for ln in r.lines for m in ln.modifiers)
    if flag is None:
        assert not r.flags and "ATTEST-KX" not in codes(r.actions)
        return
    (fl,) = r.flags
    assert fl.code == flag and fl.key == "2026-PT_SLP"
    assert f"${th:,.2f}" in fl.message and "ATTEST-KX" in fl.message
    # the estimate and its basis travel with the visit's Task (the patient Flag text is visit-independent)
    (task,) = [a for a in r.actions if a.code == "ATTEST-KX"]
    assert f"${fraction * th:,.2f}" in task.description
    assert "prior-provider spend entered" in task.description and f"${th:,.2f}" in task.description
    assert "scribing.io" in task.description  # the source conflict travels with the 2026 figure


def test_kx_not_for_commercial(tables: Tables):
    r = bill(facts(COMMERCIAL, prior_provider_spend=10_000.0), (item("a", "97110", 30),), tables)
    assert not r.flags and r.payer_profile == "commercial"


# --- payer ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coverages", "profile", "finding"),
    [
        ((MEDICARE,), "medicare", None),
        ((AETNA,), "commercial_strict_ncci_example", None),
        ((COMMERCIAL,), "commercial", None),
        ((NV_MEDICAID,), "medicaid_nv_pt34_example", None),
        ((CoverageFacts("x", "active", (Coding(SOPT, "9"),)),), "default", "BILL-PAYER-UNKNOWN"),
        (
            (CoverageFacts("x", "active", (Coding(SOPT, "1"),), period_end=date(2025, 12, 31)),),
            "default",
            "BILL-PAYER-UNKNOWN",
        ),
        ((CoverageFacts("m", "active", (Coding(SOPT, "111"),)),), "default", "BILL-PAYER-DEFAULT"),
        ((CoverageFacts("m2", "active", (Coding(SOPT, "1"),), order=2), COMMERCIAL), "commercial", None),
        ((CoverageFacts("c", "cancelled", (Coding(SOPT, "5"),)), MEDICARE), "medicare", None),
    ],
)
def test_payer_resolution(tables: Tables, coverages, profile: str, finding: str | None):
    r = bill(facts(*coverages), (item("a", "97110", 15),), tables)
    assert r.payer_profile == profile
    if finding:
        assert finding in codes(r.findings)
    else:
        assert not {"BILL-PAYER-UNKNOWN", "BILL-PAYER-DEFAULT"} & codes(r.findings)


def test_medicare_97014_becomes_g0283(tables: Tables):
    r = bill(facts(), (item("a", "97014", 15),), tables)
    assert units_by_code(r) == {"G0283": 1}
    assert "BILL-CODE-SUBSTITUTED" in codes(r.findings)
    r2 = bill(facts(COMMERCIAL), (item("a", "97014", 15),), tables)
    assert units_by_code(r2) == {"97014": 1}


def test_medicare_97010_bundled_no_line(tables: Tables):
    r = bill(facts(), (item("a", "97010", 10), item("b", "97110", 15)), tables)
    assert units_by_code(r) == {"97110": 1}
    assert "BILL-PAYER-BUNDLED" in codes(r.findings)
    assert ("a", "bundled-by-payer") in {(s.procedure_id, s.reason) for s in r.skipped}


def test_medicaid_unit_cap_and_prior_auth(tables: Tables):
    r = bill(facts(NV_MEDICAID), (item("a", "97110", 45), item("b", "97140", 30)), tables)
    assert sum(units_by_code(r).values()) == 5
    assert "PAYER-UNIT-CAP" in codes(r.findings) and "PAYER-UNIT-CAP" in codes(r.actions)
    assert "PRIOR-AUTH" in codes(r.actions)
    ev_only = bill(facts(NV_MEDICAID), (item("a", "97161", 40),), tables)
    assert "PRIOR-AUTH" not in codes(ev_only.actions)


def test_mue_seed_date_of_service(tables: Tables):
    r = bill(facts(), (item("a", "97035", 45),), tables)
    f = [x for x in r.findings if x.code == "NCCI-MUE-DOS"]
    assert f and "MAI 3" in f[0].message and "SECONDARY" in f[0].message


# --- documentation alerts -------------------------------------------------------------------------


def test_units_vs_documented_totals(tables: Tables):
    r = bill(
        facts(documented_total_timed_minutes=40, documented_total_treatment_minutes=35),
        (item("a", "97110", 53),),
        tables,
    )
    got = codes(r.findings)
    assert {"DOC-UNITS-EXCEED-TOTAL", "DOC-TREATMENT-LT-TIMED"} <= got
    # one discrepancy, one finding: the unit finding names the per-intervention sum too
    assert "DOC-TIMED-MINUTES-MISMATCH" not in got
    (f,) = [x for x in r.findings if x.code == "DOC-UNITS-EXCEED-TOTAL"]
    assert "add up to 53" in f.message and f.severity == "high"


# (per-intervention minutes, documented total timed, payer) -> the one totals finding expected
TOTALS_CASES = [
    ("agree", (20, 15), 35, MEDICARE, None, None),
    ("minutes-differ-units-agree", (23, 22), 47, MEDICARE, "DOC-TIMED-MINUTES-MISMATCH", "low"),
    ("total-supports-more", (17, 18), 38, MEDICARE, "DOC-UNITS-BELOW-TOTAL", "low"),
    ("total-supports-fewer", (20, 18), 36, MEDICARE, "DOC-UNITS-EXCEED-TOTAL", "high"),
    ("ama-minutes-differ", (20, 18), 36, AETNA, "DOC-TIMED-MINUTES-MISMATCH", "moderate"),
]


@pytest.mark.parametrize(
    ("case", "minutes", "total", "cov", "expected", "severity"),
    TOTALS_CASES,
    ids=[c[0] for c in TOTALS_CASES],
)
def test_totals_discrepancy_is_one_finding(
    tables: Tables,
    case: str,
    minutes: tuple[int, int],
    total: int,
    cov: CoverageFacts,
    expected: str | None,
    severity: str | None,
):
    r = bill(
        facts(cov, documented_total_timed_minutes=total, documented_total_treatment_minutes=total + 5),
        (item("a", "97110", minutes[0]), item("b", "97140", minutes[1])),
        tables,
    )
    totals = [f for f in r.findings if f.rule_id == "DOC-TOTALS"]
    assert [(f.code, f.severity) for f in totals] == ([(expected, severity)] if expected else [])


def test_units_below_total_names_unclassifiable_interventions(tables: Tables):
    vague = ClassifiedIntervention(Intervention(id="v", minutes=25), Classification(code=UNSUPPORTED))
    f0 = facts(documented_total_timed_minutes=25, documented_total_treatment_minutes=25)
    r = bill(dataclasses.replace(f0, interventions=(vague.intervention,)), (vague,), tables)
    (f,) = [x for x in r.findings if x.code == "DOC-UNITS-BELOW-TOTAL"]
    assert "1 documented intervention(s) with minutes got no line" in f.message
    assert r.lines == ()


def test_consistent_totals_raise_nothing(tables: Tables):
    r = bill(
        facts(documented_total_timed_minutes=35, documented_total_treatment_minutes=55),
        (item("a", "97110", 20), item("b", "97140", 15), item("c", "97161", 20)),
        tables,
    )
    assert not {f.code for f in r.findings if f.code.startswith("DOC-")}


@pytest.mark.parametrize(
    ("visit", "last", "flag", "action"),
    [
        (10, None, "DOC-PROGRESS-REPORT-DUE", True),
        (9, None, "DOC-PROGRESS-REPORT-SOON", False),
        (15, 10, None, False),
        (20, 10, "DOC-PROGRESS-REPORT-DUE", True),
    ],
)
def test_progress_report(tables: Tables, visit: int, last: int | None, flag: str | None, action: bool):
    ep = EpisodeFacts(
        id="ep1", plan_of_care_certified=DOS, visit_number=visit, last_progress_report_visit=last
    )
    r = bill(facts(episode=ep), (item("a", "97110", 15),), tables)
    assert {f.code for f in r.flags} == ({flag} if flag else set())
    assert ("DOC-PROGRESS-REPORT" in codes(r.actions)) is action


@pytest.mark.parametrize(
    ("dos", "flag", "prio"),
    [
        (date(2026, 4, 5), "DOC-POC-RECERT-OVERDUE", "urgent"),
        (date(2026, 3, 25), "DOC-POC-RECERT-DUE", "routine"),
        (date(2026, 2, 1), None, None),
    ],
)
def test_poc_recertification(tables: Tables, dos: date, flag: str | None, prio: str | None):
    ep = EpisodeFacts(id="ep1", plan_of_care_certified=date(2026, 1, 1))
    r = bill(facts(dos=dos, episode=ep), (item("a", "97110", 15),), tables)
    assert {f.code for f in r.flags} == ({flag} if flag else set())
    acts = [a for a in r.actions if a.code == "DOC-POC-RECERT"]
    assert [a.priority for a in acts] == ([prio] if prio else [])


def test_group_with_one_on_one_in_same_time(tables: Tables):
    r = bill(
        facts(),
        (
            item("g", "97150", 30, start=P + "00:00", end=P + "30:00", group_size=3),
            item("g2", "97150", 10, start=P + "30:00", end=P + "40:00", group_size=3),
            item("a", "97110", 15, start=P + "10:00", end=P + "25:00"),
        ),
        tables,
    )
    assert units_by_code(r)["97150"] == 1
    sev = {f.code: f.severity for f in r.findings}
    assert sev.get("DOC-GROUP-WITH-ONE-ON-ONE") == "high"
    assert "DOC-GROUP-REPEATED" in sev


def test_group_size_below_two(tables: Tables):
    r = bill(facts(), (item("g", "97150", 30, group_size=1),), tables)
    assert any(f.code == "DOC-GROUP-SIZE" and f.severity == "high" for f in r.findings)


def test_every_output_has_rule_and_source(tables: Tables):
    ep = EpisodeFacts(id="ep1", start=date(2025, 11, 1), visit_number=12)
    r = bill(
        facts(episode=ep, prior_provider_spend=5000.0),
        (item("a", "97140", 15), item("b", "97530", 15, ("pta",)), item("c", "97110", None)),
        tables,
    )
    for x in (*r.findings, *r.actions, *r.flags):
        assert x.rule_id and x.source and x.code
    assert r.flags and r.actions and r.findings


def test_no_rules_in_force_for_an_old_date_of_service_suggests_nothing():
    """A visit dated before every payer profile took effect: one finding, no line, nothing guessed."""
    from datetime import date as _date

    from integration.billing import bill as _bill
    from integration.model import Classification, ClassifiedIntervention, EncounterFacts, Intervention
    from mappings.loader import default_tables

    itv = Intervention(id="p-old", text="SLR 3x10", minutes=20, performed_date=_date(2009, 5, 4))
    facts = EncounterFacts("e-old", "finished", "pat", _date(2009, 5, 4), (itv,))
    res = _bill(facts, (ClassifiedIntervention(itv, Classification(code="97110")),), default_tables())
    assert res.lines == ()
    assert [f.code for f in res.findings] == ["BILL-NO-RULES-FOR-DATE"]
    assert res.findings[0].procedure_ids == ("p-old",)
    assert [s.reason for s in res.skipped] == ["no-rules-for-date"]
