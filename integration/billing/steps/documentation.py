"""Step: the note's totals against the billing -- "the billing and the total timed code treatment minutes
must be consistent" (MBPM ch. 15 §220.3).

Data: the documented total timed minutes and total treatment minutes of the encounter (ptbill extensions
or Encounter.length), the ``unit_rule`` and ``kind`` of the payer profile.

Units are compared with the total under the CMS rule when the timed lines are of one discipline (units
are pooled per discipline; one encounter total cannot check several pools -- then the minutes are).
One discrepancy, one finding: when the minutes per intervention disagree with the documented total AND
the units differ, the unit finding says both; the plain minutes mismatch is reported only when the units
agree. A documented total equal to either the per-intervention minutes as documented or as counted (overlaps
removed, the time-accounting step's finding) is consistent with the billing.
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Rule
from integration.billing.units import cms_total_units
from integration.model import UNSUPPORTED

RULE_TOTALS = Rule(
    "DOC-TOTALS",
    "MBPM ch. 15 §220.3: 'The billing and the total timed code treatment minutes must be consistent' "
    "(billing-rules.md §2.3, §5.1)",
)

F_UNITS_EXCEED_TOTAL = "DOC-UNITS-EXCEED-TOTAL"
F_UNITS_BELOW_TOTAL = "DOC-UNITS-BELOW-TOTAL"
F_TIMED_MISMATCH = "DOC-TIMED-MINUTES-MISMATCH"
F_TREATMENT_LT_TIMED = "DOC-TREATMENT-LT-TIMED"
F_TREATMENT_MISMATCH = "DOC-TREATMENT-MINUTES-MISMATCH"
F_TOTALS_MISSING = "DOC-TOTALS-MISSING"

# --- wider code set (issue 8 §5): classification findings a person must act on -> Tasks ------------------
RULE_DOC_TASKS = Rule(
    "DOC-CLASSIFY-TASKS",
    "Issue 8 §5: where the documentation does not establish the code, a person documents or attests "
    "(CPT 97161-97167 components, APTA/AOTA 2017; CPT 20560/20561) [SECONDARY]",
)
A_ATTEST_EVAL_COMPLEXITY = "ATTEST-EVAL-COMPLEXITY"
A_DOC_NEEDLING_MUSCLES = "DOC-DRY-NEEDLING-MUSCLES"
# classification finding code -> (Task code, what the person is asked to do)
_TASK_FOR_FINDING = {
    "DOC-EVAL-COMPLEXITY": (
        A_ATTEST_EVAL_COMPLEXITY,
        "Document or attest the evaluation's complexity components; the suggested level is the one the note "
        "supports.",
    ),
    "DOC-DRY-NEEDLING-MUSCLES": (A_DOC_NEEDLING_MUSCLES, "Name each muscle needled (20560: 1-2, 20561: 3+)."),
}


def apply(ctx: BillingContext) -> None:
    prof = ctx.profile
    facts = ctx.facts
    timed_items = [it for it in ctx.items if it.timed]
    per_item = sum(it.documented_minutes or 0 for it in timed_items if not it.allocated)
    counted = sum(it.minutes or 0 for it in timed_items if not it.allocated)
    all_known = all(it.documented_minutes is not None and not it.allocated for it in timed_items)
    timed_units = sum(ln.units for ln in ctx.lines if ln.timed)
    tt = facts.documented_total_timed_minutes
    tx = facts.documented_total_treatment_minutes
    if tt is not None:
        # a total matching the minutes as counted (overlaps removed) is consistent with the billing
        mismatch = bool(timed_items) and all_known and tt not in (per_item, counted)
        said = f" (the per-intervention timed minutes add up to {per_item})" if mismatch else ""
        unit_finding = False
        # Units are pooled per discipline (plan of care); one encounter total cannot check several pools,
        # so with timed lines of more than one discipline only the minutes are compared.
        pools = len({ln.discipline for ln in ctx.lines if ln.timed})
        if prof.unit_rule == "CMS" and pools <= 1:
            supported = cms_total_units(tt)
            if timed_units > supported:
                unit_finding = True
                ctx.finding(
                    F_UNITS_EXCEED_TOTAL,
                    "high",
                    f"{timed_units} timed units suggested but the documented {tt} total timed minutes "
                    "support "
                    f"{supported}{said}. Billing and total timed minutes must be consistent.",
                    RULE_TOTALS,
                )
            elif timed_units < supported and all_known:
                unit_finding = True
                unbilled = _unbilled_timed(ctx)
                why = (
                    f"; {unbilled} documented intervention(s) with minutes got no line (unclassifiable or "
                    "not "
                    "recognised as therapy): document what was done"
                    if unbilled
                    else "; check for timed services missing from the record"
                )
                ctx.finding(
                    F_UNITS_BELOW_TOTAL,
                    "low",
                    f"Documented {tt} total timed minutes support {supported} units but the billed "
                    f"interventions give {timed_units}{said}{why}.",
                    RULE_TOTALS,
                )
        if mismatch and not unit_finding:
            same = (
                f" Both give {timed_units} timed unit(s); correct whichever is wrong so the note agrees."
                if prof.unit_rule == "CMS"
                else ""
            )
            ctx.finding(
                F_TIMED_MISMATCH,
                "low" if prof.unit_rule == "CMS" else "moderate",
                f"Per-intervention timed minutes add up to {per_item} but the note documents {tt} total "
                "timed "
                f"minutes.{same}",
                RULE_TOTALS,
            )
    if tx is not None and tt is not None and tx < tt:
        ctx.finding(
            F_TREATMENT_LT_TIMED,
            "high",
            f"Total treatment time ({tx} min) is less than total timed minutes ({tt} min).",
            RULE_TOTALS,
        )
    if tx is not None:
        timed_sum = tt if tt is not None else counted
        if timed_sum + ctx.untimed_minutes > tx:
            ctx.finding(
                F_TREATMENT_MISMATCH,
                "moderate",
                f"Timed ({timed_sum}) plus untimed ({ctx.untimed_minutes}) minutes exceed the documented "
                "total "
                f"treatment time ({tx} min).",
                RULE_TOTALS,
            )
    if ctx.lines and prof.kind == "medicare" and (tt is None or tx is None):
        ctx.finding(
            F_TOTALS_MISSING,
            "low",
            "The treatment note should record total timed code minutes and total treatment minutes.",
            RULE_TOTALS,
        )
    classification_tasks(ctx)


def classification_tasks(ctx: BillingContext) -> None:
    """One Task per classification finding a person must act on (evaluation complexity to attest, needled
    muscles to name, a note copied from an earlier visit), with the finding's own detail."""
    for ci in ctx.classified:
        for f in ci.classification.findings:
            task = _TASK_FOR_FINDING.get(f.code)
            if task is not None:
                code, ask = task
                ctx.action(code, f"{ask} {f.message}", RULE_DOC_TASKS, f.procedure_ids, f.line_code)


def _unbilled_timed(ctx: BillingContext) -> int:
    """Completed interventions with minutes that got no code: UNSUPPORTED, or not recognised as therapy."""
    coded = {
        ci.intervention.id
        for ci in ctx.classified
        if ci.classification.code != UNSUPPORTED or ci.classification.shares
    }
    return sum(
        1 for i in ctx.facts.interventions if i.status == "completed" and i.minutes and i.id not in coded
    )
