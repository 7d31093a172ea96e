"""Step: who pays on the date of service -> the payer profile every later rule is read for.

Data: mappings/billing/payer_match.yaml (Coverage -> profile) and payer_profiles.yaml (the profile's
settings). The primary active Coverage (lowest ``order``) is matched by payor identifier, then payor
name (longest match), then Source of Payment Typology code (longest prefix). No match: the ``default``
profile, with a finding. No ``default`` profile in force on the date at all: the tables hold no rules
for that date, so nothing is billed (one finding, every intervention skipped) and the engine stops.
"""

from __future__ import annotations

from datetime import date

from integration.billing.context import BillingContext, PayerContext, Rule
from integration.model import SOPT_SYSTEMS, CoverageFacts

RULE_PAYER = Rule("PAYER-PROFILE", "mappings/billing/payer_match.yaml + payer_profiles.yaml")
RULE_DATED = Rule(
    "RULES-DATED",
    "mappings/*.yaml rows are looked up by date of service (effective/expires); "
    "mappings/billing/payer_profiles.yaml",
)

F_PAYER_UNKNOWN = "BILL-PAYER-UNKNOWN"
F_PAYER_DEFAULT = "BILL-PAYER-DEFAULT"
F_NO_RULES = "BILL-NO-RULES-FOR-DATE"
SKIP_NO_RULES = "no-rules-for-date"
DEFAULT_PROFILE = "default"  # the profile name the loader requires (mappings/schemas/billing.py)


def apply(ctx: BillingContext) -> None:
    profiles = ctx.rules.profiles
    if DEFAULT_PROFILE not in profiles:
        # A visit dated before the tables' rules took effect: suggest nothing rather than bill it under
        # rules that did not apply then.
        pids = tuple(ci.intervention.id for ci in ctx.classified)
        ctx.finding(
            F_NO_RULES,
            "high",
            f"No billing rules in force for the date of service {ctx.on}: the payer tables start later. "
            "No lines suggested; bill this visit by hand or add dated rules for it.",
            RULE_DATED,
            pids,
        )
        for pid in pids:
            ctx.skip(pid, SKIP_NO_RULES)
        ctx.stopped = True
        return
    default = profiles[DEFAULT_PROFILE]
    fallback = f"the default payer profile (unit rule {default.unit_rule}, no payer-specific edits) was used"
    active = sorted(
        (c for c in ctx.facts.coverages if _coverage_active(c, ctx.on)),
        key=lambda c: c.order if c.order is not None else 10_000,
    )
    if not active:
        ctx.finding(
            F_PAYER_UNKNOWN, "moderate", f"No active Coverage on the date of service; {fallback}.", RULE_PAYER
        )
        ctx.payer = PayerContext(default, None, "no active coverage")
        return
    cov = active[0]
    chosen = _match(cov, ctx)
    if chosen is None or chosen[0] not in profiles:
        basis = (
            "payer not recognised" if chosen is None else f"profile {chosen[0]!r} not in force on this date"
        )
        ctx.finding(
            F_PAYER_UNKNOWN,
            "moderate",
            f"Coverage {cov.id or '?'}: {basis}; {fallback}. Add a payer_match row.",
            RULE_PAYER,
        )
        ctx.payer = PayerContext(default, cov.id, basis)
        return
    prof = profiles[chosen[0]]
    if prof.profile == DEFAULT_PROFILE:
        ctx.finding(
            F_PAYER_DEFAULT,
            "low",
            f"Coverage {cov.id or '?'} ({chosen[1]}) maps to the default payer profile; "
            "configure the plan's own profile for payer-specific rules.",
            RULE_PAYER,
        )
    ctx.payer = PayerContext(prof, cov.id, chosen[1])


def _coverage_active(cov: CoverageFacts, on: date | None) -> bool:
    if cov.status not in (None, "active"):
        return False
    if on is None:
        return True
    if cov.period_start is not None and on < cov.period_start:
        return False
    return not (cov.period_end is not None and on > cov.period_end)


def _match(cov: CoverageFacts, ctx: BillingContext) -> tuple[str, str] | None:
    """(profile, basis) by identifier, then name, then SOPT code; None when nothing matches."""
    rows = ctx.rules.matches
    ids = set(cov.payor_identifiers)
    for r in rows:
        if r.kind == "payor_identifier" and r.value in ids:
            return r.profile, f"payor identifier {r.value}"
    names = [n.lower() for n in cov.payor_names if n]
    hits = [r for r in rows if r.kind == "payor_name" and any(r.value.lower() in n for n in names)]
    if hits:
        best = max(hits, key=lambda r: len(r.value))
        return best.profile, f"payor name contains {best.value!r}"
    sopt = [c.code for c in cov.type_codings if c.system in SOPT_SYSTEMS and c.code]
    coded = [(r, code) for r in rows if r.kind == "sopt" for code in sopt if code.startswith(r.value)]
    if coded:
        best_r, code = max(coded, key=lambda h: len(h[0].value))
        return best_r.profile, f"Source of Payment Typology {code} (prefix {best_r.value})"
    return None
