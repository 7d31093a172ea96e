"""Rule ids and the sources they rest on (for findings, actions, flags and line evidence).

Numeric values and payer settings live in mappings/billing/*.yaml; this module only names the
logic rules the engine implements and where each comes from.
"""

from __future__ import annotations

SOURCES: dict[str, str] = {
    "RULES-DATED": "mappings/*.yaml rows are looked up by date of service (effective/expires); "
    "mappings/billing/payer_profiles.yaml",
    "UNITS-CMS": "CMS Pub. 100-04 ch. 5 §20.2 total-time rule [PRIMARY] (billing-rules.md §2.1-2.2)",
    "UNITS-AMA": "CPT midpoint rule as quoted by Premera (billing-rules.md §2.4) [PRIMARY text via payer]",
    "UNITS-UNTIMED": "FCSO/NGS untimed codes: 1 unit per session; minutes count toward total treatment time "
    "only "
    "(billing-rules.md §1, §2.3)",
    "UNITS-ONE-LINE": "FCSO: timed codes reported once per date of service on a single line (from "
    "2021-04-19) "
    "(billing-rules.md §2.1)",
    "MINUTES-ALLOCATED": "MBPM ch. 15 §220.3: per-code minutes not required, totals are (billing-rules.md "
    "§0.2, §2.3)",
    "MINUTES-MISSING": "MBPM ch. 15 §220.3: total timed code minutes must be documented (billing-rules.md "
    "§2.3)",
    "MOD-GP": "MCPM ch. 5 §20.1; CR 10176: GP/GO/GN on every always-therapy code (billing-rules.md §4.1)",
    "MOD-CQ": "cms.gov CQ/CO billing examples; MCPM ch. 5 §20.1; 10 % de minimis per unit (billing-rules.md "
    "§4.2)",
    "MOD-59": "CMS 'Proper Use of Modifier 59' Example 9 (97140/97530 distinct 15-minute time blocks); "
    "X{EPSU} since 2015 (billing-rules.md §3.2, §4.4)",
    "NCCI-PTP": "NCCI practitioner PTP edits (official quarterly file when loaded, else ncci_ptp_seed.yaml) "
    "(billing-rules.md §3.1-3.2)",
    "NCCI-MUE": "NCCI practitioner MUEs (official quarterly file when loaded, else mue_seed.yaml) "
    "(billing-rules.md §3.3)",
    "PAYER-CODE": "mappings/billing/payer_code_rules.yaml (billing-rules.md §5.5)",
    "PAYER-COVERAGE": "mappings/billing/payer_profiles.yaml coverage allow-list (billing-rules.md §5.6)",
    "PAYER-CAP": "mappings/billing/payer_profiles.yaml unit/visit caps (billing-rules.md §5.6)",
    "PAYER-PRIOR-AUTH": "mappings/billing/payer_profiles.yaml prior authorisation (billing-rules.md §5.6)",
    "PAYER-SAME-DAY": "mappings/billing/payer_profiles.yaml same-day exclusions (billing-rules.md §5.6)",
    "PAYER-DENIES-59": "webpt.com blog: Anthem/Aetna/Humana deny 97530 with 97140 even with 59 [SECONDARY] "
    "(billing-rules.md §3.2)",
    "KX": "NGS CY2024 KX article; Noridian JE thresholds; mappings/billing/kx_thresholds.yaml and "
    "fee_schedule.yaml "
    "(billing-rules.md §4.3)",
    "DOC-TOTALS": "MBPM ch. 15 §220.3: 'The billing and the total timed code treatment minutes must be "
    "consistent' "
    "(billing-rules.md §2.3, §5.1)",
    "DOC-PROGRESS": "MBPM ch. 15 §220.3: progress report at least once every 10 treatment days "
    "(billing-rules.md §5.1)",
    "DOC-POC": "MBPM ch. 15 §220.1: plan of care certification interval at most 90 days (billing-rules.md "
    "§5.1)",
    "DOC-GROUP": "Carrier text (Transmittal 1753) via codingahead.com/APTA: 97150 once per session; "
    "concurrent "
    "procedures with 2+ patients -> only 97150 (billing-rules.md §5.2)",
    "DOC-PERFORMER": "MBPM ch. 15 §220.3: identify each person who contributed; CQ/CO need PT vs PTA minutes "
    "(billing-rules.md §4.2, §6.3)",
    "DOC-EVAL-ASSISTANT": "Evaluations and progress reports are written by a clinician, not an assistant "
    "(billing-rules.md §5.1)",
}


def src(rule_id: str) -> str:
    return SOURCES[rule_id]
