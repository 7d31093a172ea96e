"""Copy-forward end to end (issue 8 §4): a real FHIR server holds two visits of one patient with the same
note; one ``ptbill sync --inline`` reads the earlier visit with the patient's context (``Procedure?patient=``)
and writes DOC-CLONED for the second visit only, with a Task and no ChargeItem for it."""

from __future__ import annotations

from typing import Any

import pytest

from integration.fhir.client import FhirClient
from integration.fhir.writeback import ENCOUNTER_TAG
from tests.integration.support import env_for, ptbill

pytestmark = pytest.mark.integration

CPT = "http://www.ama-assn.org/go/cpt"
NOTE = "Clamshells with red band 3x15 left hip for glute med strength, cues to avoid trunk rotation, hip hike"


def _visit(eid: str, day: str, text: str) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/clone-pat"},
            "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T10:00:00Z"},
        },
        {
            "resourceType": "Procedure",
            "id": f"{eid}-p",
            "status": "completed",
            "code": {"text": text, "coding": [{"system": CPT, "code": "97110"}]},
            "subject": {"reference": "Patient/clone-pat"},
            "encounter": {"reference": f"Encounter/{eid}"},
            "performedPeriod": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:15:00Z"},
        },
    ]


def _put_all(client: FhirClient, resources: list[dict[str, Any]]) -> None:
    client.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources
            ],
        }
    )


def test_second_visit_with_the_same_note_is_flagged(fhir_server, redis_url):
    patient = {"resourceType": "Patient", "id": "clone-pat", "name": [{"text": "synthetic patient"}]}
    with FhirClient(fhir_server.base_url) as client:
        _put_all(
            client,
            [
                patient,
                *_visit("clone-e1", "2026-03-02", NOTE),
                *_visit("clone-e2", "2026-03-04", NOTE.upper()),  # copied forward (case changed)
                *_visit("clone-e3", "2026-03-06", NOTE.replace("3x15", "3x20")),  # progressed
            ],
        )
    env = env_for(fhir_server.base_url, redis_url)
    p = ptbill(env, "sync", "--inline", timeout=180)
    assert p.returncode == 0, p.stderr
    with FhirClient(fhir_server.base_url) as client:
        issues, tasks, charges = (
            [e["resource"] for e in client.search_entries(t, [("_count", "200")])]
            for t in ("DetectedIssue", "Task", "ChargeItem")
        )

    def encounter_of(r: dict[str, Any]) -> set[str]:  # encounter-owned resources carry the encounter tag
        return {t["code"] for t in r.get("meta", {}).get("tag", []) if t.get("system") == ENCOUNTER_TAG}

    def of(resources: list[dict[str, Any]], code: str) -> set[str]:
        out: set[str] = set()
        for r in resources:
            if code in {c.get("code") for c in r.get("code", {}).get("coding", [])}:
                out |= encounter_of(r)
        return out

    assert of(issues, "DOC-CLONED") == {"clone-e2"}
    assert of(tasks, "DOC-CLONED") == {"clone-e2"}
    billed = {e for r in charges if r.get("status") == "planned" for e in encounter_of(r)}
    assert billed == {"clone-e1", "clone-e3"}
