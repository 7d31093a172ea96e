"""Step: CQ/CO on the units an assistant furnished (PTA: CQ, OTA: CO; none for SLP), never silently.

Data: mappings/billing/discipline_modifiers.yaml (``assistant_modifier``, ``de_minimis_fraction``,
``final_unit_rule`` per discipline and date: none before 2020) and ``assistant_modifiers_required`` of the
payer profile; the ``category`` column of the code table (evaluations are the therapist's).

Timed lines: full 15-minute units furnished by one kind of provider go to that provider; the mixed
remaining unit(s) are decided by the de minimis fraction and ``final_unit_rule`` (one mixed unit: CQ when
the assistant's share exceeds the fraction, and under "majority" only when the assistant furnished more of
it; two mixed units with both contributing: one with, one without). A line splits into a line without and
a line with the modifier. Minutes per role come from the time-accounting step (time together is the
therapist's). Untimed lines: CQ when the assistant alone furnished it, or more than the fraction of its
minutes; without minutes for both, a Task asks for them.
"""

from __future__ import annotations

from dataclasses import replace

from integration.billing.context import BillingContext, Item, Line, Rule
from integration.billing.units import UNIT_MINUTES
from integration.model import Evidence, Modifier
from mappings.schemas.billing import DisciplineModifier
from mappings.tables import MissingRuleError

RULE_CQ = Rule(
    "MOD-CQ",
    "cms.gov CQ/CO billing examples; MCPM ch. 5 §20.1; 10 % de minimis per unit (billing-rules.md §4.2)",
)
RULE_EVAL = Rule(
    "DOC-EVAL-ASSISTANT",
    "Evaluations and progress reports are written by a clinician, not an assistant (billing-rules.md §5.1)",
)

F_EVAL_BY_ASSISTANT = "DOC-EVAL-BY-ASSISTANT"
A_ATTEST_CQ = "ATTEST-CQ"


def apply(ctx: BillingContext) -> None:
    out: list[Line] = []
    for ln in ctx.lines:
        if ln.items[0].cat.category == "evaluation":
            _evaluation_by_assistant(ctx, ln)
        dmod = ctx.rules.discipline_modifier(ln.discipline)
        if dmod.assistant_modifier is None or not ctx.profile.assistant_modifiers_required:
            out.append(ln)
        elif ln.timed:
            out.extend(_split_timed(ln, dmod))
        else:
            mod = _untimed(ctx, ln, dmod)
            if mod is not None:
                ln.modifiers.append(mod)
                ln.rule_ids.append(RULE_CQ.id)
            out.append(ln)
    ctx.lines[:] = out


def _evaluation_by_assistant(ctx: BillingContext, ln: Line) -> None:
    asst = [it for it in ln.items if it.role == "assistant"]
    if asst:
        ctx.finding(
            F_EVAL_BY_ASSISTANT,
            "high",
            f"{ln.code} (evaluation/re-evaluation) is documented as performed by an assistant only; "
            "evaluations are performed by the therapist.",
            RULE_EVAL,
            tuple(dict.fromkeys(it.pid for it in asst)),
            ln.code,
        )


def _split_timed(ln: Line, dmod: DisciplineModifier) -> list[Line]:
    mod, frac, final_rule = _settings(dmod)
    a = sum(it.minutes or 0 for it in ln.items if it.role == "assistant")
    p = sum(it.minutes or 0 for it in ln.items if it.role != "assistant")
    units = ln.units
    if a == 0:
        return [ln]
    reason = (
        f"{mod}: assistant furnished {a} min on their own, therapist {p} min (joint time counts as therapist)"
    )
    if p == 0:
        return [
            _with(
                ln, units, Modifier(mod, RULE_CQ.id, reason), reason + f" -> all {units} unit(s) with {mod}"
            )
        ]
    fa, ra = divmod(a, UNIT_MINUTES)
    fp, rp = divmod(p, UNIT_MINUTES)
    fa = min(fa, units)
    fp = min(fp, max(0, units - fa))
    rest = units - fa - fp
    with_mod, without = fa, fp
    how = f"full 15-min units: {fa} by assistant, {fp} by therapist"
    if rest == 1:
        share = ra / (ra + rp) if (ra + rp) else 0.0
        if share <= frac:
            without += 1
            how += f"; last unit: assistant {ra} of {ra + rp} min <= {frac:.0%} de minimis -> no {mod}"
        elif final_rule == "majority" and rp > ra:
            without += 1
            how += f"; last unit: therapist furnished more of it ({rp} vs {ra} min) -> no {mod}"
        else:
            with_mod += 1
            how += f"; last unit: assistant {ra} of {ra + rp} min > {frac:.0%} de minimis -> {mod}"
    elif rest >= 2:
        if ra and rp:
            with_mod += 1
            without += rest - 1
            how += f"; two mixed units (assistant {ra}, therapist {rp} min): one with {mod}, one without"
        elif ra:
            with_mod += rest
        else:
            without += rest
    text = f"{reason}; {how}"
    parts: list[Line] = []
    if without:
        parts.append(_with(ln, without, None, text))
    if with_mod:
        parts.append(_with(ln, with_mod, Modifier(mod, RULE_CQ.id, text), text))
    return parts


def _settings(dmod: DisciplineModifier) -> tuple[str, float, str]:
    """The assistant modifier, de minimis fraction and final-unit rule (the schema requires all three)."""
    if dmod.assistant_modifier is None or dmod.de_minimis_fraction is None or dmod.final_unit_rule is None:
        raise MissingRuleError(
            "discipline_modifiers",
            dmod.effective,
            {"discipline": dmod.discipline},
            "assistant settings missing",
        )
    return dmod.assistant_modifier, dmod.de_minimis_fraction, dmod.final_unit_rule


def _with(ln: Line, units: int, mod: Modifier | None, why: str) -> Line:
    part = replace(
        ln,
        units=units,
        modifiers=[*ln.modifiers, *([mod] if mod else [])],
        evidence=[*ln.evidence, Evidence("rule", why, RULE_CQ.id)],
        rule_ids=[*ln.rule_ids, *([RULE_CQ.id] if mod else [])],
    )
    return part


def _untimed(ctx: BillingContext, ln: Line, dmod: DisciplineModifier) -> Modifier | None:
    mod, frac, _ = _settings(dmod)
    members: list[Item] = ln.items
    asst = [it for it in members if it.role == "assistant"]
    if not asst:
        return None
    if len(asst) == len(members):
        return Modifier(mod, RULE_CQ.id, f"{mod}: the untimed service was furnished wholly by the assistant")
    if any(it.minutes is None for it in members):
        ctx.action(
            A_ATTEST_CQ,
            f"{ln.code}: therapist and assistant both documented without minutes; record the assistant's "
            f"independent minutes so the {frac:.0%} de minimis test can decide {mod}.",
            RULE_CQ,
            tuple(dict.fromkeys(it.pid for it in members)),
            ln.code,
        )
        return None
    a = sum(it.minutes or 0 for it in asst)
    total = sum(it.minutes or 0 for it in members)
    if total and a / total > frac:
        return Modifier(mod, RULE_CQ.id, f"{mod}: assistant {a} of {total} min > {frac:.0%}")
    return None
