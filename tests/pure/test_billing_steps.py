"""Billing steps added with the step split: time counted once, mixed-entry shares, payer code substitutions
in both directions, add-on codes, plans of care from the code table, the order of the steps.

Expected units are worked out by hand from the CMS rules (minutes -> units per billing-rules.md §2) and
the shipped core + billing tables, never read back from the engine.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integration.billing import STEPS, BillingResult, bill
from integration.billing.steps import add_ons, payer, time_accounting, units
from integration.billing.timeline import Block, count_once, split_minutes
from integration.model import (
    NUCC,
    UNSUPPORTED,
    Classification,
    ClassifiedIntervention,
    CodeShare,
    Coding,
    CoverageFacts,
    EncounterFacts,
    Intervention,
    PerformerRef,
    PractitionerFacts,
)
from mappings.loader import Tables

SOPT = "https://nahdo.org/sopt"
DOS = date(2026, 3, 2)
DAY = "2026-03-02T"
TZ = "-07:00"

PT = PractitionerFacts("Practitioner/pt", codes=(Coding(NUCC, "225100000X"),))
PTA = PractitionerFacts("Practitioner/pta", codes=(Coding(NUCC, "225200000X"),))
OT = PractitionerFacts("Practitioner/ot", codes=(Coding(NUCC, "225X00000X"),))
OTA = PractitionerFacts("Practitioner/ota", codes=(Coding(NUCC, "224Z00000X"),))
SLP = PractitionerFacts("Practitioner/slp", codes=(Coding(NUCC, "235Z00000X"),))
STAFF = (PT, PTA, OT, OTA, SLP)

MEDICARE = CoverageFacts("cov-mcr", "active", (Coding(SOPT, "1"),), order=1)
COMMERCIAL = CoverageFacts("cov-com", "active", (Coding(SOPT, "51"),), order=1)
AETNA = CoverageFacts("cov-aet", "active", (Coding(SOPT, "5"),), payor_names=("Aetna Choice POS II",))
UHC = CoverageFacts("cov-uhc", "active", (Coding(SOPT, "5"),), payor_names=("UnitedHealthcare Choice Plus",))
UNKNOWN = CoverageFacts("cov-x", "active", (Coding(SOPT, "9"),))


@pytest.fixture(scope="module")
def tables(billing_tables: Tables) -> Tables:
    return billing_tables


def proc(
    pid: str,
    code: str,
    start: str | None,
    end: str | None,
    who: tuple[str, ...] = ("pt",),
    minutes: int | None = None,
    shares: tuple[CodeShare, ...] = (),
) -> ClassifiedIntervention:
    """A classified Procedure; minutes are the performed period's length (as extraction computes them)."""
    s = DAY + start + ":00" + TZ if start else None
    e = DAY + end + ":00" + TZ if end else None
    if minutes is None and s and e:
        minutes = int((datetime.fromisoformat(e) - datetime.fromisoformat(s)).total_seconds() // 60)
    itv = Intervention(
        id=pid,
        minutes=minutes,
        performed_start=s,
        performed_end=e,
        performers=tuple(PerformerRef(f"Practitioner/{w}") for w in who),
    )
    return ClassifiedIntervention(itv, Classification(code=code, shares=shares))


def run(
    *cis: ClassifiedIntervention, cov: CoverageFacts = MEDICARE, tables: Tables, **kw: object
) -> BillingResult:
    facts = EncounterFacts(
        "enc-1",
        "finished",
        "pat-1",
        DOS,
        tuple(ci.intervention for ci in cis),
        coverages=(cov,),
        practitioners=STAFF,
        **kw,  # type: ignore[arg-type]
    )
    return bill(facts, cis, tables)


def lines(r: BillingResult) -> list[tuple[str, int, tuple[str, ...]]]:
    return sorted((ln.code, ln.units, tuple(m.code for m in ln.modifiers)) for ln in r.lines)


def minutes_by_code(r: BillingResult) -> dict[str, int | None]:
    return {ln.code: ln.minutes for ln in r.lines}


def codes(items: tuple[object, ...]) -> set[str]:
    return {getattr(i, "code") for i in items}  # noqa: B009


# --- time accounting --------------------------------------------------------------------------------

# (case, procedures (id, code, start, end, performers), expected lines, expected counted minutes per code,
#  overlap finding + Task expected, joint-time finding expected)
OVERLAP_CASES = [
    (
        "partial overlap: the later service keeps the shared 10 min",  # 25 + 25 documented, 40 clock
        [("a", "97110", "09:00", "09:25", ("pt",)), ("b", "97140", "09:15", "09:40", ("pt",))],
        [("97110", 1, ("GP",)), ("97140", 2, ("GP",))],  # 15 + 25 = 40 -> 3; leftover to 97140 (rem 10)
        {"97110": 15, "97140": 25},
        True,
        False,
    ),
    (
        "one period inside another keeps its minutes",  # 40 + 10 documented, 40 clock
        [("a", "97110", "09:00", "09:40", ("pt",)), ("b", "97140", "09:10", "09:20", ("pt",))],
        [("97110", 2, ("GP",)), ("97140", 1, ("GP",))],  # 30 + 10 = 40 -> 3; leftover to 97140 (rem 10)
        {"97110": 30, "97140": 10},
        True,
        False,
    ),
    (
        "identical periods: counted once, for the lower code",  # 20 + 20 documented, 20 clock
        [("a", "97112", "09:00", "09:20", ("pt",)), ("b", "97110", "09:00", "09:20", ("pt",))],
        [("97110", 1, ("GP",))],
        {"97110": 20},
        True,
        False,
    ),
    (
        "PT and PTA overlapping on the same code: union, joint time is PT time",  # PT 20, PTA alone 10
        [("a", "97110", "09:00", "09:20", ("pt",)), ("b", "97110", "09:10", "09:30", ("pta",))],
        # 30 min -> 2 units: PT's full unit; the last unit PTA 10 vs PT 5 min -> CQ
        [("97110", 1, ("GP",)), ("97110", 1, ("GP", "CQ"))],
        {"97110": 30},
        False,
        True,
    ),
    (
        "PT and PTA together the whole time: all therapist time",
        [("a", "97110", "09:00", "09:20", ("pt",)), ("b", "97110", "09:00", "09:20", ("pta",))],
        [("97110", 1, ("GP",))],
        {"97110": 20},
        False,
        True,
    ),
    (
        "the same code documented twice by one PT: counted once, and flagged",
        [("a", "97110", "09:00", "09:30", ("pt",)), ("b", "97110", "09:20", "09:40", ("pt",))],
        [("97110", 3, ("GP",))],  # 40 min of clock time -> 3 units (not 50 -> 3 by luck: see minutes)
        {"97110": 40},
        True,
        False,
    ),
    (
        "three services, the middle one nested",
        [
            ("a", "97110", "09:00", "09:30", ("pt",)),
            ("b", "97112", "09:10", "09:20", ("pt",)),
            ("c", "97530", "09:25", "09:45", ("pt",)),
        ],
        # 97110 09:00-09:10 + 09:20-09:25 = 15; 97112 10; 97530 20 -> 45 min -> 3 units:
        # whole: 97110 1, 97530 1; leftover to the largest remainder 97112 (10) over 97530 (5)
        [("97110", 1, ("GP",)), ("97112", 1, ("GP",)), ("97530", 1, ("GP",))],
        {"97110": 15, "97112": 10, "97530": 20},
        True,
        False,
    ),
    (
        "back to back: nothing to correct",
        [("a", "97110", "09:00", "09:23", ("pt",)), ("b", "97112", "09:23", "09:47", ("pt",))],
        [("97110", 1, ("GP",)), ("97112", 2, ("GP",))],
        {"97110": 23, "97112": 24},
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("case", "spec", "expected", "counted", "overlap", "joint"),
    OVERLAP_CASES,
    ids=[c[0] for c in OVERLAP_CASES],
)
def test_time_counted_once(
    tables: Tables,
    case: str,
    spec: list[tuple[str, str, str, str, tuple[str, ...]]],
    expected: list[tuple[str, int, tuple[str, ...]]],
    counted: dict[str, int],
    overlap: bool,
    joint: bool,
):
    r = run(*(proc(p, c, s, e, w) for p, c, s, e, w in spec), tables=tables)
    assert lines(r) == sorted(expected)
    assert {c: m for c, m in minutes_by_code(r).items()} == counted
    clock = _clock_minutes([(s, e) for _, _, s, e, _ in spec])
    assert sum(counted.values()) <= clock  # timed minutes never exceed the clock time covered
    assert (time_accounting.F_OVERLAP in codes(r.findings)) is overlap
    assert (time_accounting.A_CORRECT_TIMES in codes(r.actions)) is overlap
    assert (time_accounting.F_JOINT in codes(r.findings)) is joint
    if overlap:
        (f,) = [x for x in r.findings if x.code == time_accounting.F_OVERLAP]
        assert "overlap by" in f.message and "begun later" in f.message
        (task,) = [a for a in r.actions if a.code == time_accounting.A_CORRECT_TIMES]
        assert set(task.procedure_ids) <= {p for p, *_ in spec} and task.priority == "urgent"


def _clock_minutes(periods: list[tuple[str, str]]) -> int:
    marks = sorted(
        (datetime.fromisoformat(DAY + s + ":00"), datetime.fromisoformat(DAY + e + ":00")) for s, e in periods
    )
    total, cur_s, cur_e = 0.0, marks[0][0], marks[0][1]
    for s, e in marks[1:]:
        if s > cur_e:
            total += (cur_e - cur_s).total_seconds()
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    total += (cur_e - cur_s).total_seconds()
    return int(total // 60)


def test_ama_units_run_on_the_corrected_minutes(tables: Tables):
    # Aetna profile: AMA per code. 97110 09:00-09:25 (25) and 97112 09:15-09:30 nested at the end:
    # 97110 keeps 09:00-09:15 = 15 -> 1 unit, 97112 15 -> 1 unit (uncorrected: 25 -> 2 for 97110)
    r = run(
        proc("a", "97110", "09:00", "09:25"), proc("b", "97112", "09:15", "09:30"), cov=AETNA, tables=tables
    )
    assert lines(r) == [("97110", 1, ("GP",)), ("97112", 1, ("GP",))]
    assert {ln.unit_rule for ln in r.lines} == {"AMA"}


def test_a_half_minute_of_overlap_changes_nothing(tables: Tables):
    a = proc("a", "97110", "09:00", "09:15")
    b = proc("b", "97140", "09:15", "09:30")
    a = ClassifiedIntervention(
        Intervention(
            "a", minutes=15, performed_start=DAY + "09:00:00" + TZ, performed_end=DAY + "09:15:30" + TZ
        ),
        a.classification,
    )
    r = run(a, b, tables=tables)
    assert minutes_by_code(r) == {"97110": 15, "97140": 15}
    assert time_accounting.F_OVERLAP not in codes(r.findings)


def test_untimed_services_do_not_enter_time_accounting(tables: Tables):
    # unattended e-stim while exercising: untimed minutes count toward treatment time only
    r = run(proc("a", "97110", "09:00", "09:15"), proc("b", "G0283", "09:00", "09:15"), tables=tables)
    assert lines(r) == [("97110", 1, ("GP",)), ("G0283", 1, ("GP",))]
    assert time_accounting.F_OVERLAP not in codes(r.findings)


def test_minutes_without_periods_stay_as_documented(tables: Tables):
    r = run(proc("a", "97110", None, None, minutes=20), proc("b", "97140", "09:00", "09:20"), tables=tables)
    assert minutes_by_code(r) == {"97110": 20, "97140": 20}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 90),
            st.integers(1, 45),
            st.sampled_from(["97110", "97112", "97140"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_count_once_never_exceeds_clock_time(spec: list[tuple[int, int, str, bool]]):
    t0 = datetime(2026, 3, 2, 9, 0)
    blocks = [
        Block(f"p{i}", t0 + timedelta(minutes=s), t0 + timedelta(minutes=s + d), (code,), therapist)
        for i, (s, d, code, therapist) in enumerate(spec)
    ]
    kept = count_once(blocks)
    union: set[int] = set()
    for s, d, _, _ in spec:
        union |= set(range(s, s + d))
    assert sum(kept.values()) == pytest.approx(len(union) * 60)
    for b in blocks:
        assert 0 <= kept[b.key] <= (b.end - b.start).total_seconds()


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [(30, [20, 20], [15, 15]), (40, [20, 20], [20, 20]), (25, [20, 10], [17, 8]), (10, [5, 5, 5], [4, 3, 3])],
)
def test_split_minutes_in_proportion(total: int, parts: list[int], expected: list[int]):
    assert split_minutes(total, parts) == expected


# --- mixed entries: one item per code share -----------------------------------------------------------


def test_shares_become_one_line_per_code(tables: Tables):
    shares = (CodeShare("97110", 20, (0, 1)), CodeShare("97116", 20, (2,)))
    r = run(proc("m", "97110", "09:00", "09:40", shares=shares), tables=tables)
    # 40 min -> 3 units; 20 + 20: whole 1 + 1, the tie of remainders goes to the lower code
    assert lines(r) == [("97110", 2, ("GP",)), ("97116", 1, ("GP",))]
    assert {ln.procedure_ids for ln in r.lines} == {("m",)}
    assert minutes_by_code(r) == {"97110": 20, "97116": 20}
    (ev,) = [e.value for ln in r.lines if ln.code == "97116" for e in ln.evidence if "mixed entry" in e.value]
    assert "Procedure m: 20 min documented, documented items 2" in ev


def test_empty_shares_bill_the_classification_code_and_procedure_minutes(tables: Tables):
    r = run(proc("m", "97110", "09:00", "09:40"), tables=tables)
    assert lines(r) == [("97110", 3, ("GP",))]


def test_shares_beyond_the_period_are_cut_in_proportion(tables: Tables):
    shares = (CodeShare("97110", 20), CodeShare("97116", 20))
    r = run(proc("m", "97110", "09:00", "09:30", shares=shares), tables=tables)
    assert minutes_by_code(r) == {"97110": 15, "97116": 15}
    assert lines(r) == [("97110", 1, ("GP",)), ("97116", 1, ("GP",))]
    assert time_accounting.F_SHARES_EXCEED in codes(r.findings)
    assert time_accounting.A_CORRECT_TIMES in codes(r.actions)


def test_shares_go_through_payer_codes_and_ncci(tables: Tables):
    # a commercial payer: the e-stim share becomes 97014; 97140 + 97530 in one entry are one time block
    shares = (CodeShare("G0283", 10), CodeShare("97140", 15), CodeShare("97530", 15))
    r = run(proc("m", "97140", "09:00", "09:40", shares=shares), cov=COMMERCIAL, tables=tables)
    assert lines(r) == [("97014", 1, ("GP",)), ("97140", 1, ("GP",)), ("97530", 1, ("GP",))]
    assert "ATTEST-59" in codes(r.actions)  # no separate time blocks documented: never 59 silently


def test_a_share_the_classifier_could_not_code_is_skipped(tables: Tables):
    shares = (CodeShare("97110", 15), CodeShare(UNSUPPORTED, 10))
    r = run(proc("m", "97110", "09:00", "09:25", shares=shares), tables=tables)
    assert lines(r) == [("97110", 1, ("GP",))]
    assert [(s.procedure_id, s.reason) for s in r.skipped] == [("m", "unsupported-classification")]


def test_a_shared_entry_overlapping_another_procedure(tables: Tables):
    # the mixed entry 09:00-09:30 (97110 15 + 97112 15) and 97140 09:15-09:30, begun later: 97140 keeps its
    # 15 min, the entry keeps 09:00-09:15 and its shares are cut to 8 + 7. 30 min -> 2 units: 97140 one
    # whole unit, the leftover to the larger remainder (97110, 8 min); 97112 (7 min) gets none.
    shares = (CodeShare("97110", 15), CodeShare("97112", 15))
    r = run(
        proc("m", "97110", "09:00", "09:30", shares=shares),
        proc("x", "97140", "09:15", "09:30"),
        tables=tables,
    )
    assert minutes_by_code(r) == {"97110": 8, "97140": 15}
    assert lines(r) == [("97110", 1, ("GP",)), ("97140", 1, ("GP",))]
    assert time_accounting.F_OVERLAP in codes(r.findings)
    assert units.F_UNITS_ZERO in codes(r.findings)


# --- payer code substitutions, both directions -------------------------------------------------------


@pytest.mark.parametrize(
    ("cov", "documented", "billed"),
    [
        (MEDICARE, "97014", "G0283"),
        (MEDICARE, "G0283", "G0283"),
        (COMMERCIAL, "G0283", "97014"),
        (COMMERCIAL, "97014", "97014"),
        (AETNA, "G0283", "97014"),
        (UHC, "97014", "G0283"),
        (UHC, "G0283", "G0283"),
        (UNKNOWN, "G0283", "97014"),
    ],
    ids=lambda v: getattr(v, "id", v),
)
def test_unattended_estim_code_follows_the_payer(
    tables: Tables, cov: CoverageFacts, documented: str, billed: str
):
    r = run(proc("a", documented, "09:00", "09:15"), cov=cov, tables=tables)
    assert [ln.code for ln in r.lines] == [billed]
    assert ("BILL-CODE-SUBSTITUTED" in codes(r.findings)) is (documented != billed)


def test_dry_needling_not_covered_by_medicare_covered_by_commercial(tables: Tables):
    r = run(proc("a", "20561", "09:00", "09:15"), tables=tables)
    assert r.lines == () and "BILL-PAYER-NOT-COVERED" in codes(r.findings)
    r2 = run(proc("a", "20561", "09:00", "09:15"), cov=COMMERCIAL, tables=tables)
    assert lines(r2) == [("20561", 1, ("GP",))]  # a therapist performed it: GP on a sometimes-therapy code


# --- add-on codes -------------------------------------------------------------------------------------

ADD_ON_CASES = [
    (
        "97129 + 97130: 20 + 15 min",
        [("a", "97129", "09:00", "09:20"), ("b", "97130", "09:20", "09:35")],
        [("97129", 1), ("97130", 1)],
    ),
    (
        "97129 alone 38 min: first unit + 2 add-on units",
        [("a", "97129", "09:00", "09:38")],
        [("97129", 1), ("97130", 2)],
    ),
    ("97129 alone 10 min", [("a", "97129", "09:00", "09:10")], [("97129", 1)]),
    ("97130 without 97129: no line", [("b", "97130", "09:00", "09:30")], []),
]


@pytest.mark.parametrize(("case", "spec", "expected"), ADD_ON_CASES, ids=[c[0] for c in ADD_ON_CASES])
def test_add_on_only_with_its_primary(
    tables: Tables, case: str, spec: list[tuple[str, str, str, str]], expected
):
    r = run(*(proc(p, c, s, e, ("slp",)) for p, c, s, e in spec), tables=tables)
    assert sorted((ln.code, ln.units) for ln in r.lines) == expected
    alone = add_ons.F_ADD_ON_ALONE in codes(r.findings)
    assert alone is (not expected)
    if alone:
        assert [(s.procedure_id, s.reason) for s in r.skipped] == [("b", add_ons.SKIP_ADD_ON_ALONE)]
    assert all(m.code == "GN" for ln in r.lines for m in ln.modifiers[:1])  # SLP performer: GN


def test_add_on_keeps_the_assistant_modifier_of_its_units(tables: Tables):
    # OT 20 min then OTA 20 min of 97129 (40 min -> 3 units): OT and OTA one full unit each; the mixed last
    # unit (OT 5, OTA 5 min) is above de minimis and a tie is no therapist majority -> CO. The primary keeps
    # one unit (the therapist's), the other two are 97130, with CO
    r = run(
        proc("a", "97129", "09:00", "09:20", ("ot",)),
        proc("b", "97129", "09:20", "09:40", ("ota",)),
        tables=tables,
    )
    assert lines(r) == [("97129", 1, ("GO",)), ("97130", 2, ("GO", "CO"))]


# --- plans of care from the code table ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "who", "modifier", "finding"),
    [
        ("92507", ("slp",), "GN", None),
        ("92507", (), "GN", "BILL-DISCIPLINE-ASSUMED"),
        ("92526", ("ot",), "GO", None),
        ("97165", ("ot",), "GO", None),
        ("97165", ("pt",), "GO", "BILL-DISCIPLINE-CODE-MISMATCH"),
        ("97161", ("ot",), "GP", "BILL-DISCIPLINE-CODE-MISMATCH"),
        ("97110", ("ot",), "GO", None),
    ],
)
def test_discipline_from_performer_and_code_table(
    tables: Tables, code: str, who: tuple[str, ...], modifier: str, finding: str | None
):
    r = run(proc("a", code, "09:00", "09:30", who), tables=tables)
    (ln,) = r.lines
    assert ln.modifiers[0].code == modifier
    discipline_findings = {c for c in codes(r.findings) if c.startswith("BILL-DISCIPLINE")}
    assert discipline_findings == ({finding} if finding else set())


@pytest.mark.parametrize(("who", "mods"), [(("pt",), ("GP",)), ((), ())])
def test_sometimes_therapy_code_gets_gp_only_from_a_therapist(tables: Tables, who: tuple[str, ...], mods):
    r = run(proc("a", "95992", "09:00", "09:15", who), tables=tables)
    assert lines(r) == [("95992", 1, mods)]


def test_evaluation_by_an_assistant_is_flagged(tables: Tables):
    r = run(proc("a", "97161", "09:00", "09:30", ("pta",)), tables=tables)
    assert "DOC-EVAL-BY-ASSISTANT" in codes(r.findings)


# --- the step list --------------------------------------------------------------------------------------


def test_steps_run_in_the_documented_order():
    names = [f"{s.__module__.rsplit('.', 1)[-1]}.{s.__name__}" for s in STEPS]
    assert names.index("payer.apply") == 0
    assert names.index("entries.apply") < names.index("payer_codes.apply") < names.index("add_ons.pair")
    assert (
        names.index("performers.apply") < names.index("time_accounting.apply") < names.index("minutes.apply")
    )
    assert names.index("minutes.apply") < names.index("units.apply") < names.index("assistant.apply")
    assert (
        names.index("assistant.apply")
        < names.index("add_ons.split")
        < names.index("discipline_modifiers.apply")
    )
    assert (
        names.index("discipline_modifiers.apply") < names.index("ncci_ptp.apply") < names.index("mue.apply")
    )
    assert len(set(names)) == len(names)


def test_finding_codes_are_named_constants():
    """Each step names its codes as module constants (grep-able), never built from parts at run time."""
    import inspect

    from integration.billing import steps as pkg

    for mod in (payer, time_accounting, units, add_ons):
        src = inspect.getsource(mod)
        consts = {v for k, v in vars(mod).items() if k[:2] in ("F_", "A_") and isinstance(v, str)}
        assert consts, mod
        for c in consts:
            assert f'"{c}"' in src
    assert pkg.__doc__
