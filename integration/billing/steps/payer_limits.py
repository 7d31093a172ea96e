"""Step: the payer's limits on the final lines -- unit and visit caps, prior authorisation, same-day pairs.

Data: mappings/billing/payer_profiles.yaml (``units_per_day_cap``, ``timed_units_per_day_cap``,
``visits_per_year_cap``, ``prior_auth_codes``, ``prior_auth_all_except``, ``same_day_exclusions``).
ptbill reports a limit and, where a choice is needed (which units to bill), asks a person with a Task; it
never drops units itself.
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Rule

RULE_CAP = Rule("PAYER-CAP", "mappings/billing/payer_profiles.yaml unit/visit caps (billing-rules.md §5.6)")
RULE_PRIOR_AUTH = Rule(
    "PAYER-PRIOR-AUTH", "mappings/billing/payer_profiles.yaml prior authorisation (billing-rules.md §5.6)"
)
RULE_SAME_DAY = Rule(
    "PAYER-SAME-DAY", "mappings/billing/payer_profiles.yaml same-day exclusions (billing-rules.md §5.6)"
)

F_UNIT_CAP = "PAYER-UNIT-CAP"
A_UNIT_CAP = "PAYER-UNIT-CAP"
F_TIMED_UNIT_CAP = "PAYER-TIMED-UNIT-CAP"
F_VISIT_CAP = "PAYER-VISIT-CAP"
A_PRIOR_AUTH = "PRIOR-AUTH"
F_SAME_DAY = "PAYER-SAME-DAY-EXCLUSION"
# Prior ChargeItems that are no charge at all (and ptbill's own unreviewed suggestions) are not visits.
NOT_COUNTED_CHARGE_STATUSES = frozenset({"not-billable", "aborted", "entered-in-error"})


def apply(ctx: BillingContext) -> None:
    prof = ctx.profile
    billed = [ln for ln in ctx.lines if ln.units > 0]
    codes = {ln.code for ln in billed}
    total = sum(ln.units for ln in billed)
    timed_total = sum(ln.units for ln in billed if ln.timed)
    if prof.units_per_day_cap is not None and total > prof.units_per_day_cap:
        ctx.finding(
            F_UNIT_CAP,
            "high",
            f"{total} units today exceed payer profile '{prof.label}' cap of {prof.units_per_day_cap} units "
            "per day (timed and untimed combined).",
            RULE_CAP,
        )
        ctx.action(
            A_UNIT_CAP,
            f"Choose which {prof.units_per_day_cap} units to bill to '{prof.label}' "
            f"(documented services support {total}); ptbill does not choose.",
            RULE_CAP,
        )
    if prof.timed_units_per_day_cap is not None and timed_total > prof.timed_units_per_day_cap:
        ctx.finding(
            F_TIMED_UNIT_CAP,
            "high",
            f"{timed_total} timed units exceed the payer's cap of {prof.timed_units_per_day_cap} per day.",
            RULE_CAP,
        )
    on = ctx.on
    if prof.visits_per_year_cap is not None and on is not None:
        days = {
            pc.date
            for pc in ctx.facts.prior_charges
            if pc.date
            and pc.date.year == on.year
            and pc.date < on
            and pc.status not in NOT_COUNTED_CHARGE_STATUSES
            and not (pc.written_by_ptbill and pc.status == "planned")
        }
        if len(days) + 1 > prof.visits_per_year_cap:
            ctx.finding(
                F_VISIT_CAP,
                "high",
                f"This is visit {len(days) + 1} this year by prior charges on file; payer profile "
                f"'{prof.label}' allows {prof.visits_per_year_cap}.",
                RULE_CAP,
            )
    needs_auth = set(prof.prior_auth_codes) & codes
    if prof.prior_auth_all_except is not None:
        needs_auth |= codes - set(prof.prior_auth_all_except)
    if needs_auth:
        ctx.action(
            A_PRIOR_AUTH,
            f"Payer profile '{prof.label}' requires prior authorisation for {', '.join(sorted(needs_auth))}: "
            "confirm an authorisation covers this date of service and these units.",
            RULE_PRIOR_AUTH,
        )
    for x, y in prof.same_day_exclusions:
        if x in codes and y in codes:
            ctx.finding(
                F_SAME_DAY,
                "high",
                f"Payer profile '{prof.label}' does not pay {x} and {y} on the same day.",
                RULE_SAME_DAY,
                line=y,
            )
