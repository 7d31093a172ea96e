"""Unit arithmetic for 15-minute timed codes. Pure functions on minutes per code.

Two rules, chosen per payer (payer_profiles.unit_rule):

* ``CMS`` total-time rule (Pub. 100-04 ch. 5 §20.2): pool the day's timed minutes T,
  ``N = floor((T + 7) / 15)`` for T >= 8 (else 0); each code first gets ``floor(m / 15)`` whole
  units; the ``N - sum(floor)`` leftover units go, one per code, to the largest remainders
  ``m mod 15``. Ties are broken by ascending code (a fixed, documented order that never looks at
  price: CMS says "choose either code").
* ``AMA`` CPT midpoint rule: each code stands alone, ``floor((m + 7) / 15)`` for m >= 8.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

UNIT_MINUTES = 15
MIDPOINT = 8
TIE_BREAK = "ties between equal remainders go to the lower code number (fixed order, never by price)"


def cms_total_units(total_minutes: int) -> int:
    """Units billable for ``total_minutes`` of timed treatment on one day (CMS table)."""
    if total_minutes < MIDPOINT:
        return 0
    return (total_minutes + UNIT_MINUTES - MIDPOINT) // UNIT_MINUTES


def ama_units(minutes: int) -> int:
    """Units for one code under the CPT midpoint rule (8-22 = 1, 23-37 = 2, ...)."""
    return cms_total_units(minutes)


@dataclass(frozen=True)
class Allocation:
    units: dict[str, int]
    total_minutes: int
    total_units: int
    explanation: dict[str, str]  # per code: how its units were reached
    tie_broken: bool = False


def allocate(minutes: Mapping[str, int], rule: str) -> Allocation:
    """Units per code for one discipline's timed minutes on one date of service."""
    if rule == "AMA":
        return _allocate_ama(minutes)
    return _allocate_cms(minutes)


def _allocate_ama(minutes: Mapping[str, int]) -> Allocation:
    units = {c: ama_units(m) for c, m in minutes.items()}
    expl = {
        c: f"AMA/CPT midpoint rule: {m} min of {c} alone -> {units[c]} unit(s) (8-22 min = 1, 23-37 = 2, ...)"
        for c, m in minutes.items()
    }
    return Allocation(units, sum(minutes.values()), sum(units.values()), expl)


def _allocate_cms(minutes: Mapping[str, int]) -> Allocation:
    total = sum(minutes.values())
    n = cms_total_units(total)
    codes = sorted(minutes)
    units = {c: minutes[c] // UNIT_MINUTES for c in codes}
    leftover = n - sum(units.values())
    # Largest remainder first; equal remainders in ascending code order.
    by_remainder = sorted(codes, key=lambda c: (-(minutes[c] % UNIT_MINUTES), c))
    extra: set[str] = set()
    tie_broken = False
    cut: int | None = None
    if leftover > 0:
        chosen = [c for c in by_remainder if minutes[c] % UNIT_MINUTES > 0][:leftover]
        extra = set(chosen)
        if chosen:
            cut = minutes[chosen[-1]] % UNIT_MINUTES
            same = [c for c in codes if minutes[c] % UNIT_MINUTES == cut]
            tie_broken = any(c not in extra for c in same)
        for c in chosen:
            units[c] += 1
    expl: dict[str, str] = {}
    for c in codes:
        m = minutes[c]
        whole = m // UNIT_MINUTES
        text = (
            f"CMS total-time rule: {total} timed min today -> {n} unit(s); {c}: {m} min = {whole} whole "
            f"15-min unit(s), remainder {m % UNIT_MINUTES} min"
        )
        if c in extra:
            text += " -> gets one leftover unit (largest remainder)"
        elif m % UNIT_MINUTES and leftover > 0:
            text += " -> no leftover unit (smaller remainder)"
        if tie_broken and m % UNIT_MINUTES == cut:
            text += f"; {TIE_BREAK}"
        expl[c] = text
    return Allocation(units, total, n, expl, tie_broken)
