"""CapabilityStatements for tests: one declaring everything ptbill needs (``complete``), and variants."""

from __future__ import annotations

from typing import Any

TYPES = (
    "Encounter",
    "Procedure",
    "Coverage",
    "ChargeItem",
    "Practitioner",
    "PractitionerRole",
    "DetectedIssue",
    "Task",
    "Flag",
    "Provenance",
)
INTERACTIONS = ("read", "vread", "update", "create", "search-type", "history-type", "history-instance")


def resource(
    rtype: str,
    *,
    update_create: bool = True,
    conditional_update: bool = True,
    interactions: tuple[str, ...] = INTERACTIONS,
) -> dict[str, Any]:
    return {
        "type": rtype,
        "interaction": [{"code": c} for c in interactions],
        "updateCreate": update_create,
        "conditionalUpdate": conditional_update,
        "versioning": "versioned-update",
    }


def complete(
    *,
    version: str = "4.0.1",
    without: tuple[str, ...] = (),
    update_create: bool = True,
    conditional_update: bool = True,
    interactions: tuple[str, ...] = INTERACTIONS,
    **extra: Any,
) -> dict[str, Any]:
    """A server declaring ptbill's reads and both write strategies (no searchParam lists: not evidence)."""
    return {
        "resourceType": "CapabilityStatement",
        "fhirVersion": version,
        "rest": [
            {
                "mode": "server",
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "resource": [
                    resource(
                        t,
                        update_create=update_create,
                        conditional_update=conditional_update,
                        interactions=interactions,
                    )
                    for t in TYPES
                    if t not in without
                ],
            }
        ],
        **extra,
    }
