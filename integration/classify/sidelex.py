"""Side lexicons: phrase tables read by one module only, never by the main phrase matcher.

``classify_side_muscles`` (muscles, counted for dry needling) and ``classify_side_eval`` (what an evaluation
documents about its complexity) would steal tokens from the main lexicons ("strength" is a purpose there,
an examination element here), so each gets its own PhraseMatcher, built once per Tables object, table and
date period and cached (bounded). Pure: no I/O.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date

from integration.classify.text import Hit, Phrase, PhraseMatcher
from mappings.loader import Tables

_CACHE: dict[tuple[int, str, date | None], tuple[Tables, PhraseMatcher]] = {}
_LOCK = threading.Lock()
_CACHE_MAX = 64


@dataclass(frozen=True)
class SideHit:
    row_id: str
    signal: str
    text: str


def matcher(tables: Tables, table: str, on: date | None) -> PhraseMatcher:
    """The matcher of the rows of ``table`` in force on ``on`` (all rows when None)."""
    key = (id(tables), table, on)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is tables:
        return hit[1]
    phrases = [
        Phrase.parse(p, (r.signal, *r.also), r.weight, r.id, r.not_after)
        for r in (tables.active(table, on) if table in tables else ())
        for p in r.phrases
    ]
    m = PhraseMatcher(phrases)
    with _LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (tables, m)
    return m


def scan(m: PhraseMatcher, tokens: tuple[str, ...]) -> list[SideHit]:
    return [_side(h) for h in m.scan(tokens)]


def _side(h: Hit) -> SideHit:
    return SideHit(h.phrase.row_id, h.phrase.signals[0], h.text)
