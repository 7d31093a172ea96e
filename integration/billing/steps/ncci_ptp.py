"""Step: NCCI procedure-to-procedure edits -- 59 only with documented separate time blocks, else a Task.

Data: the official CMS practitioner PTP file when loaded (``integration/billing/ncci.py``), else
mappings/billing/ncci_ptp_seed.yaml; ``denies_pair_even_with_59`` of the payer profile.

For each edit in force whose two codes are both billed today:

* modifier indicator 0: no modifier can unbundle the pair (a finding);
* indicator 1: when every Procedure of both codes has a performed period and none of column 1's overlaps
  column 2's, the services were in distinct time blocks and 59 goes on the column-2 line (CMS "Proper Use of
  Modifier 59", Example 9); otherwise a Task asks a person to attest 59 or an X modifier -- ptbill never
  adds one silently, and never both 59 and an X modifier;
* a payer known to deny the pair even with 59: a finding (expect a denial and an appeal).
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Item, Rule
from integration.billing.ncci import PtpEdit
from integration.billing.timeline import overlaps, parse_period
from integration.model import Evidence, Modifier

RULE_PTP = Rule(
    "NCCI-PTP",
    "NCCI practitioner PTP edits (official quarterly file when loaded, else ncci_ptp_seed.yaml) "
    "(billing-rules.md §3.1-3.2)",
)
RULE_59 = Rule(
    "MOD-59",
    "CMS 'Proper Use of Modifier 59' Example 9 (97140/97530 distinct 15-minute time blocks); X{EPSU} since "
    "2015 (billing-rules.md §3.2, §4.4)",
)
RULE_DENIES_59 = Rule(
    "PAYER-DENIES-59",
    "webpt.com blog: Anthem/Aetna/Humana deny 97530 with 97140 even with 59 [SECONDARY] (billing-rules.md "
    "§3.2)",
)

F_NO_MODIFIER = "NCCI-PTP-NO-MODIFIER"
F_DENIES_WITH_59 = "PAYER-DENIES-PAIR-WITH-59"
A_ATTEST_59 = "ATTEST-59"
DISTINCT_MODIFIERS = ("59", "XE", "XS", "XP", "XU")


def edits(ctx: BillingContext) -> list[PtpEdit]:
    if ctx.edits is not None and ctx.edits.ptp:
        return [e for e in ctx.edits.ptp if e.active_on(ctx.on)]
    return [
        PtpEdit(
            r.column1,
            r.column2,
            r.effective,
            r.expires,
            r.modifier_indicator,
            "",
            r.source,
            r.confidence,
            r.note or "",
        )
        for r in ctx.rules.ptp_seed
    ]


def apply(ctx: BillingContext) -> None:
    prof = ctx.profile
    billed = {ln.code for ln in ctx.lines if ln.units > 0}
    denies = {tuple(p) for p in prof.denies_pair_even_with_59}
    for e in edits(ctx):
        if e.column1 not in billed or e.column2 not in billed or e.modifier_indicator == 9:
            continue
        confidence = f" [{e.confidence}]" if e.confidence != "PRIMARY" else ""
        basis = (
            f"NCCI PTP {e.column1}/{e.column2} (column 2 = {e.column2}, modifier indicator "
            f"{e.modifier_indicator}; {e.source}{confidence})"
        )
        pids = tuple(dict.fromkeys(it.pid for it in ctx.items if it.code in (e.column1, e.column2)))
        if e.modifier_indicator == 0:
            ctx.finding(
                F_NO_MODIFIER,
                "high",
                f"{basis}: no modifier can unbundle this pair; {e.column2} is not payable with {e.column1} "
                "on the "
                "same date. Review which service to bill.",
                RULE_PTP,
                pids,
                e.column2,
            )
            continue
        first = [it for it in ctx.items if it.code == e.column1]
        second = [it for it in ctx.items if it.code == e.column2]
        if _separate_blocks(first, second):
            for ln in ctx.lines:
                if ln.code == e.column2 and not any(m.code in DISTINCT_MODIFIERS for m in ln.modifiers):
                    ln.modifiers.append(
                        Modifier(
                            "59",
                            RULE_59.id,
                            f"{basis}: documented performed periods of {e.column1} and {e.column2} do not "
                            "overlap "
                            "(distinct time blocks, as in CMS's 97140/97530 example)",
                        )
                    )
                    ln.rule_ids.append(RULE_59.id)
                    ln.evidence.append(
                        Evidence("field", "non-overlapping Procedure.performedPeriod", RULE_59.id)
                    )
        else:
            ctx.action(
                A_ATTEST_59,
                f"{basis}. Both were billed today but the documentation does not show separate time blocks "
                f"(non-overlapping performed periods). If {e.column2} was done in a distinct time block, "
                "session "
                f"(XE), structure (XS) or is otherwise non-overlapping (XU), attest it and add 59 or one X "
                f"modifier (never both); otherwise {e.column2} should not be billed with {e.column1}.",
                RULE_59,
                pids,
                e.column2,
            )
        if (e.column1, e.column2) in denies or (e.column2, e.column1) in denies:
            ctx.finding(
                F_DENIES_WITH_59,
                "moderate",
                f"Payer profile '{prof.label}' denies {e.column2} with {e.column1} even with 59: expect a "
                "denial "
                "and an appeal with the time-block documentation.",
                RULE_DENIES_59,
                pids,
                e.column2,
            )


def _separate_blocks(a: list[Item], b: list[Item]) -> bool:
    """True only when every item of both codes has a period and none of a's overlaps b's."""
    pa = [parse_period(it.intervention.performed_start, it.intervention.performed_end) for it in a]
    pb = [parse_period(it.intervention.performed_start, it.intervention.performed_end) for it in b]
    if not pa or not pb:
        return False
    for x in pa:
        for y in pb:
            if x is None or y is None or overlaps(x, y) is not False:
                return False
    return True
