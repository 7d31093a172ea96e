"""Step: each minute of one-on-one time counted once, so timed minutes never exceed the clock time covered.

The patient is treated once: a minute belongs to one timed code only. Per code, minutes come from the
union of its performed periods; where periods of different timed codes overlap, the shared minutes go to
one code by the stated rule of ``integration/billing/timeline.py`` (the service begun later interrupts the
one under way; never by price). Time a therapist and an assistant spend together on the same code counts
once, as therapist time (CQ/CO). A mixed entry's code shares are cut, in proportion, to the minutes its
Procedure keeps. Overlapping documentation raises a finding and a Task to correct the times; the units
(CMS or AMA, next steps) are computed on the corrected minutes.

Only timed items with a readable performed period take part; minutes without a period stay as documented.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

from integration.billing.context import BillingContext, Item, Rule
from integration.billing.timeline import Block, count_once, overlap_seconds, parse_period, split_minutes

RULE_ONCE = Rule(
    "MINUTES-COUNTED-ONCE",
    "CMS Pub. 100-04 ch. 5 §20.2 (units from the minutes of one-on-one service actually furnished) and MBPM "
    "ch. 15 §220.3 ('the billing and the total timed code treatment minutes must be consistent'); CQ/CO: "
    "time PT and PTA spend together counts as PT time (billing-rules.md §2.1, §2.3, §4.2)",
)

F_OVERLAP = "BILL-TIME-OVERLAP"
F_JOINT = "BILL-TIME-JOINT"
F_SHARES_EXCEED = "BILL-TIME-SHARES-EXCEED-PERIOD"
A_CORRECT_TIMES = "DOC-TIME-OVERLAP"


def apply(ctx: BillingContext) -> None:
    blocks: dict[str, list[Item]] = {}
    built: dict[str, Block] = {}
    for it in ctx.items:
        period = parse_period(it.intervention.performed_start, it.intervention.performed_end)
        if it.timed and it.documented_minutes is not None and period is not None:
            blocks.setdefault(it.pid, []).append(it)
            built[it.pid] = Block(it.pid, period[0], period[1], (), it.role != "assistant")
    group_all = [replace(b, codes=tuple(sorted({it.code for it in blocks[k]}))) for k, b in built.items()]
    documented = sum(it.documented_minutes or 0 for members in blocks.values() for it in members)
    for aware in (True, False):  # periods with and without a timezone cannot be compared with each other
        group = [b for b in group_all if (b.start.tzinfo is not None) == aware]
        kept = count_once(group)
        for b in group:
            _keep(ctx, blocks[b.key], b, int(kept[b.key] // 60))
    _report(ctx, group_all, blocks, documented)


def _keep(ctx: BillingContext, members: list[Item], block: Block, kept: int) -> None:
    parts = [it.documented_minutes or 0 for it in members]
    clock = int((block.end - block.start).total_seconds() // 60)
    if len(members) > 1 and sum(parts) > clock:
        ctx.finding(
            F_SHARES_EXCEED,
            "moderate",
            f"Procedure {block.key} documents {sum(parts)} min across {', '.join(it.code for it in members)} "
            f"but its performed period is {clock} min; the codes' minutes were reduced in proportion to fit.",
            RULE_ONCE,
            (block.key,),
        )
        ctx.action(
            A_CORRECT_TIMES,
            f"Correct the minutes per code or the performed period of Procedure {block.key}: together they "
            f"exceed its {clock} min of clock time.",
            RULE_ONCE,
            (block.key,),
            priority="urgent",
        )
    for it, m in zip(members, split_minutes(min(kept, sum(parts)), parts), strict=True):
        it.minutes = m


def _report(ctx: BillingContext, group: list[Block], blocks: dict[str, list[Item]], documented: int) -> None:
    clashes: list[str] = []
    joint: list[str] = []
    clash_pids: list[str] = []
    joint_pids: list[str] = []
    for a, b in combinations(sorted(group, key=lambda x: (x.start, x.key)), 2):
        mins = int(overlap_seconds((a.start, a.end), (b.start, b.end)) // 60)
        if mins < 1:
            continue
        text = f"{_label(a)} and {_label(b)} overlap by {mins} min"
        if a.codes == b.codes and a.therapist != b.therapist:
            joint.append(text)
            joint_pids += [a.key, b.key]
        else:
            clashes.append(text)
            clash_pids += [a.key, b.key]
    counted = sum(it.minutes or 0 for members in blocks.values() for it in members)
    if joint:
        ctx.finding(
            F_JOINT,
            "low",
            "; ".join(joint) + ": the same service by therapist and assistant together, counted once as "
            "therapist time.",
            RULE_ONCE,
            tuple(dict.fromkeys(joint_pids)),
        )
    if clashes:
        pids = tuple(dict.fromkeys(clash_pids))
        ctx.finding(
            F_OVERLAP,
            "moderate",
            "; ".join(clashes) + ". A minute of one-on-one time counts toward one timed code only: the "
            "overlapping minutes were counted once, for the service begun later (the one under way is taken "
            "as "
            "interrupted; a period inside another keeps its minutes). Timed minutes with periods: "
            f"{documented} "
            f"documented, {counted} counted; units follow the counted minutes.",
            RULE_ONCE,
            pids,
        )
        ctx.action(
            A_CORRECT_TIMES,
            f"Correct the performed periods of Procedure(s) {', '.join(pids)}: they overlap, and one-on-one "
            f"time cannot be billed twice. ptbill counted {counted} of the {documented} documented timed "
            "minutes; confirm or correct the times so the units can be final.",
            RULE_ONCE,
            pids,
            priority="urgent",
        )


def _label(b: Block) -> str:
    return f"{'+'.join(b.codes)} (Procedure {b.key}, {b.start:%H:%M}-{b.end:%H:%M})"
