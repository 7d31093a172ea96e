"""EMR changes that touch no Encounter reach the next sync (real sekmet, one real worker for the module).

A deleted Procedure retires its suggestion; a Procedure moved to another Encounter re-runs both; a
Coverage updated in the window re-runs the patient's billed encounters within the look-back. Each case is
one EMR edit and one incremental sync on the module's clinic, synced once at the start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.fhir.client import FhirClient
from integration.fhir.writeback import ENCOUNTER_TAG, PTBILL_TAG
from ptbill_demo.embedded import SekmetServer
from tests.integration.conftest import Workers
from tests.integration.support import env_for, seed, send_sync, state_for, wait_run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("emr-changes")
    with SekmetServer(tmp / "fhir") as srv:
        seed(srv.base_url, patients=3, seed_value=5)
        env = env_for(srv.base_url, redis_url, PTBILL_CONTEXT_LOOKBACK_DAYS="400")
        ws = Workers(tmp)
        try:
            ws.start(env, concurrency=1)
            state = state_for(env)
            first = sync(env, state)
            assert int(first.get("dead_lettered", 0)) == 0
            with FhirClient(srv.base_url) as client:
                yield {"env": env, "state": state, "client": client, "first": first}
        finally:
            ws.stop()


def sync(env: dict[str, str], state: Any) -> dict[str, str]:
    run = uuid.uuid4().hex[:16]
    send_sync(env, run)
    return wait_run(state, run)


def charges(client: FhirClient) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in client.search_entries("ChargeItem", [("_tag", f"{PTBILL_TAG}|ptbill"), ("_count", "500")])
    ]


def encounter_of(resource: dict[str, Any]) -> str:
    return next(t["code"] for t in resource["meta"]["tag"] if t["system"] == ENCOUNTER_TAG)


def put(client: FhirClient, resource: dict[str, Any]) -> None:
    """Update one resource as the EMR would."""
    client.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": resource,
                    "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
                }
            ],
        }
    )


def sole_procedure_charge(client: FhirClient) -> dict[str, Any]:
    """A planned ChargeItem billed from one Procedure only (its code comes from nothing else)."""
    return next(c for c in charges(client) if c["status"] == "planned" and len(c.get("service", [])) == 1)


def test_first_run_records_the_write_strategy(clinic):
    assert clinic["first"]["write_strategy"] == "id"  # sekmet creates by PUT with ptbill's ids


def test_deleted_procedure_retires_its_charge(clinic):
    client, state = clinic["client"], clinic["state"]
    charge = sole_procedure_charge(client)
    proc_id = charge["service"][0]["reference"].split("/")[1]
    client._request("DELETE", f"{client.base_url}/Procedure/{proc_id}")  # as the EMR would
    info = sync(clinic["env"], state)
    assert int(info["rerun:procedure_deleted"]) == 1
    assert int(info["processed"]) == 1 and int(info.get("dead_lettered", 0)) == 0
    after = client.read("ChargeItem", charge["id"])
    assert after["status"] == "entered-in-error"  # retired through the write path
    # the encounter's other suggestions no longer name the deleted Procedure
    for c in charges(client):
        if encounter_of(c) == encounter_of(charge) and c["status"] == "planned":
            assert f"Procedure/{proc_id}" not in [s["reference"] for s in c.get("service", [])]


def test_moved_procedure_reruns_both_encounters(clinic):
    client, state = clinic["client"], clinic["state"]
    charge = sole_procedure_charge(client)
    proc_ref = charge["service"][0]["reference"]
    old_enc = encounter_of(charge)
    proc = client.read("Procedure", proc_ref.split("/")[1])
    # another finished encounter of the same patient
    others = [
        e["resource"]["id"]
        for e in client.search_entries(
            "Encounter", [("subject", proc["subject"]["reference"]), ("status", "finished")]
        )
        if e["resource"]["id"] != old_enc
    ]
    new_enc = others[0]
    proc["encounter"] = {"reference": f"Encounter/{new_enc}"}
    put(client, proc)
    info = sync(clinic["env"], state)
    assert int(info["rerun:procedure_moved"]) == 1
    assert int(info["processed"]) == 2 and int(info.get("dead_lettered", 0)) == 0
    assert client.read("ChargeItem", charge["id"])["status"] == "entered-in-error"
    moved = [c for c in charges(client) if proc_ref in [s["reference"] for s in c.get("service", [])]]
    assert moved and {encounter_of(c) for c in moved if c["status"] == "planned"} == {new_enc}


def test_coverage_change_reruns_the_patients_open_encounters(clinic):
    client, state = clinic["client"], clinic["state"]
    coverages = [e["resource"] for e in client.search_entries("Coverage", [("_count", "100")])]
    cov = coverages[0]
    patient = cov["beneficiary"]["reference"]
    other_payor = next(c["payor"] for c in coverages if c["payor"] != cov["payor"])
    billed = {
        e["resource"]["id"]
        for e in client.search_entries("Encounter", [("subject", patient), ("status", "finished")])
    }
    cov["payor"] = other_payor
    put(client, cov)
    info = sync(clinic["env"], state)
    assert int(info["rerun:context_changed"]) == len(billed)
    done = int(info.get("processed", 0)) + int(info.get("unchanged", 0))
    assert done == len(billed) and int(info.get("dead_lettered", 0)) == 0


def test_unchanged_resync_reads_changes_but_writes_nothing(clinic):
    info = sync(clinic["env"], clinic["state"])
    assert int(info.get("dispatched", 0)) == 0 and int(info.get("fhir_write_requests", 0)) == 0
    assert not any(k.startswith("rerun:") for k in info)
