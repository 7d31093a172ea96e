"""Intervention classification: one documented intervention -> a CPT/HCPCS code (or UNSUPPORTED).

Public API (pure; no Celery, HTTP or settings):
  classify(itv, tables, *, on=None) -> Classification (with its documented items and, for an entry that
      documents several codes, the mixed-entry decision: integration.classify.entry)
  therapy_relevance(itv, tables) -> None when the procedure looks like rehab therapy, else a skip reason

The rules, lexicons and code maps are data in mappings/classify/*.yaml; see integration.classify.engine.
"""

from __future__ import annotations

import threading
from datetime import date
from functools import partial

from integration.classify import wider
from integration.classify.engine import Compiled, classify_with, compiled_for, relevance_with
from integration.classify.entry import CodeSets, LabelClassifier, classify_entry, letters
from integration.model import UNSUPPORTED, Classification, Intervention
from mappings.loader import Tables

__all__ = ["classify", "therapy_relevance"]

_CODE_SETS: dict[tuple[int, date | None], tuple[Tables, CodeSets]] = {}
_CODE_SETS_LOCK = threading.Lock()
_LABELS: dict[int, tuple[Compiled, LabelClassifier]] = {}
_CATEGORIES: dict[int, tuple[Compiled, frozenset[str]]] = {}
_LABELS_MAX = 10_000  # distinct heading labels per table set (at most 60 characters each)


def classify(itv: Intervention, tables: Tables, *, on: date | None = None) -> Classification:
    """Classify one intervention as of the date of service ``on`` (rows in force then; all rows when None)."""
    day = on or itv.performed_date
    comp = compiled_for(tables, day)
    entry = classify_entry(partial(classify_with, comp), itv, _code_sets(tables, day, comp), _labels(comp))
    # wider code set (issue 8 §5): muscle counts (20560/20561) and evaluation complexity, on the entry
    return wider.refine(tables, day, comp, itv, entry)


def therapy_relevance(itv: Intervention, tables: Tables) -> str | None:
    """None when ``itv`` looks like a rehab-therapy intervention, otherwise a short skip reason."""
    return relevance_with(compiled_for(tables, itv.performed_date), itv)


def _labels(comp: Compiled) -> LabelClassifier:
    """The engine's code for a heading label, cached per compiled table set (labels repeat: "Ther ex")."""
    hit = _LABELS.get(id(comp))
    if hit is not None and hit[0] is comp:
        return hit[1]
    cache: dict[str, tuple[str, tuple[str, ...]]] = {}

    def code(label: str) -> tuple[str, tuple[str, ...]]:
        hit = cache.get(label)
        if hit is None:
            c = classify_with(comp, Intervention(id="heading", text=label))
            hit = (c.code, c.alternatives)
            if len(cache) < _LABELS_MAX:
                cache[label] = hit
        return hit

    with _CODE_SETS_LOCK:
        if len(_LABELS) >= 64:
            _LABELS.clear()
        _LABELS[id(comp)] = (comp, code)
    return code


def _categories(tables: Tables, on: date | None) -> frozenset[str]:
    """Service-category names: the classifier concepts' labels and the abbreviations expanding to one."""
    names = {letters(c.label) for c in tables.active("classify_concepts", on) if c.code != UNSUPPORTED}
    out = set(names)
    for a in tables.active("classify_abbreviations", on):
        exp = letters(a.expansion)
        if any(exp == n or (len(exp) >= 6 and n.startswith(exp[:-3])) for n in names):
            out.add(letters(a.match))
    return frozenset(x for x in out if x)


def _categories_for(tables: Tables, on: date | None, comp: Compiled) -> frozenset[str]:
    """:func:`_categories`, once per compiled classifier table set (the concept and abbreviation rows in force
    change only where the compiled tables do, not with every date of service)."""
    hit = _CATEGORIES.get(id(comp))
    if hit is not None and hit[0] is comp:
        return hit[1]
    names = _categories(tables, on)
    with _CODE_SETS_LOCK:
        if len(_CATEGORIES) >= 64:
            _CATEGORIES.clear()
        _CATEGORIES[id(comp)] = (comp, names)
    return names


def _code_sets(tables: Tables, on: date | None, comp: Compiled) -> CodeSets:
    """Untimed and whole-session codes (core/billable_codes.yaml ``timed``, ``category``) as of ``on``."""
    key = (id(tables), on)
    hit = _CODE_SETS.get(key)
    if hit is not None and hit[0] is tables:
        return hit[1]
    rows = tables.active("billable_codes", on) if "billable_codes" in tables else ()
    sets = CodeSets(
        untimed=frozenset(r.code for r in rows if not r.timed),
        session=frozenset(r.code for r in rows if r.category in ("evaluation", "group")),
        categories=_categories_for(tables, on, comp),
    )
    with _CODE_SETS_LOCK:
        if len(_CODE_SETS) >= 256:
            _CODE_SETS.clear()
        _CODE_SETS[key] = (tables, sets)
    return sets
