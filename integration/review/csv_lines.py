"""The report's billing lines as CSV (one row per line; pivot per code, therapist or payer in a sheet)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import IO

from integration.review.model import EncounterView

COLUMNS = (
    "date_of_service",
    "encounter",
    "code",
    "description",
    "units",
    "modifiers",
    "timed_minutes",
    "therapist",
    "payer",
    "estimated_amount",
    "status",
    "encounter_findings",
    "encounter_open_tasks",
)


def _safe(value: str) -> str:
    """Text a spreadsheet would run as a formula is prefixed with a quote (CSV injection)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def write_csv(views: Sequence[EncounterView], out: IO[str]) -> int:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    n = 0
    for v in views:
        findings = ";".join(sorted({f.code for f in v.findings}))
        tasks = ";".join(sorted({t.code for t in v.open_tasks}))
        for ln in v.lines:
            w.writerow(
                [
                    ln.date or "",
                    v.encounter_id,
                    ln.code,
                    _safe(ln.description),
                    ln.units,
                    "-".join(ln.modifiers),
                    "" if ln.minutes is None else ln.minutes,
                    _safe(ln.therapist),
                    _safe(ln.payer),
                    "" if ln.amount is None else f"{ln.amount:.2f}",
                    ln.status,
                    findings,
                    tasks,
                ]
            )
            n += 1
    return n
