"""Step: Medicare KX threshold -- an estimate with its basis, a Flag and a Task; KX is never added by ptbill.

Data: mappings/billing/kx_thresholds.yaml (per year: PT+SLP together, OT separately) and fee_schedule.yaml
(the clinic's allowed amount per unit, to price charges), ``kx_applies`` and ``kx_near_fraction`` of the
payer profile. The estimate: this year's prior ChargeItems of other encounters before this date (never
ptbill's own unreviewed suggestions, so the order of a sync cannot change it) + this visit + the spend at
other providers entered by a user. Only the MAC's data has the true total, and the Task says so.

A year without a threshold row, or codes without a fee row on the date, are findings (never a silent $0).
"""

from __future__ import annotations

from collections import defaultdict

from integration.billing.context import BillingContext, Rule
from integration.billing.steps.payer_limits import NOT_COUNTED_CHARGE_STATUSES
from integration.model import PriorCharge
from mappings.tables import MissingRuleError

RULE_KX = Rule(
    "KX",
    "NGS CY2024 KX article; Noridian JE thresholds; mappings/billing/kx_thresholds.yaml and "
    "fee_schedule.yaml "
    "(billing-rules.md §4.3)",
)

F_NO_DATE = "KX-NO-DATE"
F_NO_THRESHOLD = "KX-NO-THRESHOLD"
F_NO_FEE = "KX-NO-FEE"
FLAG_EXCEEDED = "KX-THRESHOLD-EXCEEDED"
FLAG_NEAR = "KX-THRESHOLD-NEAR"
A_ATTEST_KX = "ATTEST-KX"
BUCKET_LABELS = {"PT_SLP": "PT+SLP", "OT": "OT"}


def apply(ctx: BillingContext) -> None:
    prof = ctx.profile
    on = ctx.on
    if not prof.kx_applies or prof.kind != "medicare":
        return
    if on is None:
        ctx.finding(
            F_NO_DATE, "moderate", "No date of service: the KX threshold year cannot be chosen.", RULE_KX
        )
        return
    fees = ctx.rules.fees
    prior = _prior_charges(ctx)
    undated = sum(1 for pc in ctx.facts.prior_charges if pc.date is None)
    unpriced = sorted(
        {pc.code for pc in prior if pc.code not in fees}
        | {ln.code for ln in ctx.lines if ln.code not in fees}
    )
    if unpriced:
        ctx.finding(
            F_NO_FEE,
            "moderate",
            f"No fee on {on} for {', '.join(unpriced)}: the KX spend estimate counts them as $0, so it is "
            "low. "
            "Add them to mappings/billing/fee_schedule.yaml.",
            RULE_KX,
        )
    prior_amt = sum(fees.get(pc.code, 0.0) * pc.units for pc in prior)
    buckets: dict[str, float] = defaultdict(float)
    for ln in ctx.lines:
        if ln.units:
            buckets["OT" if ln.discipline == "OT" else "PT_SLP"] += fees.get(ln.code, 0.0) * ln.units
    near = prof.kx_near_fraction
    if near is None:  # the schema requires it with kx_applies: never a default fraction
        raise MissingRuleError("payer_profiles", on, {"profile": prof.profile}, "kx_near_fraction missing")
    for bucket, visit_amt in sorted(buckets.items()):
        th = ctx.rules.kx_thresholds.get((on.year, bucket))
        label = BUCKET_LABELS[bucket]
        if th is None:
            ctx.finding(
                F_NO_THRESHOLD,
                "moderate",
                f"No KX threshold on file for {on.year} ({label}); add it to kx_thresholds.yaml.",
                RULE_KX,
            )
            continue
        est = prior_amt + visit_amt + ctx.facts.prior_provider_spend
        basis = (
            f"estimate ${est:,.2f} = prior ChargeItems this year ${prior_amt:,.2f} ({len(prior)} charge(s), "
            "other "
            "encounters only, priced with the clinic's configurable fee schedule; not split by discipline) "
            "+ this "
            f"visit ${visit_amt:,.2f} + prior-provider spend entered ${ctx.facts.prior_provider_spend:,.2f}"
        )
        if unpriced:
            basis += f"; codes without a fee counted as $0: {', '.join(unpriced)}"
        if undated:
            basis += f"; {undated} undated charge(s) ignored"
        basis += (
            f". Threshold {on.year} ({label}) ${th.amount:,.2f} [{th.confidence}; {th.source}]"
            + (f" Note: {th.note}" if th.note else "")
            + ". Estimate only: spend at other providers is known only as entered; the MAC's eligibility "
            "data has the true total."
        )
        key = f"{on.year}-{bucket}"
        if est > th.amount:
            # Flags are patient-level and several encounters raise the same one: their text must not
            # depend on which encounter wrote it last (the per-visit basis is in the Task).
            ctx.flag(
                FLAG_EXCEEDED,
                f"Medicare KX threshold {on.year} ({label}, ${th.amount:,.2f}) likely exceeded by estimate; "
                "see the ATTEST-KX Task of the visit for the basis. KX is never added by ptbill.",
                RULE_KX,
                key,
            )
            ctx.action(
                A_ATTEST_KX,
                f"Services this visit appear to be above the {on.year} KX threshold ({label}). If they are "
                f"medically necessary and the documentation justifies them, the clinician attests and KX is "
                f"added to the lines; ptbill does not add KX. Basis: {basis}",
                RULE_KX,
                priority="urgent",
            )
        elif est >= near * th.amount:
            ctx.flag(
                FLAG_NEAR,
                f"Medicare KX threshold {on.year} ({label}, ${th.amount:,.2f}) approaching "
                f"({near:.0%} or more by estimate); see the ATTEST-KX Task of the visit for the basis.",
                RULE_KX,
                key,
            )
            ctx.action(
                A_ATTEST_KX,
                f"The {on.year} KX threshold ({label}) is near. Prepare the medical-necessity attestation "
                "for "
                f"KX and verify the running total on the MAC portal. Basis: {basis}",
                RULE_KX,
            )


def _prior_charges(ctx: BillingContext) -> list[PriorCharge]:
    on = ctx.on
    eid = ctx.facts.encounter_id
    same_enc = {eid, f"Encounter/{eid}"}
    return [
        pc
        for pc in ctx.facts.prior_charges
        if pc.date is not None
        and on is not None
        and pc.date.year == on.year
        and pc.date < on
        and pc.status not in NOT_COUNTED_CHARGE_STATUSES
        and not (pc.written_by_ptbill and pc.status == "planned")
        and not (pc.encounter and (pc.encounter in same_enc or pc.encounter.endswith(f"/{eid}")))
    ]
