"""Step: timed items without minutes -> minutes from the documented total, or no units and a Task.

Medicare does not require minutes per code, only the total timed minutes (MBPM ch. 15 §220.3). When some
timed items have no minutes of their own:

* a documented total timed minutes covers them: the total less the minutes of the other items (after time
  accounting) is split evenly among them (one extra minute to the first in code order), with a finding;
  under the AMA rule (units per code) a Task asks for the real minutes per code;
* no total (or a total below the minutes already known): they get no units, a Task asks for the minutes,
  and under the CMS rule (pooled minutes) the other codes' units are marked provisional.
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Rule

RULE_ALLOCATED = Rule(
    "MINUTES-ALLOCATED",
    "MBPM ch. 15 §220.3: per-code minutes not required, totals are (billing-rules.md §0.2, §2.3)",
)
RULE_MISSING = Rule(
    "MINUTES-MISSING",
    "MBPM ch. 15 §220.3: total timed code minutes must be documented (billing-rules.md §2.3)",
)

F_ALLOCATED = "BILL-MINUTES-ALLOCATED"
F_PROVISIONAL = "BILL-UNITS-PROVISIONAL"
A_MINUTES = "DOC-MINUTES"
A_MINUTES_PER_CODE = "DOC-MINUTES-PER-CODE"
SKIP_NO_MINUTES = "no-minutes"


def apply(ctx: BillingContext) -> None:
    prof = ctx.profile
    timed = [it for it in ctx.items if it.timed]
    missing = sorted((it for it in timed if it.minutes is None), key=lambda it: (it.code, it.pid))
    if not missing:
        return
    known = sum(it.minutes or 0 for it in timed if it.minutes is not None)
    total = ctx.facts.documented_total_timed_minutes
    pids = tuple(dict.fromkeys(it.pid for it in missing))
    if total is None or total - known < 0:
        why = (
            "no per-intervention minutes and no documented total timed minutes"
            if total is None
            else f"documented total timed minutes ({total}) is less than the minutes recorded per "
            f"intervention ({known})"
        )
        ctx.action(
            A_MINUTES,
            f"Add the minutes for {len(missing)} timed intervention(s) "
            f"({', '.join(sorted({i.code for i in missing}))}) or the total timed minutes for the visit: "
            f"{why}. No units were suggested for them.",
            RULE_MISSING,
            pids,
            priority="urgent",
        )
        for pid in pids:
            ctx.skip(pid, SKIP_NO_MINUTES)
        if known and prof.unit_rule == "CMS":  # AMA: each code stands alone, the other codes are final
            ctx.finding(
                F_PROVISIONAL,
                "moderate",
                "Units were computed from the interventions that have minutes only; they may rise once the "
                "missing minutes are documented (CMS pools all timed minutes of the day).",
                RULE_MISSING,
                pids,
            )
        ctx.items[:] = [it for it in ctx.items if it not in missing]
        return
    remaining = total - known
    base, extra = divmod(remaining, len(missing))
    for i, it in enumerate(missing):
        it.minutes = base + (1 if i < extra else 0)
        it.allocated = True
    ctx.finding(
        F_ALLOCATED,
        "moderate",
        f"Per-intervention minutes are missing for {len(missing)} timed intervention(s); the documented "
        "total "
        f"timed minutes ({total}) less the minutes recorded per intervention ({known}) = {remaining} min "
        "were "
        f"split evenly ({base} min each, one extra minute to the first {extra} in code order). Confirm or "
        "record actual minutes.",
        RULE_ALLOCATED,
        pids,
    )
    if prof.unit_rule == "AMA":
        ctx.action(
            A_MINUTES_PER_CODE,
            f"Payer profile '{prof.label}' counts units per code (AMA rule): record the minutes of each "
            "timed "
            "intervention; the even split is only an estimate.",
            RULE_ALLOCATED,
            pids,
        )
