"""The billing rules engine: classified interventions of one encounter -> billing lines + findings.

``bill(facts, classified, tables, *, edits=None)`` builds one BillingContext (the rules in force on the
date of service, as typed rows) and runs STEPS in order; each step is one module under
``integration/billing/steps/`` (its rule, its data, its finding codes). Steps only add data or narrow what
is billed with a recorded reason; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from integration.billing import ncci
from integration.billing.context import BillingContext
from integration.billing.rules import BillingRules
from integration.billing.steps import (
    add_ons,
    assistant,
    cloned,
    discipline_modifiers,
    documentation,
    entries,
    episode,
    group,
    kx,
    minutes,
    mue,
    ncci_ptp,
    payer,
    payer_codes,
    payer_limits,
    performers,
    time_accounting,
    units,
)
from integration.model import (
    ActionItem,
    BillingLine,
    ClassifiedIntervention,
    EncounterFacts,
    Finding,
    FlagItem,
    Skipped,
)
from mappings.tables import Tables

Step = Callable[[BillingContext], None]

# The order matters; each comment says what the step needs from the ones before it.
STEPS: tuple[Step, ...] = (
    payer.apply,  # who pays on this date: every later rule is read for this payer profile (or stop: no rules)
    entries.apply,  # one entry per documented code (mixed entries split into code shares) -- before payer
    # codes, so a share's code gets the payer's code too
    cloned.apply,  # copy-forward: an entry documented word for word as at the previous visit is not billed
    # (issue 8 §4) -- before payer codes, so nothing is priced, counted or edited for it
    payer_codes.apply,  # the payer's code (substitutions both ways), bundled, not covered -> items with
    # their catalogue row; untimed minutes noted before an item is dropped
    add_ons.pair,  # add-on alone -> no line; a continuing add-on counts its time with its primary -- before
    # any minutes are counted, so the service's time is counted once
    performers.apply,  # discipline and therapist/assistant per item -- time accounting gives shared
    # minutes to the therapist, units are per discipline
    time_accounting.apply,  # each minute counted once (overlaps, joint time, shares within their period)
    # -- before allocation and units, which must use the corrected minutes
    minutes.apply,  # missing minutes from the documented total less the (corrected) known minutes
    units.apply,  # CMS or AMA units per code and discipline; untimed 1 -- on the final minutes
    assistant.apply,  # CQ/CO per unit -- needs the units and each item's role minutes
    add_ons.split,  # a primary's extra units to its add-on -- after the CQ split, so each keeps its modifier
    discipline_modifiers.apply,  # GP/GO/GN first on every line -- once the lines are final
    ncci_ptp.apply,  # PTP pairs on the final codes -> 59 with separate blocks, else ATTEST-59
    mue.apply,  # units per code against the MUE -- after every unit move
    payer_limits.apply,  # caps, prior auth, same-day exclusions on the final lines
    kx.apply,  # KX estimate priced on the final lines
    documentation.apply,  # the note's totals against the final units
    group.apply,  # group therapy size, repeats, overlap with one-on-one time
    episode.apply,  # progress report and plan-of-care alerts (independent of the lines)
)


@dataclass(frozen=True)
class BillingResult:
    lines: tuple[BillingLine, ...] = ()
    findings: tuple[Finding, ...] = ()
    actions: tuple[ActionItem, ...] = ()
    flags: tuple[FlagItem, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    payer_profile: str = ""  # the payer profile used (for Provenance / review screens)


def bill(
    facts: EncounterFacts,
    classified: tuple[ClassifiedIntervention, ...],
    tables: Tables,
    *,
    edits: ncci.OfficialEdits | None = None,
) -> BillingResult:
    ctx = BillingContext(
        facts=facts,
        classified=classified,
        rules=BillingRules.as_of(tables, facts.date_of_service),
        edits=edits if edits is not None else ncci.official_edits(),
    )
    for step in STEPS:
        step(ctx)
        if ctx.stopped:
            break
    lines = tuple(
        BillingLine(
            code=ln.code,
            units=ln.units,
            date_of_service=facts.date_of_service,
            modifiers=tuple(ln.modifiers),
            minutes=ln.minutes,
            procedure_ids=tuple(ln.procedure_ids),
            performer_refs=tuple(dict.fromkeys(ln.performer_refs)),
            unit_rule=ln.unit_rule,
            timed=ln.timed,
            evidence=tuple(ln.evidence),
            rule_ids=tuple(dict.fromkeys(ln.rule_ids)),
        )
        for ln in sorted(ctx.lines, key=lambda x: (x.code, [m.code for m in x.modifiers]))
        if ln.units > 0
    )
    return BillingResult(
        lines=lines,
        findings=tuple(ctx.findings),
        actions=tuple(ctx.actions),
        flags=tuple(ctx.flags),
        skipped=tuple(ctx.skipped),
        payer_profile=ctx.payer.profile.profile if ctx.payer is not None else "",
    )
