"""Step: group therapy -- one unit per session, two or more patients, never in the same time as one-on-one.

Data: the ``category`` column of mappings/core/billable_codes.yaml (``group``: 97150) and
mappings/billing/documentation_rules.yaml ``max_units_97150``; group size from the ptbill ``group-size``
extension (Procedure, else Encounter). "If a therapist ... performs any of the procedures with two or more
individuals concurrently or during the same time period, then only 97150 is reported" (Transmittal 1753).
"""

from __future__ import annotations

from integration.billing.context import BillingContext, Rule
from integration.billing.timeline import overlaps, parse_period

RULE_GROUP = Rule(
    "DOC-GROUP",
    "Carrier text (Transmittal 1753) via codingahead.com/APTA: 97150 once per session; concurrent procedures "
    "with 2+ patients -> only 97150 (billing-rules.md §5.2)",
)

F_GROUP_REPEATED = "DOC-GROUP-REPEATED"
F_GROUP_SIZE = "DOC-GROUP-SIZE"
F_GROUP_WITH_ONE_ON_ONE = "DOC-GROUP-WITH-ONE-ON-ONE"


def apply(ctx: BillingContext) -> None:
    group = [it for it in ctx.items if it.cat.category == "group"]
    if not group:
        return
    pids = tuple(dict.fromkeys(it.pid for it in group))
    for code in sorted({it.code for it in group}):
        entries = [it for it in group if it.code == code]
        max_units = ctx.rules.documentation("max_units_97150")
        if len(entries) > max_units:
            ctx.finding(
                F_GROUP_REPEATED,
                "moderate",
                f"{code} documented {len(entries)} times; it is billed at most {max_units} unit per session.",
                RULE_GROUP,
                tuple(dict.fromkeys(it.pid for it in entries)),
                code,
            )
    line = group[0].code
    sizes = [
        s for s in [ctx.facts.group_size, *(it.intervention.group_size for it in group)] if s is not None
    ]
    if not sizes:
        ctx.finding(
            F_GROUP_SIZE,
            "low",
            f"Record the number of patients in the group session ({line}).",
            RULE_GROUP,
            pids,
            line,
        )
    elif min(sizes) < 2:
        ctx.finding(
            F_GROUP_SIZE,
            "high",
            f"{line} requires two or more patients; the documented group size is {min(sizes)}.",
            RULE_GROUP,
            pids,
            line,
        )
    one_on_one = [it for it in ctx.items if it.timed]
    if not one_on_one:
        return
    gp = [parse_period(it.intervention.performed_start, it.intervention.performed_end) for it in group]
    op = [parse_period(it.intervention.performed_start, it.intervention.performed_end) for it in one_on_one]
    both = tuple(dict.fromkeys(it.pid for it in group + one_on_one))
    known_g = [p for p in gp if p is not None]
    known_o = [p for p in op if p is not None]
    if len(known_g) < len(gp) or len(known_o) < len(op):
        ctx.finding(
            F_GROUP_WITH_ONE_ON_ONE,
            "moderate",
            f"Group therapy ({line}) and one-on-one timed codes on the same day without documented times: "
            f"show they were in separate time periods, otherwise only {line} is reported.",
            RULE_GROUP,
            both,
        )
        return
    if any(overlaps(x, y) for x in known_g for y in known_o):
        ctx.finding(
            F_GROUP_WITH_ONE_ON_ONE,
            "high",
            f"One-on-one timed codes overlap in time with group therapy ({line}): procedures done with two "
            "or "
            f"more patients in the same period are reported only as {line}.",
            RULE_GROUP,
            both,
        )
