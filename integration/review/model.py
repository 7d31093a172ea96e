"""Plain views of what ptbill wrote for encounters (built by read.py, rendered by text/html/csv)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LineView:
    """One suggested billing line (a ChargeItem ptbill wrote)."""

    encounter_id: str
    date: str | None  # date of service, YYYY-MM-DD
    code: str
    description: str
    units: int
    modifiers: tuple[str, ...]
    minutes: int | None
    unit_rule: str | None
    status: str  # planned = untouched suggestion; anything else: a person acted on it
    evidence: tuple[str, ...]  # ptbill's evidence: the rule and arithmetic behind units and modifiers
    documented: tuple[str, ...]  # what the therapist documented (the Procedures' text)
    therapist: str  # performer's name (or reference when it cannot be read)
    payer: str
    amount: float | None  # estimate from the fee schedule; None when the code has no fee row


@dataclass(frozen=True)
class FindingView:
    encounter_id: str
    code: str
    severity: str
    detail: str  # what ptbill wrote the finding means for this encounter
    status: str


@dataclass(frozen=True)
class TaskView:
    encounter_id: str
    code: str
    description: str
    status: str
    priority: str

    @property
    def open(self) -> bool:
        return self.status not in ("completed", "cancelled", "rejected", "failed", "entered-in-error")


@dataclass(frozen=True)
class FlagView:
    code: str
    text: str
    status: str


@dataclass(frozen=True)
class EncounterView:
    encounter_id: str
    date: str | None
    status: str | None
    patient: str | None  # a reference, never a name
    payer: str
    lines: tuple[LineView, ...]
    findings: tuple[FindingView, ...]
    tasks: tuple[TaskView, ...]
    flags: tuple[FlagView, ...] = ()
    written_at: str | None = None  # the Provenance's recorded time
    written_by: str | None = None  # ptbill's version (Provenance agent)
    retired: int = 0  # suggestions ptbill withdrew (not shown)

    @property
    def amount(self) -> float:
        return round(sum(ln.amount or 0.0 for ln in self.lines), 2)

    @property
    def open_tasks(self) -> tuple[TaskView, ...]:
        return tuple(t for t in self.tasks if t.open)
