"""Step: units per code, one line per code per discipline and date of service.

Data: ``unit_rule`` of the payer profile (mappings/billing/payer_profiles.yaml) and ``timed`` of the code
table (mappings/core/billable_codes.yaml). Arithmetic: integration/billing/units.py.

* Timed codes, per discipline: the CMS total-time rule (pool the day's timed minutes, whole units first,
  leftover units to the largest remainders, ties to the lower code) or the AMA/CPT midpoint rule (each code
  on its own), on the minutes counted by the time-accounting and minutes steps. A timed code that gets no
  unit keeps no line (a finding: its minutes still count toward the total).
* Untimed codes: one unit per session, whatever the minutes (which count toward total treatment time only);
  documented more than once: still one unit, with a finding.
* Timed codes are reported on a single line per date of service (FCSO, from 2021-04-19); the CQ/CO split
  of a line comes next (assistant step).
"""

from __future__ import annotations

from collections import defaultdict

from integration.billing.context import BillingContext, Item, Line, Rule
from integration.billing.steps.entries import RULE_SHARES
from integration.billing.steps.minutes import RULE_ALLOCATED
from integration.billing.units import TIE_BREAK, allocate
from integration.model import Evidence
from mappings.schemas.core import Discipline

RULE_CMS = Rule(
    "UNITS-CMS", "CMS Pub. 100-04 ch. 5 §20.2 total-time rule [PRIMARY] (billing-rules.md §2.1-2.2)"
)
RULE_AMA = Rule(
    "UNITS-AMA", "CPT midpoint rule as quoted by Premera (billing-rules.md §2.4) [PRIMARY text via payer]"
)
RULE_UNTIMED = Rule(
    "UNITS-UNTIMED",
    "FCSO/NGS untimed codes: 1 unit per session; minutes count toward total treatment time only "
    "(billing-rules.md §1, §2.3)",
)
RULE_ONE_LINE = Rule(
    "UNITS-ONE-LINE",
    "FCSO: timed codes reported once per date of service on a single line (from 2021-04-19) "
    "(billing-rules.md §2.1)",
)

F_UNITS_ZERO = "BILL-UNITS-ZERO"
F_UNITS_TIE = "BILL-UNITS-TIE"
F_UNTIMED_REPEATED = "BILL-UNTIMED-REPEATED"


def apply(ctx: BillingContext) -> None:
    by_disc: dict[Discipline, list[Item]] = defaultdict(list)
    for it in ctx.items:
        by_disc[it.discipline].append(it)
    for disc, group in sorted(by_disc.items()):
        _timed(ctx, disc, [it for it in group if it.timed])
        for code in sorted({it.code for it in group if not it.timed}):
            _untimed(ctx, disc, [it for it in group if it.code == code and not it.timed])


def _timed(ctx: BillingContext, disc: Discipline, group: list[Item]) -> None:
    if not group:
        return
    prof = ctx.profile
    rule = RULE_AMA if prof.unit_rule == "AMA" else RULE_CMS
    minutes: dict[str, int] = defaultdict(int)
    for it in group:
        minutes[it.code] += it.minutes or 0
    alloc = allocate(minutes, prof.unit_rule)
    zero: list[str] = []
    for code in sorted(minutes):
        members = [it for it in group if it.code == code]
        units = alloc.units.get(code, 0)
        if units == 0:
            zero.append(code)
            continue
        ev = [Evidence("rule", alloc.explanation[code], rule.id)]
        if any(it.allocated for it in members):
            ev.append(
                Evidence("rule", "minutes partly allocated from the documented total", RULE_ALLOCATED.id)
            )
        line = Line(
            code, units, disc, True, minutes[code], members, prof.unit_rule, evidence=ev + _shares(members)
        )
        line.rule_ids += [rule.id, RULE_ONE_LINE.id]
        ctx.lines.append(line)
    if zero:
        ctx.finding(
            F_UNITS_ZERO,
            "low",
            f"Timed code(s) {', '.join(zero)} documented but get no unit under the "
            f"{'AMA' if prof.unit_rule == 'AMA' else 'CMS total-time'} rule ({alloc.total_minutes} timed min "
            "-> "
            f"{alloc.total_units} unit(s)); keep them in the note, they count toward the total.",
            rule,
            tuple(dict.fromkeys(it.pid for it in group if it.code in zero)),
        )
    if alloc.tie_broken:
        ctx.finding(F_UNITS_TIE, "low", f"Equal remainders: {TIE_BREAK}. CMS allows either code.", rule)


def _untimed(ctx: BillingContext, disc: Discipline, members: list[Item]) -> None:
    code = members[0].code
    known = [it.minutes for it in members if it.minutes is not None]
    ev = Evidence(
        "rule",
        f"{code} is untimed: 1 unit per session; its minutes count toward total treatment time only",
        RULE_UNTIMED.id,
    )
    minutes = sum(known) if known else None
    line = Line(code, 1, disc, False, minutes, members, "untimed", evidence=[ev, *_shares(members)])
    line.rule_ids.append(RULE_UNTIMED.id)
    ctx.lines.append(line)
    if len(members) > 1:
        ctx.finding(
            F_UNTIMED_REPEATED,
            "low",
            f"{code} was documented {len(members)} times; an untimed code is billed once per session (1 "
            "unit).",
            RULE_UNTIMED,
            tuple(dict.fromkeys(it.pid for it in members)),
            code,
        )


def _shares(members: list[Item]) -> list[Evidence]:
    """Where a line's minutes come from a mixed entry: the Procedure, the share's minutes and its items."""
    out: list[Evidence] = []
    for it in members:
        if it.share is None:
            continue
        share = it.ci.classification.shares[it.share]
        items = (
            f", documented items {', '.join(str(i) for i in share.item_indexes)}"
            if share.item_indexes
            else ""
        )
        out.append(
            Evidence(
                "field",
                f"{share.code} share of mixed entry Procedure {it.pid}: {share.minutes} min documented{items}"
                + (f", {it.minutes} min counted" if it.minutes != share.minutes else ""),
                RULE_SHARES.id,
            )
        )
    return out
