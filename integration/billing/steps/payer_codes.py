"""Step: the code this payer wants for each entry, and whether it pays for it at all.

Data: mappings/billing/payer_code_rules.yaml (per profile and code: ``substitute`` with a replacement,
``bundled``, ``not_covered``), the profile's coverage lists (payer_profiles.yaml), and the code catalogue
(mappings/core/billable_codes.yaml).

Substitutions are data in both directions: for unattended e-stim Medicare's row says 97014 -> G0283 and a
commercial payer's row says G0283 -> 97014, so whichever code the note or the classifier used, the line
carries the code of the payer in force on the date of service (the loader requires every profile to state
its choice for every substitution pair). A substituted code is substituted once (no chains).

Minutes of untimed services (including bundled and not covered ones) count toward total treatment time.
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Entry, Item, Rule
from integration.model import Severity

RULE_CODE = Rule("PAYER-CODE", "mappings/billing/payer_code_rules.yaml (billing-rules.md §1, §5.5)")
RULE_COVERAGE = Rule(
    "PAYER-COVERAGE", "mappings/billing/payer_profiles.yaml coverage allow-list (billing-rules.md §5.6)"
)

F_SUBSTITUTED = "BILL-CODE-SUBSTITUTED"
F_UNKNOWN_CODE = "BILL-CODE-UNKNOWN"
F_BUNDLED = "BILL-PAYER-BUNDLED"
F_NOT_COVERED = "BILL-PAYER-NOT-COVERED"
SKIP_UNKNOWN_CODE = "not-a-billable-code"
SKIP_BUNDLED = "bundled-by-payer"
SKIP_NOT_COVERED = "not-covered-by-payer"


def apply(ctx: BillingContext) -> None:
    for entry in ctx.entries:
        item = _item(ctx, entry)
        if item is not None:
            ctx.items.append(item)


def _item(ctx: BillingContext, entry: Entry) -> Item | None:
    prof = ctx.profile
    pid = entry.pid
    code = entry.code
    rule = ctx.rules.code_rules.get((prof.profile, code))
    if rule is not None and rule.action == "substitute" and rule.replacement is not None:
        ctx.finding(
            F_SUBSTITUTED, "low", f"{rule.message} ({prof.label})", RULE_CODE, (pid,), rule.replacement
        )
        code = rule.replacement
        rule = ctx.rules.code_rules.get((prof.profile, code))
    cat = ctx.rules.codes.get(code)
    if cat is None:
        ctx.skip(pid, SKIP_UNKNOWN_CODE)
        ctx.finding(
            F_UNKNOWN_CODE,
            "moderate",
            f"Code {code} is not in the billable code catalogue on this date; no line suggested.",
            RULE_CODE,
            (pid,),
            code,
        )
        return None
    if not cat.timed and entry.minutes:
        ctx.untimed_minutes += entry.minutes
    if rule is not None and rule.action in ("bundled", "not_covered"):
        bundled = rule.action == "bundled"
        severity: Severity = "low" if bundled else "moderate"
        ctx.skip(pid, SKIP_BUNDLED if bundled else SKIP_NOT_COVERED)
        ctx.finding(F_BUNDLED if bundled else F_NOT_COVERED, severity, rule.message, RULE_CODE, (pid,), code)
        return None
    if (prof.covered_codes is not None and code not in prof.covered_codes) or code in prof.not_covered_codes:
        ctx.skip(pid, SKIP_NOT_COVERED)
        ctx.finding(
            F_NOT_COVERED,
            "moderate",
            f"{code} is not on the covered-code list of payer profile '{prof.label}'; no line suggested. "
            "Check the plan's benefits before billing the patient.",
            RULE_COVERAGE,
            (pid,),
            code,
        )
        return None
    return Item(entry.ci, code, cat, entry.minutes, entry.minutes, cat.disciplines[0], share=entry.share)
