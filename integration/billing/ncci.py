"""NCCI procedure-to-procedure (PTP) and Medically Unlikely Edit (MUE) data.

Two sources, in this order:

1. Official CMS quarterly practitioner files, read by :func:`load_ptp_file` and
   :func:`load_mue_file` and passed to ``bill(..., edits=...)`` or registered once per process with
   :func:`register_official_edits`. A loaded official PTP (or MUE) set replaces the seed entirely.
2. The small sourced seed tables ``mappings/billing/ncci_ptp_seed.yaml`` and ``mue_seed.yaml``.

File formats (billing-rules.md §3):

* PTP: one edit per row, ``column1, column2, [*=in existence prior to 1996], effective date,
  deletion date ('*' = none), modifier indicator (0/1/9), [rationale]``; tab- or comma-separated,
  with free-text header lines before the data (skipped). Dates ``YYYYMMDD`` (also accepted:
  ``MM/DD/YYYY`` and ``YYYY-MM-DD``).
* MUE: CSV with a multi-line copyright header, then the header row
  ``HCPCS/CPT Code, Practitioner Services MUE Values, MUE Adjudication Indicator, MUE Rationale``.
  The indicator is read from its leading digit ("3 Date of Service Edit: Clinical" -> 3). The
  file name ``..._Eff_MM-DD-YYYY.csv`` gives the effective date when present.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from integration.errors import InputError

_CODE = re.compile(r"^[0-9A-Z][0-9]{3}[0-9A-Z]$")
_EFF_IN_NAME = re.compile(r"Eff_(\d{2})-(\d{2})-(\d{4})", re.IGNORECASE)


@dataclass(frozen=True)
class PtpEdit:
    column1: str
    column2: str
    effective: date
    deletion: date | None
    modifier_indicator: int  # 0 not allowed, 1 allowed, 9 not applicable
    rationale: str = ""
    source: str = ""
    confidence: str = "PRIMARY"
    note: str = ""

    def active_on(self, on: date | None) -> bool:
        if on is None:
            return self.deletion is None
        return self.effective <= on and (self.deletion is None or on <= self.deletion)


@dataclass(frozen=True)
class MueEdit:
    code: str
    value: int
    mai: int  # 1 line edit, 2 DOS policy, 3 DOS clinical
    rationale: str = ""
    source: str = ""
    effective: date | None = None
    confidence: str = "PRIMARY"
    note: str = ""


@dataclass(frozen=True)
class OfficialEdits:
    """Edits read from official CMS files. An empty tuple means "not loaded: use the seed"."""

    ptp: tuple[PtpEdit, ...] = ()
    mue: tuple[MueEdit, ...] = ()


_registry: OfficialEdits | None = None


def register_official_edits(edits: OfficialEdits | None) -> None:
    """Install official edits for this process (None clears). Read by ``bill`` when not passed in."""
    global _registry
    _registry = edits


def official_edits() -> OfficialEdits | None:
    return _registry


def _parse_date(text: str, *, path: str, line: int) -> date | None:
    t = text.strip()
    if t in ("", "*"):
        return None
    for fmt in ("%Y%m%d", "%m/%d/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(t, fmt).date()
        except ValueError:
            continue
    raise InputError(f"{path}:{line}: unreadable date {t!r}", resource_type="NCCI-file")


def _split(line: str) -> list[str]:
    sep = "\t" if "\t" in line else ","
    return [c.strip().strip('"') for c in next(csv.reader([line], delimiter=sep))]


def load_ptp_file(path: str | Path) -> list[PtpEdit]:
    """Read a CMS practitioner PTP file (tab/comma text). Header lines are skipped; bad data rows raise."""
    p = Path(path)
    edits: list[PtpEdit] = []
    with p.open(encoding="utf-8-sig", errors="replace") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            cells = _split(raw.rstrip("\r\n"))
            if len(cells) < 2 or not (_CODE.match(cells[0]) and _CODE.match(cells[1])):
                continue  # title, copyright or column-header line
            rest = cells[2:]
            if rest and rest[0] in ("", "*") and len(rest) >= 4:
                rest = rest[1:]  # the "in existence prior to 1996" flag column
            if len(rest) < 3:
                raise InputError(
                    f"{p.name}:{n}: PTP row needs effective, deletion, modifier", resource_type="NCCI-file"
                )
            eff = _parse_date(rest[0], path=p.name, line=n)
            if eff is None:
                raise InputError(f"{p.name}:{n}: PTP row without effective date", resource_type="NCCI-file")
            dele = _parse_date(rest[1], path=p.name, line=n)
            mi = rest[2][:1]
            if mi not in ("0", "1", "9"):
                raise InputError(
                    f"{p.name}:{n}: modifier indicator {rest[2]!r} is not 0/1/9", resource_type="NCCI-file"
                )
            edits.append(
                PtpEdit(
                    column1=cells[0],
                    column2=cells[1],
                    effective=eff,
                    deletion=dele,
                    modifier_indicator=int(mi),
                    rationale=rest[3] if len(rest) > 3 else "",
                    source=f"CMS NCCI practitioner PTP file {p.name}",
                )
            )
    if not edits:
        raise InputError(f"{p.name}: no PTP edit rows found", resource_type="NCCI-file")
    return edits


def load_mue_file(path: str | Path) -> list[MueEdit]:
    """Read a CMS practitioner MUE CSV (multi-line copyright header, then the column header row)."""
    p = Path(path)
    m = _EFF_IN_NAME.search(p.name)
    eff = date(int(m.group(3)), int(m.group(1)), int(m.group(2))) if m else None
    edits: list[MueEdit] = []
    in_data = False
    with p.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        for n, cells in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in cells]
            if not in_data:
                if cells and cells[0].upper().startswith("HCPCS/CPT CODE"):
                    in_data = True
                continue
            if not any(cells):
                continue
            if len(cells) < 3 or not _CODE.match(cells[0]):
                raise InputError(f"{p.name}:{n}: not an MUE row", resource_type="NCCI-file")
            try:
                value = int(cells[1])
            except ValueError as e:
                raise InputError(
                    f"{p.name}:{n}: MUE value {cells[1]!r} is not a number", resource_type="NCCI-file"
                ) from e
            mai = cells[2][:1]
            if mai not in ("1", "2", "3"):
                raise InputError(
                    f"{p.name}:{n}: MUE adjudication indicator {cells[2]!r}", resource_type="NCCI-file"
                )
            edits.append(
                MueEdit(
                    code=cells[0],
                    value=value,
                    mai=int(mai),
                    rationale=cells[3] if len(cells) > 3 else "",
                    source=f"CMS practitioner MUE file {p.name}",
                    effective=eff,
                )
            )
    if not in_data:
        raise InputError(f"{p.name}: no 'HCPCS/CPT Code' header row found", resource_type="NCCI-file")
    return edits
