"""Billing rules engine (pure): classified interventions of one encounter -> billing lines.

Public API::

    bill(facts, classified, tables, *, edits=None) -> BillingResult
    BillingResult(lines, findings, actions, flags, skipped, payer_profile)

Official CMS NCCI files: ``load_ptp_file(path)``, ``load_mue_file(path)``; pass them as
``bill(..., edits=OfficialEdits(ptp=..., mue=...))`` or install once with
``register_official_edits(OfficialEdits(...))``. Without them the seed tables in
mappings/billing/ are used. See integration/billing/engine.py for the order of rules.
"""

from __future__ import annotations

from integration.billing.engine import BillingResult, bill
from integration.billing.ncci import (
    MueEdit,
    OfficialEdits,
    PtpEdit,
    load_mue_file,
    load_ptp_file,
    official_edits,
    register_official_edits,
)
from integration.billing.units import allocate, ama_units, cms_total_units

__all__ = [
    "BillingResult",
    "MueEdit",
    "OfficialEdits",
    "PtpEdit",
    "allocate",
    "ama_units",
    "bill",
    "cms_total_units",
    "load_mue_file",
    "load_ptp_file",
    "official_edits",
    "register_official_edits",
]
