"""Intervention classification (placeholder: trusts a billable CPT/HCPCS coding; replaced by the engine)."""

from __future__ import annotations

from datetime import date

from integration.model import CPT, HCPCS_SYSTEMS, UNSUPPORTED, Classification, Evidence, Intervention
from mappings.loader import Tables


def classify(itv: Intervention, tables: Tables, *, on: date | None = None) -> Classification:
    known = {r.code for r in tables.active("billable_codes", on)}
    for c in itv.codings:
        if c.system in (CPT, *HCPCS_SYSTEMS) and c.code in known:
            return Classification(
                code=c.code, confidence=0.5, evidence=(Evidence("coding", f"{c.system}|{c.code}"),)
            )
    return Classification(code=UNSUPPORTED, confidence=0.0)
