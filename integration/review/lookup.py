"""Code descriptions and estimated amounts, from the rule tables as of the date of service.

``estimated_amount`` is the one place that reads the fee schedule for a person-facing amount: the billing
engine changes its tables API, and this is the only function to port.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from mappings.loader import Tables

FEE_TABLE = "fee_schedule"
CODE_TABLE = "billable_codes"


def _as_date(on: str | date | None) -> date | None:
    if on is None or isinstance(on, date):
        return on
    try:
        return date.fromisoformat(on[:10])
    except ValueError:
        return None


def _row(tables: Tables, table: str, code: str, on: str | date | None) -> Any | None:
    if table not in tables:
        return None
    rows = [r for r in tables.active(table, _as_date(on)) if getattr(r, "code", None) == code]
    if not rows and on is not None:  # date outside every row's period: still describe the code
        rows = [r for r in tables.active(table, None) if getattr(r, "code", None) == code]
    return max(rows, key=lambda r: r.effective) if rows else None


def code_description(tables: Tables, code: str, on: str | date | None = None) -> str:
    row = _row(tables, CODE_TABLE, code, on)
    return str(row.descriptor) if row is not None else "(not in billable_codes)"


def estimated_amount(tables: Tables, code: str, units: int, on: str | date | None) -> float | None:
    """Allowed amount per unit x units from the fee schedule in force on the date of service (None when
    the code has no fee row). Before payer adjustments such as the CQ/CO differential."""
    row = _row(tables, FEE_TABLE, code, on)
    if row is None:
        return None
    return round(float(row.allowed_amount) * units, 2)


def fees_are_placeholders(tables: Tables) -> bool:
    """True while the shipped example fee schedule is in use (its rows say so in their note/source)."""
    if FEE_TABLE not in tables:
        return False
    rows = tables[FEE_TABLE].rows
    return any("placeholder" in f"{r.note or ''} {r.source}".lower() for r in rows)
