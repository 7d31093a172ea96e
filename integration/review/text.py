"""Terminal renderings: one encounter (``ptbill show``) and a period's summary (``ptbill report``, demo)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from integration.review.model import EncounterView
from integration.review.summary import CountRow, Row, Summary

WIDTH = 110
FEE_NOTE_PLACEHOLDER = (
    "amounts are estimates: units x the allowed amount in mappings/billing/fee_schedule.yaml, before payer "
    "adjustments. The shipped fee schedule holds EXAMPLE placeholder amounts: replace it with your "
    "contracted or MAC-locality amounts (PTBILL_MAPPINGS_DIR) before relying on them."
)
FEE_NOTE = (
    "amounts are estimates: units x the allowed amount in the clinic's fee schedule, before payer "
    "adjustments (e.g. the CQ/CO differential)."
)


def money(v: float | None) -> str:
    return "-" if v is None else f"${v:,.2f}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrap(text: str, indent: str, width: int = WIDTH) -> list[str]:
    return textwrap.wrap(
        " ".join(text.split()), width=width, initial_indent=indent, subsequent_indent=indent
    ) or [indent]


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[int] = (),
    wrap: int | None = None,
) -> list[str]:
    """A plain text table; column widths from the content; ``right``: right-aligned columns; the last
    column wraps at ``wrap`` characters (continuation lines under it) so nothing is cut off."""
    last = len(headers) - 1
    cells = [[list(r[i : i + 1]) for i in range(len(r))] for r in rows]
    if wrap:
        for r in cells:
            r[last] = textwrap.wrap(" ".join(r[last][0].split()), wrap) or [""]
    widths = [len(h) for h in headers]
    for r in cells:
        widths = [max(w, *(len(x) for x in c)) for w, c in zip(widths, r, strict=True)]

    def fmt(r: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    for r in cells:
        height = max(len(c) for c in r)
        for k in range(height):
            lines.append(fmt([c[k] if k < len(c) else "" for c in r]))
    return lines


def render_encounter(v: EncounterView, *, placeholder_fees: bool) -> str:
    out: list[str] = []
    head = f"Encounter/{v.encounter_id}"
    facts = [
        f"date of service {v.date or '?'}",
        f"status {v.status or '?'}",
        f"patient {v.patient or '?'}",
        f"payer {v.payer}",
    ]
    out.append(head + "  " + ", ".join(facts))
    if v.written_at:
        out.append(f"written by {v.written_by or 'ptbill'} at {v.written_at}")
    out.append("")
    n_units = sum(ln.units for ln in v.lines)
    out.append(f"BILLING LINES ({len(v.lines)} line(s), {n_units} unit(s), estimated {money(v.amount)})")
    if not v.lines:
        out.append("  none suggested (see the findings)")
    rows = [
        [
            ln.code,
            _clip(ln.description, 46),
            str(ln.units),
            "-".join(ln.modifiers) or "-",
            str(ln.minutes) if ln.minutes is not None else "-",
            money(ln.amount),
            ln.therapist,
            ln.status,
        ]
        for ln in v.lines
    ]
    if rows:
        hdr = ["code", "description", "units", "modifiers", "minutes", "est. amount", "therapist", "status"]
        out += ["  " + r for r in table(hdr, rows, right=(2, 4, 5))]
        for ln in v.lines:
            out.append(f"  {ln.code}{'-' + '-'.join(ln.modifiers) if ln.modifiers else ''}:")
            for d in ln.documented:
                out += _wrap(f'documented: "{d}"', "      ")
            for e in ln.evidence:
                out += _wrap(f"evidence: {e}", "      ")
    out.append("")
    out.append(f"FINDINGS ({len(v.findings)})")
    if not v.findings:
        out.append("  none")
    for f in v.findings:
        out.append(f"  {f.code}  [{f.severity}]" + (f"  ({f.status})" if f.status != "preliminary" else ""))
        out += _wrap(f.detail, "      ")
    out.append("")
    open_tasks = v.open_tasks
    out.append(f"OPEN TASKS ({len(open_tasks)}; a person must act or attest)")
    if not open_tasks:
        out.append("  none")
    for t in open_tasks:
        out.append(f"  {t.code}  [{t.priority}, {t.status}]")
        out += _wrap(t.description, "      ")
    closed = len(v.tasks) - len(open_tasks)
    if closed:
        out.append(f"  ({closed} closed task(s) not shown)")
    if v.flags:
        out.append("")
        out.append(f"PATIENT FLAGS ({len(v.flags)})")
        for fl in v.flags:
            out.append(f"  {fl.code}")
            out += _wrap(fl.text, "      ")
    if v.retired:
        out.append("")
        out.append(f"({v.retired} suggestion(s) ptbill withdrew earlier are not shown)")
    out.append("")
    out += _wrap(FEE_NOTE_PLACEHOLDER if placeholder_fees else FEE_NOTE, "")
    return "\n".join(out) + "\n"


def _row_table(title: str, rows: Sequence[Row], key_header: str, *, with_label: bool) -> list[str]:
    out = [title]
    if not rows:
        return [*out, "  none"]
    hdr = [
        key_header,
        *(["description"] if with_label else []),
        "encounters",
        "lines",
        "units",
        "est. amount",
    ]
    body = [
        [
            r.key,
            *([_clip(r.label, 52)] if with_label else []),
            str(r.encounters),
            str(r.lines),
            str(r.units),
            money(r.amount) + (" *" if r.unpriced_lines else ""),
        ]
        for r in rows
    ]
    n = len(hdr)
    return [*out, *("  " + line for line in table(hdr, body, right=(n - 4, n - 3, n - 2, n - 1)))]


def _count_table(title: str, rows: Sequence[CountRow], *, severity: bool, width: int = 70) -> list[str]:
    out = [title]
    if not rows:
        return [*out, "  none"]
    hdr = ["code", *(["severity"] if severity else []), "count", "meaning (as ptbill wrote it)"]
    body = [[r.code, *([r.severity] if severity else []), str(r.count), r.meaning] for r in rows]
    return [*out, *("  " + line for line in table(hdr, body, right=(2 if severity else 1,), wrap=width))]


def render_summary(s: Summary) -> str:
    out = [
        f"ptbill report {s.since} .. {s.until}",
        f"  {s.encounters} encounter(s), {s.lines} billing line(s), {s.units} unit(s), "
        f"estimated {money(s.amount)}; {s.findings_total} finding(s), {s.open_tasks_total} open task(s)",
    ]
    if s.acted_on:
        out.append(f"  {s.acted_on} line(s) already acted on by a person (status other than planned)")
    out.append("")
    out += _row_table("BY CODE", s.by_code, "code", with_label=True)
    out.append("")
    out += _row_table("BY THERAPIST", s.by_therapist, "therapist", with_label=False)
    out.append("")
    out += _row_table("BY PAYER", s.by_payer, "payer", with_label=False)
    out.append("")
    out += _count_table("FINDINGS (DetectedIssue)", s.findings, severity=True)
    out.append("")
    out += _count_table("OPEN ATTESTATIONS AND TASKS (a person must act)", s.open_tasks, severity=False)
    if s.flags:
        out.append("")
        out += _count_table("PATIENT FLAGS (active)", s.flags, severity=False)
    out.append("")
    if any(r.unpriced_lines for r in s.by_code):
        out.append("* some lines have no fee-schedule row: their amount is not included")
    out += _wrap(FEE_NOTE_PLACEHOLDER if s.placeholder_fees else FEE_NOTE, "")
    return "\n".join(out) + "\n"
