"""Billing scenarios written from the CMS rules: one FHIR Bundle per encounter, with what ptbill must write.

``python tests/data/scenarios/build.py`` (re)writes ``NN_name.json`` (the Bundles ``ptbill process --bundle``
reads), ``expected.json`` (per bundle: ChargeItem lines, and the exact billing DetectedIssue, Task and Flag
codes) and ``INDEX.md`` (the same as a table). tests/pure/test_billing_scenarios.py checks the files are
what this script writes and runs every bundle through the ``process --bundle`` code path.

Expected outcomes are worked out by hand from the rule text (CMS Pub. 100-04 ch. 5 §20.2, MBPM ch. 15
§220, the CQ/CO examples, NCCI, billing-rules.md) and the shipped tables; they are never read back from
ptbill. Everything is synthetic: no patient data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CPT = "http://www.ama-assn.org/go/cpt"
NUCC = "http://nucc.org/provider-taxonomy"
SOPT = "https://nahdo.org/sopt"
EXT = "https://ptbill.dev/fhir/StructureDefinition/"
TZ = "-07:00"
DAY = "2026-03-02"

TEXT = {
    "97110": "Therapeutic exercise: SLR 3x10, quad sets 2x15 and heel slides for R knee strength and ROM",
    "97112": "Neuromuscular re-education: single-leg stance on foam and tandem stance for balance and "
    "proprioception",
    "97140": "Manual therapy: grade III AP joint mobilizations and soft tissue mobilization to R knee to "
    "improve knee flexion ROM",
    "97116": "Gait training with single point cane on level surfaces and stairs, verbal cues for heel strike "
    "and step length",
    "97530": "Therapeutic activities: floor-to-waist lifting of a 10 lb box and sit to stand transfers, to "
    "return to carrying groceries",
    "97535": "Self-care training: lower body dressing with reacher and sock aid, instructed in hip "
    "precautions",
    "97035": "Ultrasound 1 MHz, 1.0 W/cm2, to R lateral epicondyle",
    "97010": "Hot pack to lumbar spine",
    "97014": "Unattended electrical stimulation (IFC) to lumbar paraspinals for pain",
    "97161": "PT evaluation, low complexity: history, examination of R knee ROM and strength, plan of care "
    "established",
    "97164": "PT re-evaluation of established plan of care: remeasured knee ROM and strength, goals updated",
    "97150": "Group therapeutic exercise class, PT in constant attendance",
    "92507": "Speech therapy: articulation drills for /s/ and /r/ in words and sentences",
    "97129": "Cognitive intervention: attention and working memory tasks, problem-solving strategy training",
    "97130": "Cognitive intervention, additional time: working memory tasks",
}

STAFF = {  # performer key -> (PractitionerRole id, NUCC taxonomy code)
    "pt": ("role-pt", "225100000X"),
    "pta": ("role-pta", "225200000X"),
    "ot": ("role-ot", "225X00000X"),
    "ota": ("role-ota", "224Z00000X"),
    "slp": ("role-slp", "235Z00000X"),
}

PAYERS = {  # payer key -> (SOPT code, payor display)
    "medicare": ("1", "Medicare Part B"),
    "commercial": ("5", "Example Commercial Health Plan"),
    "aetna": ("5", "Aetna Choice POS II"),
    "uhc": ("5", "UnitedHealthcare Choice Plus"),
    "nv_medicaid": ("2", "Nevada Medicaid"),
}


@dataclass(frozen=True)
class P:
    """One Procedure: code, start (HH:MM on the day), minutes (None: performedDateTime only)."""

    code: str
    start: str
    minutes: int | None
    who: str = "pt"
    coded: bool = True  # send the CPT coding (False: text only, the classifier decides)
    group_size: int | None = None
    text: str | None = None  # the documentation (None: TEXT[code])


@dataclass(frozen=True)
class Scenario:
    name: str
    why: str  # the rule, and how the expected outcome follows from it
    procs: tuple[P, ...]
    lines: tuple[tuple[str, int, tuple[str, ...]], ...]
    issues: frozenset[str] = frozenset()  # billing DetectedIssue codes, exactly
    tasks: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    payer: str | None = "medicare"
    totals: tuple[int, int] | None = None  # documented (total timed, total treatment) minutes
    episode: dict[str, Any] = field(default_factory=dict)  # visit, last_pr, certified, start
    prior: tuple[tuple[str, int, str], ...] = ()  # prior ChargeItems (code, units, date)


def L(code: str, units: int, *mods: str) -> tuple[str, int, tuple[str, ...]]:
    return (code, units, mods)


def S(*codes: str) -> frozenset[str]:
    return frozenset(codes)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "01_cms_example1",
        "CMS §20.2 example 1: 97112 24 + 97110 23 = 47 min -> 3 units; each code 1 whole unit, the third to "
        "the larger remainder (97112: 9 min)",
        (P("97112", "09:00", 24), P("97110", "09:24", 23)),
        (L("97110", 1, "GP"), L("97112", 2, "GP")),
        totals=(47, 47),
    ),
    Scenario(
        "02_cms_example2_tie",
        "CMS example 2: 97112 20 + 97110 20 = 40 min -> 3 units, 'either code' x2: ptbill's stated tie-break "
        "gives it to the lower code (never by price), with a finding",
        (P("97112", "09:00", 20), P("97110", "09:20", 20)),
        (L("97110", 2, "GP"), L("97112", 1, "GP")),
        S("BILL-UNITS-TIE"),
        totals=(40, 40),
    ),
    Scenario(
        "03_cms_example3",
        "CMS example 3: 97110 33 + 97140 7 = 40 min -> 3 units: 97110 2 whole, the third to 97140 (7 min "
        "remainder beats 3)",
        (P("97110", "09:00", 33), P("97140", "09:33", 7)),
        (L("97110", 2, "GP"), L("97140", 1, "GP")),
        totals=(40, 40),
    ),
    Scenario(
        "04_cms_example4",
        "CMS example 4: 18 + 13 + 10 + 8 = 49 min -> 3 units: 97110, 97140, 97116 one each, 97035 none",
        (P("97110", "09:00", 18), P("97140", "09:18", 13), P("97116", "09:31", 10), P("97035", "09:41", 8)),
        (L("97110", 1, "GP"), L("97116", 1, "GP"), L("97140", 1, "GP")),
        S("BILL-UNITS-ZERO"),
        totals=(49, 49),
    ),
    Scenario(
        "05_cms_example5_7_7_7",
        "CMS example 5: three services of 7 min = 21 min -> 1 unit for one of them (equal: the lower code)",
        (P("97112", "09:00", 7), P("97110", "09:07", 7), P("97140", "09:14", 7)),
        (L("97110", 1, "GP"),),
        S("BILL-UNITS-ZERO", "BILL-UNITS-TIE"),
        totals=(21, 21),
    ),
    Scenario(
        "06_single_service_under_8",
        "CMS: one service under 8 minutes is not billed",
        (P("97110", "09:00", 7),),
        (),
        S("BILL-UNITS-ZERO"),
        totals=(7, 7),
    ),
    Scenario(
        "07_evaluation_and_treatment",
        "Evaluations are untimed (1 unit) and stay out of the 8-minute pool: 97161 + 97110 20 min -> 1 + 1",
        (P("97161", "09:00", 30), P("97110", "09:30", 20)),
        (L("97110", 1, "GP"), L("97161", 1, "GP")),
        totals=(20, 50),
    ),
    Scenario(
        "08_hot_pack_bundled_aapc_35_20",
        "AAPC example: 35 timed + 20 untimed min -> 2 timed units; 97010 is bundled for Medicare (status B): "
        "no "
        "line, its minutes still count toward total treatment time (55)",
        (P("97010", "09:00", 20), P("97110", "09:20", 20), P("97140", "09:40", 15)),
        (L("97110", 1, "GP"), L("97140", 1, "GP")),
        S("BILL-PAYER-BUNDLED"),
        totals=(35, 55),
    ),
    Scenario(
        "09_estim_97014_medicare",
        "97014 is not valid for Medicare: the payer's row substitutes G0283 (untimed, 1 unit)",
        (P("97014", "09:00", 15), P("97110", "09:15", 15)),
        (L("97110", 1, "GP"), L("G0283", 1, "GP")),
        S("BILL-CODE-SUBSTITUTED"),
        totals=(15, 30),
    ),
    Scenario(
        "10_estim_text_commercial",
        "Unattended e-stim documented in text only, commercial payer: its row says 97014 (not Medicare's "
        "G0283)",
        (P("97014", "09:00", 15, coded=False), P("97110", "09:15", 15)),
        (L("97014", 1, "GP"), L("97110", 1, "GP")),
        S("BILL-CODE-SUBSTITUTED"),
        payer="commercial",
        totals=(15, 30),
    ),
    Scenario(
        "11_estim_text_medicare",
        "Unattended e-stim documented in text only, Medicare: G0283, nothing to substitute",
        (P("97014", "09:00", 15, coded=False), P("97110", "09:15", 15)),
        (L("97110", 1, "GP"), L("G0283", 1, "GP")),
        totals=(15, 30),
    ),
    Scenario(
        "12_estim_97014_unitedhealthcare",
        "UnitedHealthcare requires G0283 instead of 97014 (billing-rules.md §5.6): the payer's row says so",
        (P("97014", "09:00", 15), P("97110", "09:15", 15)),
        (L("97110", 1, "GP"), L("G0283", 1, "GP")),
        S("BILL-CODE-SUBSTITUTED"),
        payer="uhc",
        totals=(15, 30),
    ),
    Scenario(
        "13_overlap_partial",
        "97110 09:00-09:25 and 97140 09:15-09:40: 40 min of clock time, not 50. The later service keeps the "
        "shared 10 min: 15 + 25 -> 3 units, the leftover to 97140 (remainder 10); a finding and a Task",
        (P("97110", "09:00", 25), P("97140", "09:15", 25)),
        (L("97110", 1, "GP"), L("97140", 2, "GP")),
        S("BILL-TIME-OVERLAP"),
        S("DOC-TIME-OVERLAP"),
        totals=(40, 40),
    ),
    Scenario(
        "14_overlap_nested",
        "97112 09:10-09:20 inside 97110 09:00-09:40: the nested service keeps its 10 min, 97110 30 -> 2 + 1",
        (P("97110", "09:00", 40), P("97112", "09:10", 10)),
        (L("97110", 2, "GP"), L("97112", 1, "GP")),
        S("BILL-TIME-OVERLAP"),
        S("DOC-TIME-OVERLAP"),
        totals=(40, 40),
    ),
    Scenario(
        "15_overlap_identical",
        "97110 and 97112 both 09:00-09:20: 20 min of clock time, counted once (equal periods: the lower "
        "code)",
        (P("97112", "09:00", 20), P("97110", "09:00", 20)),
        (L("97110", 1, "GP"),),
        S("BILL-TIME-OVERLAP", "BILL-UNITS-ZERO"),
        S("DOC-TIME-OVERLAP"),
        totals=(20, 20),
    ),
    Scenario(
        "16_pt_pta_same_code_overlap",
        "PT 97110 09:00-09:20, PTA 97110 09:10-09:30: union 30 min; time together is PT time, so PT 20, PTA "
        "alone 10. 2 units: PT's full unit without CQ; the last (PTA 10 vs PT 5 min) with CQ",
        (P("97110", "09:00", 20, "pt"), P("97110", "09:10", 20, "pta")),
        (L("97110", 1, "GP"), L("97110", 1, "GP", "CQ")),
        S("BILL-TIME-JOINT"),
        totals=(30, 30),
    ),
    Scenario(
        "17_cq_cms_example",
        "CMS CQ example: PTA 23 min + PT 13 min of 97110, PT 30 min of 97140 = 66 min -> 4 units; 97110: the "
        "PTA's full unit with CQ, the mixed unit (PT 13 vs PTA 8 min) without",
        (P("97110", "09:00", 23, "pta"), P("97110", "09:23", 13, "pt"), P("97140", "09:36", 30, "pt")),
        (L("97110", 1, "GP"), L("97110", 1, "GP", "CQ"), L("97140", 2, "GP")),
        totals=(66, 66),
    ),
    Scenario(
        "18_cq_de_minimis",
        "PT 14 min + PTA 1 min of 97110 = 1 unit; the PTA's 1 of 15 min is within the 10 % de minimis: no CQ",
        (P("97110", "09:00", 14, "pt"), P("97110", "09:14", 1, "pta")),
        (L("97110", 1, "GP"),),
        totals=(15, 15),
    ),
    Scenario(
        "19_pta_alone",
        "97530 furnished wholly by the PTA, 30 min -> 2 units with CQ",
        (P("97530", "09:00", 30, "pta"),),
        (L("97530", 2, "GP", "CQ"),),
        totals=(30, 30),
    ),
    Scenario(
        "20_ot_and_ota",
        "OT plan of care: OT 97530 20 min, OTA 97535 25 min = 45 min -> 3 units (97535 gets the leftover); "
        "GO, "
        "and CO on the OTA's 97535",
        (P("97530", "09:00", 20, "ot"), P("97535", "09:20", 25, "ota")),
        (L("97530", 1, "GO"), L("97535", 2, "GO", "CO")),
        totals=(45, 45),
    ),
    Scenario(
        "21_pt_and_ot_separate_plans",
        "PT 97110 10 min and OT 97535 10 min the same day: units are counted per discipline (separate plans "
        "of care, GP and GO), 10 min each -> 1 + 1",
        (P("97110", "09:00", 10, "pt"), P("97535", "09:10", 10, "ot")),
        (L("97110", 1, "GP"), L("97535", 1, "GO")),
        totals=(20, 20),
    ),
    Scenario(
        "22_cognitive_97129_with_add_on",
        "97129 is the first 15 min, once per day; 38 min -> 3 units: 97129 x1 and its add-on 97130 x2",
        (P("97129", "09:00", 38, "slp"),),
        (L("97129", 1, "GN"), L("97130", 2, "GN")),
        totals=(38, 38),
    ),
    Scenario(
        "23_add_on_97130_alone",
        "An add-on code is never billed without its primary: 97130 alone gets no line, a finding",
        (P("97130", "09:00", 30, "slp"),),
        (),
        S("BILL-ADDON-WITHOUT-PRIMARY"),
        totals=None,
    ),
    Scenario(
        "24_ncci_59_distinct_blocks",
        "NCCI 97140/97530 (indicator 1): performed 09:00-09:15 and 09:16-09:31, distinct time blocks -> 59 "
        "on "
        "the column-2 code 97530 (CMS modifier-59 example 9)",
        (P("97140", "09:00", 15), P("97530", "09:16", 15)),
        (L("97140", 1, "GP"), L("97530", 1, "GP", "59")),
        totals=(30, 30),
    ),
    Scenario(
        "25_ncci_59_overlapping",
        "The same pair overlapping (97140 09:00-09:16, 97530 09:10-09:25): no 59 but a Task to attest; the 6 "
        "shared minutes counted once (10 + 15 = 25 -> 2 units)",
        (P("97140", "09:00", 16), P("97530", "09:10", 15)),
        (L("97140", 1, "GP"), L("97530", 1, "GP")),
        S("BILL-TIME-OVERLAP"),
        S("ATTEST-59", "DOC-TIME-OVERLAP"),
        totals=(25, 25),
    ),
    Scenario(
        "26_group_then_one_on_one",
        "97150 (4 patients) 09:00-09:30, then one-on-one 97110 09:35-09:50: separate sessions, so 59 on the "
        "column-2 97110 of NCCI 97150/97110",
        (P("97150", "09:00", 30, group_size=4), P("97110", "09:35", 15)),
        (L("97110", 1, "GP", "59"), L("97150", 1, "GP")),
        totals=(15, 45),
    ),
    Scenario(
        "27_group_overlaps_one_on_one",
        "One-on-one 97110 09:10-09:25 during the group 09:00-09:30: 'only 97150 is reported' -> a high "
        "finding; the NCCI pair has no separate blocks -> a Task",
        (P("97150", "09:00", 30, group_size=3), P("97110", "09:10", 15)),
        (L("97110", 1, "GP"), L("97150", 1, "GP")),
        S("DOC-GROUP-WITH-ONE-ON-ONE"),
        S("ATTEST-59"),
        totals=(15, 45),
    ),
    Scenario(
        "28_group_of_one",
        "97150 needs two or more patients; a group size of 1 is a high finding",
        (P("97150", "09:00", 30, group_size=1),),
        (L("97150", 1, "GP"),),
        S("DOC-GROUP-SIZE"),
        totals=(0, 30),
    ),
    Scenario(
        "29_progress_report_due",
        "MBPM §220.3: progress report at least every 10 treatment days; visit 10 of the episode, none yet",
        (P("97110", "09:00", 30),),
        (L("97110", 2, "GP"),),
        tasks=S("DOC-PROGRESS-REPORT"),
        flags=S("DOC-PROGRESS-REPORT-DUE"),
        totals=(30, 30),
        episode={"visit": 10, "certified": "2026-02-20", "start": "2026-02-09"},
    ),
    Scenario(
        "30_poc_recert_overdue",
        "MBPM §220.1: certification at most 90 days; certified 2025-11-20, visit 2026-03-02 (102 days)",
        (P("97110", "09:00", 30),),
        (L("97110", 2, "GP"),),
        tasks=S("DOC-POC-RECERT"),
        flags=S("DOC-POC-RECERT-OVERDUE"),
        totals=(30, 30),
        episode={"visit": 5, "last_pr": 1, "certified": "2025-11-20", "start": "2025-11-18"},
    ),
    Scenario(
        "31_kx_exceeded",
        "Medicare KX 2026 PT+SLP $2,480: prior charges 90 units of 97110 x $30 (example fee) = $2,700 -> a "
        "Flag "
        "and a Task to attest; ptbill never adds KX",
        (P("97110", "09:00", 30),),
        (L("97110", 2, "GP"),),
        tasks=S("ATTEST-KX"),
        flags=S("KX-THRESHOLD-EXCEEDED"),
        totals=(30, 30),
        prior=tuple(("97110", 9, f"2026-0{1 + i // 5}-{5 + 2 * (i % 5):02d}") for i in range(10)),
    ),
    Scenario(
        "32_commercial_ama_rule",
        "Payer on the AMA midpoint rule: 8 + 8 + 8 min, each code on its own -> 1 + 1 + 1 (CMS would give 2)",
        (P("97110", "09:00", 8), P("97140", "09:08", 8), P("97035", "09:16", 8)),
        (L("97035", 1, "GP"), L("97110", 1, "GP"), L("97140", 1, "GP")),
        payer="aetna",
        totals=(24, 24),
    ),
    Scenario(
        "33_medicaid_unit_cap",
        "Nevada Medicaid PT34: at most 4 units per day and prior authorisation except evaluations; 45 + 30 "
        "min "
        "-> 5 units: a finding and a Task to choose (ptbill does not cut units)",
        (P("97110", "09:00", 45), P("97140", "09:45", 30)),
        (L("97110", 3, "GP"), L("97140", 2, "GP")),
        S("PAYER-UNIT-CAP"),
        S("PAYER-UNIT-CAP", "PRIOR-AUTH"),
        payer="nv_medicaid",
        totals=(75, 75),
    ),
    Scenario(
        "34_minutes_from_documented_total",
        "No minutes per intervention (performedDateTime only) but 30 total timed minutes documented: split "
        "evenly 15 + 15 -> 1 + 1, with a finding",
        (P("97110", "09:00", None), P("97140", "09:15", None)),
        (L("97110", 1, "GP"), L("97140", 1, "GP")),
        S("BILL-MINUTES-ALLOCATED"),
        totals=(30, 30),
    ),
    Scenario(
        "35_no_minutes_at_all",
        "No minutes and no documented totals: no units are guessed; an urgent Task asks for the minutes",
        (P("97110", "09:00", None), P("97140", "09:15", None)),
        (),
        tasks=S("DOC-MINUTES"),
    ),
    Scenario(
        "36_units_exceed_documented_total",
        "MBPM §220.3: billing and total timed minutes must agree; 97110 53 min (4 units) but the note says "
        "40 "
        "total timed minutes (3 units)",
        (P("97110", "09:00", 53),),
        (L("97110", 4, "GP"),),
        S("DOC-UNITS-EXCEED-TOTAL"),
        totals=(40, 55),
    ),
    Scenario(
        "37_minutes_mismatch_same_units",
        "Per-intervention minutes 23 + 22 = 45, the note says 47: both give 3 units, a low finding only",
        (P("97110", "09:00", 23), P("97140", "09:23", 22)),
        (L("97110", 2, "GP"), L("97140", 1, "GP")),
        S("DOC-TIMED-MINUTES-MISMATCH"),
        totals=(47, 47),
    ),
    Scenario(
        "38_evaluation_by_assistant",
        "An evaluation is the therapist's: documented as performed by the PTA alone -> a high finding",
        (P("97161", "09:00", 30, "pta"),),
        (L("97161", 1, "GP", "CQ"),),
        S("DOC-EVAL-BY-ASSISTANT"),
        totals=(0, 30),
    ),
    Scenario(
        "39_reevaluation_separate_block",
        "NCCI 97110/97164 (97164 column 2): re-evaluation 09:00-09:20, exercise 09:20-09:43 in its own block "
        "-> "
        "59 on 97164",
        (P("97164", "09:00", 20), P("97110", "09:20", 23)),
        (L("97110", 2, "GP"), L("97164", 1, "GP", "59")),
        totals=(23, 43),
    ),
    Scenario(
        "40_untimed_documented_twice",
        "Unattended e-stim twice in one visit: an untimed code is one unit per session, with a finding",
        (P("97014", "09:00", 10, coded=False), P("97110", "09:10", 20), P("97014", "09:30", 10, coded=False)),
        (L("97110", 1, "GP"), L("G0283", 1, "GP")),
        S("BILL-UNTIMED-REPEATED"),
        totals=(20, 40),
    ),
    Scenario(
        "41_mue_ultrasound",
        "97035 45 min -> 3 units, above the seed MUE of 2 (MAI 3, date-of-service): reported, never cut",
        (P("97035", "09:00", 45),),
        (L("97035", 3, "GP"),),
        S("NCCI-MUE-DOS"),
        totals=(45, 45),
    ),
    Scenario(
        "42_pt_ot_cotreatment_overlap",
        "PT 97110 09:00-09:30 and OT 97530 09:15-09:45 on one patient: 45 min of clock time. 97530 (begun "
        "later) keeps 30 min -> 2 units GO; 97110 15 min -> 1 unit GP; a finding and a Task",
        (P("97110", "09:00", 30, "pt"), P("97530", "09:15", 30, "ot")),
        (L("97110", 1, "GP"), L("97530", 2, "GO")),
        S("BILL-TIME-OVERLAP"),
        S("DOC-TIME-OVERLAP"),
        totals=(45, 45),
    ),
    Scenario(
        "43_no_coverage_default_profile",
        "No Coverage: the default payer profile (CMS unit rule), with a finding; e-stim gets its CPT code "
        "97014",
        (P("97110", "09:00", 30), P("97014", "09:30", 15, coded=False)),
        (L("97014", 1, "GP"), L("97110", 2, "GP")),
        S("BILL-PAYER-UNKNOWN", "BILL-CODE-SUBSTITUTED"),
        payer=None,
        totals=(30, 45),
    ),
    Scenario(
        "44_mixed_entry_item_minutes",
        "One Procedure (25 min, coded 97110) documents two interventions, each with its minutes: bike 10 min "
        "(97110) and gait training 15 min (97116). One line per code with those minutes: 25 min -> 2 units; "
        "97116 one whole unit, the second to the larger remainder (97110: 10 min)",
        (
            P(
                "97110",
                "09:00",
                25,
                text="Upright bike 10 min for endurance; gait training w/ SPC 150 ft x2, cues for heel "
                "strike and step length, 15 min",
            ),
        ),
        (L("97110", 1, "GP"), L("97116", 1, "GP")),
        totals=(25, 25),
    ),
    Scenario(
        "45_mixed_entry_without_item_minutes",
        "One Procedure (30 min, coded 97530) documents a functional task (97530) and isolated exercises "
        "(97110) without minutes per item: minutes are never moved by weight; the Procedure's code, "
        "supported by an item, keeps the 30 min (2 units) and a Task asks the clinician to split the minutes",
        (
            P(
                "97530",
                "09:00",
                30,
                text="Sit to stand transfers from low chair x10 to practice getting up from her couch; "
                "SLR 3x10 and bridges 2x15 for hip strength",
            ),
        ),
        (L("97530", 2, "GP"),),
        tasks=S("DOC-SPLIT-MINUTES"),
        totals=(30, 30),
    ),
)


# --- FHIR builders ------------------------------------------------------------------------------------


def _t(hhmm: str, plus: int = 0) -> str:
    t = datetime.fromisoformat(f"{DAY}T{hhmm}:00") + timedelta(minutes=plus)
    return t.isoformat() + TZ


def _entry(res: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"https://emr.example/fhir/{res['resourceType']}/{res['id']}", "resource": res}


def bundle(sc: Scenario) -> dict[str, Any]:
    n = sc.name.split("_", 1)[0]
    pat, enc = f"pat-{n}", f"enc-{n}"
    out: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": pat, "name": [{"text": "synthetic patient"}]}
    ]
    if sc.payer is not None:
        sopt, payor = PAYERS[sc.payer]
        out.append(
            {
                "resourceType": "Coverage",
                "id": f"cov-{n}",
                "status": "active",
                "type": {"coding": [{"system": SOPT, "code": sopt}]},
                "beneficiary": {"reference": f"Patient/{pat}"},
                "payor": [{"display": payor}],
                "order": 1,
            }
        )
    for who in sorted({p.who for p in sc.procs}):
        role, taxonomy = STAFF[who]
        out.append({"resourceType": "Practitioner", "id": who, "name": [{"text": f"synthetic {who}"}]})
        out.append(
            {
                "resourceType": "PractitionerRole",
                "id": role,
                "practitioner": {"reference": f"Practitioner/{who}"},
                "code": [{"coding": [{"system": NUCC, "code": taxonomy}]}],
            }
        )
    ext: list[dict[str, Any]] = []
    if sc.totals is not None:
        ext.append({"url": EXT + "total-timed-minutes", "valueInteger": sc.totals[0]})
        ext.append({"url": EXT + "total-treatment-minutes", "valueInteger": sc.totals[1]})
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": enc,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{pat}"},
        "period": {"start": _t("08:55"), "end": _t("10:30")},
    }
    if sc.episode:
        ep = sc.episode
        eoc_ext = [{"url": EXT + "visit-number", "valueInteger": ep["visit"]}]
        if "last_pr" in ep:
            eoc_ext.append({"url": EXT + "last-progress-report-visit", "valueInteger": ep["last_pr"]})
        eoc_ext.append({"url": EXT + "poc-certified-date", "valueDate": ep["certified"]})
        out.append(
            {
                "resourceType": "EpisodeOfCare",
                "id": f"eoc-{n}",
                "status": "active",
                "patient": {"reference": f"Patient/{pat}"},
                "period": {"start": ep["start"]},
                "extension": eoc_ext,
            }
        )
        encounter["episodeOfCare"] = [{"reference": f"EpisodeOfCare/eoc-{n}"}]
    if ext:
        encounter["extension"] = ext
    out.append(encounter)
    for i, p in enumerate(sc.procs, start=1):
        code: dict[str, Any] = {"text": p.text or TEXT[p.code]}
        if p.coded:
            code["coding"] = [{"system": CPT, "code": p.code}]
        res: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": f"{n}-{i}",
            "status": "completed",
            "code": code,
            "subject": {"reference": f"Patient/{pat}"},
            "encounter": {"reference": f"Encounter/{enc}"},
            "performer": [{"actor": {"reference": f"PractitionerRole/{STAFF[p.who][0]}"}}],
        }
        if p.minutes is None:
            res["performedDateTime"] = _t(p.start)
        else:
            res["performedPeriod"] = {"start": _t(p.start), "end": _t(p.start, p.minutes)}
        if p.group_size is not None:
            res["extension"] = [{"url": EXT + "group-size", "valueInteger": p.group_size}]
        out.append(res)
    for i, (code, units, day) in enumerate(sc.prior, start=1):
        out.append(
            {
                "resourceType": "ChargeItem",
                "id": f"{n}-prior-{i}",
                "status": "billable",
                "code": {"coding": [{"system": CPT, "code": code}]},
                "subject": {"reference": f"Patient/{pat}"},
                "context": {"reference": f"Encounter/{n}-old-{i}"},
                "occurrenceDateTime": day,
                "quantity": {"value": units},
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": [_entry(r) for r in out]}


def expected() -> dict[str, Any]:
    return {
        f"{sc.name}.json": {
            "why": sc.why,
            "lines": [[c, u, list(m)] for c, u, m in sorted(sc.lines)],
            "issues": sorted(sc.issues),
            "tasks": sorted(sc.tasks),
            "flags": sorted(sc.flags),
        }
        for sc in SCENARIOS
    }


def index_md() -> str:
    rows = [
        "# Billing scenarios (`ptbill process --bundle`)",
        "",
        "Written from the CMS rules; expected outcomes worked out by hand. Regenerate with",
        "`python tests/data/scenarios/build.py`; `tests/pure/test_billing_scenarios.py` runs them all.",
        "",
        "| Bundle | Rule and expected outcome | Lines | Billing findings / Tasks / Flags |",
        "|---|---|---|---|",
    ]
    for sc in SCENARIOS:
        lines = "; ".join(f"{c} x{u} {' '.join(m)}".strip() for c, u, m in sorted(sc.lines)) or "none"
        outs = ", ".join([*sorted(sc.issues), *(f"Task {t}" for t in sorted(sc.tasks))])
        outs = ", ".join(x for x in (outs, ", ".join(f"Flag {f}" for f in sorted(sc.flags))) if x) or "none"
        rows.append(f"| `{sc.name}.json` | {sc.why} | {lines} | {outs} |")
    return "\n".join(rows) + "\n"


def render() -> dict[str, str]:
    """File name -> exact text of every file this script writes."""
    files = {f"{sc.name}.json": json.dumps(bundle(sc), indent=1) + "\n" for sc in SCENARIOS}
    files["expected.json"] = json.dumps(expected(), indent=1) + "\n"
    files["INDEX.md"] = index_md()
    return files


def main() -> None:
    for old in HERE.glob("[0-9][0-9]_*.json"):
        old.unlink()
    for name, text in render().items():
        (HERE / name).write_text(text)


if __name__ == "__main__":
    main()
