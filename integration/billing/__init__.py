"""Billing rules (placeholder: one line per code, CMS total-time units; replaced by the engine)."""

from __future__ import annotations

from dataclasses import dataclass

from integration.model import (
    ActionItem,
    BillingLine,
    ClassifiedIntervention,
    EncounterFacts,
    Finding,
    FlagItem,
    Modifier,
    Skipped,
    UNSUPPORTED,
)
from mappings.loader import Tables


@dataclass(frozen=True)
class BillingResult:
    lines: tuple[BillingLine, ...] = ()
    findings: tuple[Finding, ...] = ()
    actions: tuple[ActionItem, ...] = ()
    flags: tuple[FlagItem, ...] = ()
    skipped: tuple[Skipped, ...] = ()


def bill(
    facts: EncounterFacts, classified: tuple[ClassifiedIntervention, ...], tables: Tables
) -> BillingResult:
    codes = {r.code: r for r in tables.active("billable_codes", facts.date_of_service)}
    minutes: dict[str, int] = {}
    procs: dict[str, list[str]] = {}
    for ci in classified:
        code = ci.classification.code
        if code == UNSUPPORTED or code not in codes:
            continue
        minutes[code] = minutes.get(code, 0) + (ci.intervention.minutes or 0)
        procs.setdefault(code, []).append(ci.intervention.id)
    total = sum(m for c, m in minutes.items() if codes[c].timed)
    n = (total + 7) // 15 if total >= 8 else 0
    lines = []
    for code, m in sorted(minutes.items()):
        units = 1 if not codes[code].timed else min(n, max(1, (m + 7) // 15)) if m >= 8 else 0
        if units:
            lines.append(
                BillingLine(
                    code=code,
                    units=units,
                    date_of_service=facts.date_of_service,
                    modifiers=(Modifier("GP", "MOD-GP", "always-therapy code furnished by PT"),),
                    minutes=m,
                    procedure_ids=tuple(procs[code]),
                )
            )
    return BillingResult(lines=tuple(lines))
