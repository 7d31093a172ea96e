"""The CDS Hooks discovery document (``GET {base}/cds-services``)."""

from __future__ import annotations

from typing import Any

from integration.cds.prefetch import DISCHARGE_PREFETCH, PATIENT_VIEW_PREFETCH

PATIENT_VIEW_ID = "ptbill-patient-view"
DISCHARGE_ID = "ptbill-encounter-discharge"
HOOKS = {PATIENT_VIEW_ID: "patient-view", DISCHARGE_ID: "encounter-discharge"}
# the context fields ptbill reads (required by the hook definitions: patient-view, encounter-discharge)
REQUIRED_CONTEXT = {"patient-view": ("patientId",), "encounter-discharge": ("patientId", "encounterId")}


def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": PATIENT_VIEW_ID,
                "title": "ptbill: open billing alerts",
                "description": (
                    "The patient's active ptbill alerts (Medicare KX threshold approaching or exceeded, "
                    "progress report due, plan-of-care recertification) and open attestations and "
                    "documentation tasks, each with its basis, rule and mapping-table versions."
                ),
                "prefetch": dict(PATIENT_VIEW_PREFETCH),
            },
            {
                "hook": "encounter-discharge",
                "id": DISCHARGE_ID,
                "title": "ptbill: documentation and billing check",
                "description": (
                    "Checks the encounter's documented interventions with the same rules as ptbill's "
                    "background sync: documentation gaps (body part, functional task, minutes...), the "
                    "suggested billing lines with units and modifiers, and attestations a person must make. "
                    "Nothing is written to the EMR by the call."
                ),
                "prefetch": dict(DISCHARGE_PREFETCH),
                "usageRequirements": (
                    "Prefetch the Encounter, its Procedures (with performers) and the patient's Coverage, or "
                    "pass fhirAuthorization with read access to them."
                ),
            },
        ]
    }
