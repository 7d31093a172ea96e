"""Step (two entry points): add-on codes only with their primary; time beyond its first unit to the add-on.

Data: mappings/core/billable_codes.yaml columns ``add_on_to`` (an add-on's primary) and
``additional_units_code`` (a primary reported once whose further time is reported with that add-on,
e.g. 97129 initial 15 min / +97130 each additional 15 min).

* ``pair`` (before time accounting and units): an add-on documented without its primary on the date of
  service gets no line (a finding; an add-on is never paid alone). When the primary continues into the
  add-on, the add-on's minutes are counted with the primary's, so the units of the service are decided
  once on its whole time (CMS pooled or AMA per code, like any timed code).
* ``split`` (after the units and the CQ/CO split): of such a primary's units, the first stays on the
  primary and the rest move to the add-on code, each keeping its assistant modifier (lines without one
  keep the primary unit first).
"""

from __future__ import annotations

from dataclasses import replace

from integration.billing.context import BillingContext, Line, Rule
from integration.model import Evidence

RULE_ADD_ON = Rule(
    "ADD-ON-PRIMARY",
    "CPT add-on codes are reported only with their primary; 97129 initial 15 min / +97130 each additional "
    "15 min, 97129 once per day (billing-rules.md §1); mappings/core/billable_codes.yaml add_on_to",
)

F_ADD_ON_ALONE = "BILL-ADDON-WITHOUT-PRIMARY"
SKIP_ADD_ON_ALONE = "add-on-without-primary"


def pair(ctx: BillingContext) -> None:
    codes = {it.code for it in ctx.items}
    kept = []
    for it in ctx.items:
        primary = it.cat.add_on_to
        if primary is None:
            kept.append(it)
            continue
        if primary not in codes:
            ctx.skip(it.pid, SKIP_ADD_ON_ALONE)
            ctx.finding(
                F_ADD_ON_ALONE,
                "moderate",
                f"{it.code} is an add-on code and is billed only with its primary {primary} on the same "
                "date; "
                f"{primary} is not documented, so no {it.code} line is suggested. If the service was "
                f"furnished, document it under {primary} (and {it.code} for its additional time).",
                RULE_ADD_ON,
                (it.pid,),
                it.code,
            )
            continue
        primary_cat = ctx.rules.codes[primary]
        if primary_cat.additional_units_code == it.code:  # one service: count its time once, with the primary
            it.code, it.cat = primary, primary_cat
        kept.append(it)
    ctx.items[:] = kept


def split(ctx: BillingContext) -> None:
    out: list[Line] = []
    for code in sorted({ln.code for ln in ctx.lines}):
        lines = [ln for ln in ctx.lines if ln.code == code]
        add_on = ctx.rules.codes[code].additional_units_code
        if add_on is None or sum(ln.units for ln in lines) <= 1:
            out.extend(lines)
            continue
        lines.sort(key=lambda ln: len(ln.modifiers))  # the line without an assistant modifier first
        total = sum(ln.units for ln in lines)
        why = Evidence(
            "rule",
            f"{code} is reported once (its first unit); the other {total - 1} unit(s) of the same service "
            "are "
            f"reported as add-on {add_on}",
            RULE_ADD_ON.id,
        )
        first, rest = lines[0], lines[1:]
        if first.units > 1:
            rest.insert(0, replace(first, units=first.units - 1, modifiers=list(first.modifiers)))
        out.append(
            replace(
                first, units=1, evidence=[*first.evidence, why], rule_ids=[*first.rule_ids, RULE_ADD_ON.id]
            )
        )
        for ln in rest:
            out.append(
                replace(
                    ln,
                    code=add_on,
                    minutes=None,
                    modifiers=list(ln.modifiers),
                    evidence=[*ln.evidence, why],
                    rule_ids=[*ln.rule_ids, RULE_ADD_ON.id],
                )
            )
    ctx.lines[:] = out
