"""Who pays and who treated: payer profile from Coverage, discipline/assistant from performers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from integration.model import SOPT_SYSTEMS, EncounterFacts, Finding, Intervention
from mappings.loader import Tables

RULE_PAYER = "PAYER-PROFILE"
SRC_PAYER = "mappings/billing/payer_match.yaml + payer_profiles.yaml"


@dataclass(frozen=True)
class PayerContext:
    profile: Any  # mappings.schemas.billing.PayerProfile
    coverage_id: str | None
    matched_by: str  # human-readable basis of the match


def _coverage_active(cov: Any, on: date | None) -> bool:
    if cov.status not in (None, "active"):
        return False
    if on is None:
        return True
    if cov.period_start is not None and on < cov.period_start:
        return False
    return not (cov.period_end is not None and on > cov.period_end)


def resolve_payer(facts: EncounterFacts, tables: Tables) -> tuple[PayerContext, tuple[Finding, ...]]:
    on = facts.date_of_service
    profiles = {r.profile: r for r in tables.active("payer_profiles", on)}
    default = profiles["default"]
    active = [c for c in facts.coverages if _coverage_active(c, on)]
    active.sort(key=lambda c: c.order if c.order is not None else 10_000)
    if not active:
        msg = (
            "No active Coverage on the date of service; the default payer profile "
            f"(unit rule {default.unit_rule}, no payer-specific edits) was used."
        )
        return PayerContext(default, None, "no active coverage"), (
            Finding("BILL-PAYER-UNKNOWN", "moderate", msg, RULE_PAYER, SRC_PAYER),
        )
    cov = active[0]
    rows = tables.active("payer_match", on)
    chosen: tuple[str, str] | None = None  # (profile, basis)
    ids = set(cov.payor_identifiers)
    for r in rows:
        if r.kind == "payor_identifier" and r.value in ids:
            chosen = (r.profile, f"payor identifier {r.value}")
            break
    if chosen is None:
        names = [n.lower() for n in cov.payor_names if n]
        hits = [r for r in rows if r.kind == "payor_name" and any(r.value.lower() in n for n in names)]
        if hits:
            best = max(hits, key=lambda r: len(r.value))
            chosen = (best.profile, f"payor name contains {best.value!r}")
    if chosen is None:
        sopt = [c.code for c in cov.type_codings if c.system in SOPT_SYSTEMS and c.code]
        hits = [(r, code) for r in rows if r.kind == "sopt" for code in sopt if code.startswith(r.value)]
        if hits:
            best_r, code = max(hits, key=lambda h: len(h[0].value))
            chosen = (best_r.profile, f"Source of Payment Typology {code} (prefix {best_r.value})")
    findings: list[Finding] = []
    if chosen is None or chosen[0] not in profiles:
        basis = (
            "payer not recognised" if chosen is None else f"profile {chosen[0]!r} not in force on this date"
        )
        findings.append(
            Finding(
                "BILL-PAYER-UNKNOWN",
                "moderate",
                f"Coverage {cov.id or '?'}: {basis}; the default payer profile (unit rule "
                f"{default.unit_rule}, no payer-specific edits) was used. Add a payer_match row.",
                RULE_PAYER,
                SRC_PAYER,
            )
        )
        return PayerContext(default, cov.id, basis), tuple(findings)
    prof = profiles[chosen[0]]
    if prof.profile == "default":
        findings.append(
            Finding(
                "BILL-PAYER-DEFAULT",
                "low",
                f"Coverage {cov.id or '?'} ({chosen[1]}) maps to the default payer profile; "
                "configure the plan's own profile for payer-specific rules.",
                RULE_PAYER,
                SRC_PAYER,
            )
        )
    return PayerContext(prof, cov.id, chosen[1]), tuple(findings)


# --- performers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    discipline: str | None  # PT / OT / SLP / None (unknown)
    assistant: bool | None  # None: unknown


def performer_roles(itv: Intervention, facts: EncounterFacts, tables: Tables) -> list[Role]:
    """One Role per performer of ``itv`` (function codings + the practitioner's codes)."""
    table = {(r.system, r.code): r for r in tables.active("discipline_roles", facts.date_of_service)}
    by_ref: dict[str, list[Any]] = {}
    for p in facts.practitioners:
        for ref in {p.reference, p.practitioner} - {None}:
            by_ref.setdefault(str(ref), []).extend(p.codes)
    roles: list[Role] = []
    for perf in itv.performers:
        codings = list(perf.function) + (by_ref.get(perf.actor, []) if perf.actor else [])
        disc: str | None = None
        asst: bool | None = None
        for c in codings:
            row = table.get((c.system, c.code))
            if row is None:
                continue
            if row.discipline and disc is None:
                disc = row.discipline
            asst = bool(asst) or row.assistant
        roles.append(Role(disc, asst))
    return roles
