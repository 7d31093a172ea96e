"""Step: each item's discipline (its plan of care: GP/GO/GN) and whether a therapist or an assistant did it.

Data: mappings/billing/discipline_roles.yaml (role/qualification/function codings -> discipline and
assistant status) and the ``disciplines`` column of mappings/core/billable_codes.yaml (the plans of care a
code is billed under, e.g. 92507 speech therapy: SLP; 97165-97168 OT evaluations: OT).

* Discipline: the performers' discipline when the code is billed under it; several performers'
  disciplines: the first of the code's list among them (a finding); a performer discipline the code is not
  billed under: the code's first discipline (a finding); none readable: the code's first discipline is
  assumed (a finding).
* Role: therapist when any performer is a therapist (time together counts as therapist time), assistant
  when every performer is one, else unknown (counted as therapist time, and a Task asks who performed it).
"""

from __future__ import annotations

from dataclasses import dataclass

from integration.billing.context import BillingContext, Item, Rule
from integration.billing.steps.discipline_modifiers import RULE_GP
from integration.model import Coding
from mappings.schemas.core import Discipline

RULE_DISCIPLINE = RULE_GP  # the plan of care decides GP/GO/GN: one rule, owned by discipline_modifiers
RULE_PERFORMER = Rule(
    "DOC-PERFORMER",
    "MBPM ch. 15 §220.3: identify each person who contributed; CQ/CO need PT vs PTA minutes "
    "(billing-rules.md §4.2, §6.3)",
)

F_DISCIPLINE_MIXED = "BILL-DISCIPLINE-MIXED"
F_DISCIPLINE_ASSUMED = "BILL-DISCIPLINE-ASSUMED"
F_DISCIPLINE_NOT_FOR_CODE = "BILL-DISCIPLINE-CODE-MISMATCH"
A_PERFORMER = "DOC-PERFORMER"


@dataclass(frozen=True)
class PerformerRole:
    discipline: Discipline | None  # None: unknown
    assistant: bool | None  # None: unknown


def apply(ctx: BillingContext) -> None:
    assumed: list[Item] = []
    unknown_role: list[str] = []
    for it in ctx.items:
        roles = performer_roles(ctx, it)
        _discipline(ctx, it, roles, assumed)
        if any(r.assistant is False for r in roles):
            it.role = "therapist"  # therapist alone, or therapist and assistant together
        elif roles and all(r.assistant for r in roles):
            it.role = "assistant"
        else:
            it.role = "unknown"
            unknown_role.append(it.pid)
    if assumed:
        basis = ", ".join(sorted({f"{it.code} -> {it.discipline}" for it in assumed}))
        pids = tuple(dict.fromkeys(it.pid for it in assumed))
        ctx.finding(
            F_DISCIPLINE_ASSUMED,
            "low",
            f"No performer discipline could be read for {len(pids)} intervention(s); the plan of care was "
            f"taken from the code table ({basis}).",
            RULE_DISCIPLINE,
            pids,
        )
    if unknown_role:
        pids = tuple(dict.fromkeys(unknown_role))
        ctx.action(
            A_PERFORMER,
            f"Record who performed {len(pids)} intervention(s) (therapist or assistant, with their role) so "
            "the CQ/CO de minimis test can be applied; ptbill assumed therapist-furnished time until then.",
            RULE_PERFORMER,
            pids,
        )


def _discipline(ctx: BillingContext, it: Item, roles: list[PerformerRole], assumed: list[Item]) -> None:
    allowed = it.cat.disciplines
    found = sorted({r.discipline for r in roles if r.discipline})
    if not found:
        it.discipline = allowed[0]
        assumed.append(it)
        return
    it.discipline_known = True
    inside = [d for d in allowed if d in found]
    if not inside:
        it.discipline = allowed[0]
        ctx.finding(
            F_DISCIPLINE_NOT_FOR_CODE,
            "moderate",
            f"{it.code} is billed under a {'/'.join(allowed)} plan of care but was documented by "
            f"{', '.join(found)}; billed under {it.discipline}. Check the code and who furnished it.",
            RULE_DISCIPLINE,
            (it.pid,),
            it.code,
        )
        return
    it.discipline = inside[0]
    if len(found) > 1:
        ctx.finding(
            F_DISCIPLINE_MIXED,
            "moderate",
            f"Performers of one intervention belong to different disciplines ({', '.join(found)}); "
            f"billed under {it.discipline}. Check which plan of care it belongs to.",
            RULE_DISCIPLINE,
            (it.pid,),
            it.code,
        )


def performer_roles(ctx: BillingContext, it: Item) -> list[PerformerRole]:
    """One PerformerRole per performer of the item (function codings + the practitioner's codes)."""
    by_ref: dict[str, list[Coding]] = {}
    for p in ctx.facts.practitioners:
        for ref in {p.reference, p.practitioner} - {None}:
            by_ref.setdefault(str(ref), []).extend(p.codes)
    out: list[PerformerRole] = []
    for perf in it.intervention.performers:
        codings = list(perf.function) + (by_ref.get(perf.actor, []) if perf.actor else [])
        disc: Discipline | None = None
        asst: bool | None = None
        for c in codings:
            row = ctx.rules.roles.get((c.system, c.code))
            if row is None:
                continue
            if row.discipline and disc is None:
                disc = row.discipline
            asst = bool(asst) or row.assistant
        out.append(PerformerRole(disc, asst))
    return out
