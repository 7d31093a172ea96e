"""One encounter's billing work: the BillingContext every step reads and extends.

A step is a module under ``integration/billing/steps/`` with ``apply(ctx)``; ``integration/billing/engine.py``
runs them in one ordered list. Steps only add to the context (items, lines, modifiers, outputs) or narrow
what is billed with a recorded reason (a Skipped entry and/or a finding) -- nothing is dropped silently.

Each step names its rules as module constants: ``Rule(id, source)`` for the rule a finding rests on (the
id and source travel into the DetectedIssue/Task/Flag), and plain string constants for the finding,
action and flag codes it writes, so ``grep -rn BILL-TIME-OVERLAP integration/billing`` lands on its step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from integration.billing.ncci import OfficialEdits
from integration.billing.rules import BillingRules
from integration.model import (
    ActionItem,
    ClassifiedIntervention,
    EncounterFacts,
    Evidence,
    Finding,
    FlagItem,
    Intervention,
    Modifier,
    Severity,
    Skipped,
)
from mappings.schemas.billing import PayerProfile
from mappings.schemas.core import BillableCode, Discipline

Role = Literal["therapist", "assistant", "unknown"]
Priority = Literal["routine", "urgent", "asap", "stat"]


@dataclass(frozen=True)
class Rule:
    """A rule a finding, task or flag rests on: its stable id and where it comes from."""

    id: str
    source: str


@dataclass(frozen=True)
class PayerContext:
    profile: PayerProfile
    coverage_id: str | None
    matched_by: str  # human-readable basis of the match


@dataclass(frozen=True)
class Entry:
    """What was documented for one code: a classified intervention, or one share of a mixed entry."""

    ci: ClassifiedIntervention
    code: str
    minutes: int | None  # the Procedure's performed minutes, or the share's minutes
    share: int | None = None  # index in Classification.shares; None: the whole intervention

    @property
    def pid(self) -> str:
        return self.ci.intervention.id


@dataclass(eq=False)  # compared by identity: two shares may hold equal values
class Item:
    """One billable piece of documented work: a classified intervention, or one code share of a mixed one."""

    ci: ClassifiedIntervention
    code: str
    cat: BillableCode  # the code's catalogue row (replaced when a payer rule substitutes the code)
    documented_minutes: int | None  # the Procedure's performed minutes, or the share's minutes
    minutes: int | None  # minutes counted for billing (after time accounting and allocation)
    # The plan of care: the code table's first discipline until the performers step reads the performer's.
    discipline: Discipline
    share: int | None = None  # index in Classification.shares; None: the whole intervention
    allocated: bool = False  # minutes allocated from the documented total, not documented per item
    discipline_known: bool = False  # read from the performer (not assumed from the code table)
    role: Role = "unknown"  # set by the performers step

    @property
    def pid(self) -> str:
        return self.ci.intervention.id

    @property
    def intervention(self) -> Intervention:
        return self.ci.intervention

    @property
    def timed(self) -> bool:
        return self.cat.timed


@dataclass(eq=False)
class Line:
    """A billing line under construction (frozen into a BillingLine at the end)."""

    code: str
    units: int
    discipline: Discipline
    timed: bool
    minutes: int | None
    items: list[Item]
    unit_rule: str
    modifiers: list[Modifier] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    rule_ids: list[str] = field(default_factory=list)

    @property
    def procedure_ids(self) -> list[str]:
        return list(dict.fromkeys(it.pid for it in self.items))

    @property
    def performer_refs(self) -> list[str]:
        return [p.actor for it in self.items for p in it.intervention.performers if p.actor]


@dataclass
class BillingContext:
    facts: EncounterFacts
    classified: tuple[ClassifiedIntervention, ...]
    rules: BillingRules
    edits: OfficialEdits | None
    payer: PayerContext | None = None
    entries: list[Entry] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    untimed_minutes: int = 0  # minutes of untimed services (total treatment time only)
    findings: list[Finding] = field(default_factory=list)
    actions: list[ActionItem] = field(default_factory=list)
    flags: list[FlagItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    stopped: bool = False  # a step decided nothing further can be billed (e.g. no rules for the date)

    @property
    def on(self) -> date | None:
        return self.facts.date_of_service

    @property
    def profile(self) -> PayerProfile:
        if self.payer is None:
            raise RuntimeError("the payer step has not run")  # an ordering bug, never input-dependent
        return self.payer.profile

    def finding(
        self,
        code: str,
        severity: Severity,
        message: str,
        rule: Rule,
        pids: tuple[str, ...] = (),
        line: str | None = None,
    ) -> None:
        self.findings.append(Finding(code, severity, message, rule.id, rule.source, tuple(pids), line))

    def action(
        self,
        code: str,
        description: str,
        rule: Rule,
        pids: tuple[str, ...] = (),
        line: str | None = None,
        priority: Priority = "routine",
    ) -> None:
        self.actions.append(ActionItem(code, description, rule.id, rule.source, tuple(pids), line, priority))

    def flag(self, code: str, message: str, rule: Rule, key: str = "") -> None:
        self.flags.append(FlagItem(code, message, rule.id, rule.source, key))

    def skip(self, pid: str, reason: str) -> None:
        self.skipped.append(Skipped(pid, reason))
