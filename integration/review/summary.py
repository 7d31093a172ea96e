"""A period's figures from encounter views (pure): per code, therapist and payer; findings; attestations."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from integration.review.model import EncounterView, FlagView, LineView


@dataclass(frozen=True)
class Row:
    key: str
    label: str  # a code's description, or the key again
    encounters: int
    lines: int
    units: int
    amount: float
    unpriced_lines: int  # lines whose code has no fee-schedule row


@dataclass(frozen=True)
class CountRow:
    code: str
    meaning: str  # the most frequent text ptbill wrote for it (DetectedIssue.detail, Task.description)
    severity: str
    count: int
    encounters: int


@dataclass(frozen=True)
class Summary:
    since: str
    until: str
    encounters: int
    lines: int
    units: int
    amount: float
    findings_total: int
    open_tasks_total: int
    by_code: tuple[Row, ...]
    by_therapist: tuple[Row, ...]
    by_payer: tuple[Row, ...]
    findings: tuple[CountRow, ...]
    open_tasks: tuple[CountRow, ...]
    flags: tuple[CountRow, ...]
    acted_on: int  # lines a person already moved on from 'planned'
    retired: int
    placeholder_fees: bool
    lines_detail: tuple[LineView, ...]


def _rows(
    lines: Sequence[LineView], key: Callable[[LineView], str], label: Callable[[str], str] = lambda k: k
) -> tuple[Row, ...]:
    groups: dict[str, list[LineView]] = defaultdict(list)
    for ln in lines:
        groups[key(ln)].append(ln)
    rows = [
        Row(
            key=k,
            label=label(k),
            encounters=len({ln.encounter_id for ln in g}),
            lines=len(g),
            units=sum(ln.units for ln in g),
            amount=round(sum(ln.amount or 0.0 for ln in g), 2),
            unpriced_lines=sum(1 for ln in g if ln.amount is None),
        )
        for k, g in groups.items()
    ]
    return tuple(sorted(rows, key=lambda r: (-r.amount, -r.units, r.key)))


_SEVERITY_ORDER = {"high": 0, "moderate": 1, "low": 2}


def _count_rows(items: Iterable[tuple[str, str, str, str]]) -> tuple[CountRow, ...]:
    """(code, text, severity, encounter) -> one row per code with the most frequent text."""
    texts: dict[str, Counter[str]] = defaultdict(Counter)
    sev: dict[str, str] = {}
    encs: dict[str, set[str]] = defaultdict(set)
    n: Counter[str] = Counter()
    for code, text, severity, enc in items:
        n[code] += 1
        texts[code][text] += 1
        encs[code].add(enc)
        if code not in sev or _SEVERITY_ORDER.get(severity, 3) < _SEVERITY_ORDER.get(sev[code], 3):
            sev[code] = severity
    rows = [
        CountRow(
            code,
            min(texts[code].items(), key=lambda kv: (-kv[1], len(kv[0])))[0] if texts[code] else "",
            sev[code],
            n[code],
            len(encs[code]),
        )
        for code in n
    ]
    return tuple(sorted(rows, key=lambda r: (_SEVERITY_ORDER.get(r.severity, 3), -r.count, r.code)))


def summarize(
    views: Sequence[EncounterView],
    *,
    since: str,
    until: str,
    placeholder_fees: bool,
    flags: Sequence[FlagView] = (),
) -> Summary:
    lines = [ln for v in views for ln in v.lines]
    descriptions = {ln.code: ln.description for ln in lines}
    findings = [(f.code, f.detail, f.severity, f.encounter_id) for v in views for f in v.findings]
    open_tasks = [(t.code, t.description, t.priority, t.encounter_id) for v in views for t in v.open_tasks]
    return Summary(
        since=since,
        until=until,
        encounters=len(views),
        lines=len(lines),
        units=sum(ln.units for ln in lines),
        amount=round(sum(ln.amount or 0.0 for ln in lines), 2),
        findings_total=len(findings),
        open_tasks_total=len(open_tasks),
        by_code=_rows(lines, lambda ln: ln.code, lambda c: descriptions.get(c, "")),
        by_therapist=_rows(lines, lambda ln: ln.therapist),
        by_payer=_rows(lines, lambda ln: ln.payer),
        findings=_count_rows(findings),
        open_tasks=_count_rows(open_tasks),
        flags=_count_rows((f.code, f.text, "moderate", f.code) for f in flags),
        acted_on=sum(1 for ln in lines if ln.status != "planned"),
        retired=sum(v.retired for v in views),
        placeholder_fees=placeholder_fees,
        lines_detail=tuple(lines),
    )
