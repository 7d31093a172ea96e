"""Intervention classification: one documented intervention -> a CPT/HCPCS code (or UNSUPPORTED).

Public API (pure; no Celery, HTTP or settings):
  classify(itv, tables, *, on=None) -> Classification
  therapy_relevance(itv, tables) -> None when the procedure looks like rehab therapy, else a skip reason

The rules, lexicons and code maps are data in mappings/classify/*.yaml; see integration.classify.engine.
"""

from __future__ import annotations

from datetime import date

from integration.classify import wider
from integration.classify.engine import classify_with, compiled_for, relevance_with
from integration.model import Classification, Intervention
from mappings.loader import Tables

__all__ = ["classify", "therapy_relevance"]


def classify(itv: Intervention, tables: Tables, *, on: date | None = None) -> Classification:
    """Classify one intervention as of the date of service ``on`` (rows in force then; all rows when None)."""
    on = on or itv.performed_date
    comp = compiled_for(tables, on)
    # wider code set (issue 8 §5): muscle counts (20560/20561) and evaluation complexity, on the final answer
    return wider.refine(tables, on, comp, itv, classify_with(comp, itv))


def therapy_relevance(itv: Intervention, tables: Tables) -> str | None:
    """None when ``itv`` looks like a rehab-therapy intervention, otherwise a short skip reason."""
    return relevance_with(compiled_for(tables, itv.performed_date), itv)
