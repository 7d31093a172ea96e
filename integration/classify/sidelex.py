"""Side lexicons: phrase tables read by one module only, never by the main phrase matcher.

``classify_side_muscles`` (muscles, counted for dry needling) and ``classify_side_eval`` (what an evaluation
documents about its complexity) would steal tokens from the main lexicons ("strength" is a purpose there,
an examination element here), so each gets its own PhraseMatcher, built once per Tables object, table and
date period and cached (bounded). Pure: no I/O.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from datetime import date, timedelta

from integration.classify.text import Hit, Phrase, PhraseMatcher
from mappings.loader import Tables

# (id(tables), table) -> (tables, validity boundaries, {period: matcher}): the rows in force change only at
# effective/expires boundaries, so a matcher serves every date of its period
_CACHE: dict[tuple[int, str], tuple[Tables, list[date], dict[int, PhraseMatcher]]] = {}
_LOCK = threading.Lock()
_CACHE_MAX = 16


@dataclass(frozen=True)
class SideHit:
    row_id: str
    signal: str
    text: str


def matcher(tables: Tables, table: str, on: date | None) -> PhraseMatcher:
    """The matcher of the rows of ``table`` in force on ``on`` (all rows when None)."""
    entry = _CACHE.get((id(tables), table))
    if entry is None or entry[0] is not tables:
        bounds: set[date] = set()
        for r in tables[table].rows if table in tables else ():
            bounds.add(r.effective)
            if r.expires is not None:
                bounds.add(r.expires + timedelta(days=1))
        entry = (tables, sorted(bounds), {})
        with _LOCK:
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[(id(tables), table)] = entry
    period = -1 if on is None else bisect.bisect_right(entry[1], on)
    m = entry[2].get(period)
    if m is None:
        m = PhraseMatcher(
            [
                Phrase.parse(p, (r.signal, *r.also), r.weight, r.id, r.not_after)
                for r in (tables.active(table, on) if table in tables else ())
                for p in r.phrases
            ]
        )
        with _LOCK:
            entry[2][period] = m
    return m


def scan(m: PhraseMatcher, tokens: tuple[str, ...]) -> list[SideHit]:
    return [_side(h) for h in m.scan(tokens)]


def _side(h: Hit) -> SideHit:
    return SideHit(h.phrase.row_id, h.phrase.signals[0], h.text)
