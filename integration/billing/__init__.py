"""Billing rules engine (pure): classified interventions of one encounter -> billing lines.

Public API::

    bill(facts, classified, tables, *, edits=None) -> BillingResult
    BillingResult(lines, findings, actions, flags, skipped, payer_profile)

Official CMS NCCI files: ``load_ptp_file(path)``, ``load_mue_file(path)``; pass them as
``bill(..., edits=OfficialEdits(ptp=..., mue=...))`` or install once with
``register_official_edits(OfficialEdits(...))``. Without them the seed tables in
mappings/billing/ are used.

Layout: ``engine.py`` runs the ordered ``STEPS`` (one module per rule under ``steps/``) over one
``context.BillingContext``; ``rules.py`` gives the typed rule rows in force on the date of service;
``units.py`` (unit arithmetic), ``timeline.py`` (clock-time arithmetic) and ``ncci.py`` (CMS files) are
pure helpers. README "Rules as data" maps each rule to its step and its table.
"""

from __future__ import annotations

from integration.billing.engine import STEPS, BillingResult, bill
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
    "STEPS",
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
