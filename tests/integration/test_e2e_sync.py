"""End to end with real processes: sekmet-fhir <- Celery worker on Redis -> the same server.

seed -> sync -> assert what was written -> sync again (nothing new) -> backfill (nothing new) ->
edit a Procedure -> sync (only the difference is written, stale suggestions are retired) ->
a person reviews a ChargeItem -> re-processing leaves it alone.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from integration.fhir.client import FhirClient
from integration.fhir.writeback import (
    ENCOUNTER_TAG,
    EXT_HASH,
    EXT_MODIFIER,
    EXT_RULE,
    EXT_TABLES,
    IDENTIFIER_SYSTEM,
    PTBILL_TAG,
)
from tests.integration.support import env_for, seed, send_sync, state_for, wait_run

pytestmark = pytest.mark.integration

OUTPUT_TYPES = ("ChargeItem", "DetectedIssue", "Task", "Flag", "Provenance")


def ptbill_resources(client: FhirClient) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in OUTPUT_TYPES:
        for e in client.search_entries(t, [("_tag", f"{PTBILL_TAG}|ptbill"), ("_count", "500")]):
            r = e["resource"]
            out[f"{t}/{r['id']}"] = r
    return out


def versions(resources: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: r["meta"]["versionId"] for k, r in resources.items()}


def synced_clinic(fhir_server, redis_url, workers, patients: int, seed_value: int):
    """Seed a clinic, start one worker, run one sync to completion; returns (env, state)."""
    env = env_for(fhir_server.base_url, redis_url)
    seed(fhir_server.base_url, patients=patients, seed_value=seed_value)
    workers.start(env, concurrency=1)
    state = state_for(env)
    run = uuid.uuid4().hex[:16]
    send_sync(env, run)
    wait_run(state, run)
    return env, state


def put(client: FhirClient, resource: dict[str, Any]) -> None:
    """Update one resource as the EMR (a person) would."""
    url = f"{resource['resourceType']}/{resource['id']}"
    client.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": resource, "request": {"method": "PUT", "url": url}}],
        }
    )


def test_sync_writes_once_and_is_idempotent(fhir_server, redis_url, workers):
    env = env_for(fhir_server.base_url, redis_url)
    bundles = seed(fhir_server.base_url, patients=6, seed_value=3)
    n_encounters = sum(
        1
        for b in bundles
        for e in b["entry"]
        if e["resource"]["resourceType"] == "Encounter" and e["resource"]["status"] == "finished"
    )
    workers.start(env, concurrency=2)
    state = state_for(env)

    run1 = uuid.uuid4().hex[:16]
    send_sync(env, run1)
    info = wait_run(state, run1)
    assert int(info["processed"]) == n_encounters
    assert int(info.get("dead_lettered", 0)) == 0
    assert state.watermark() == info["until"]

    with FhirClient(fhir_server.base_url) as client:
        first = ptbill_resources(client)
        kinds = Counter(k.split("/")[0] for k in first)
        assert kinds["ChargeItem"] > 0 and kinds["DetectedIssue"] > 0 and kinds["Provenance"] > 0
        # every encounter-owned resource has one business identifier, unique across the server
        idents = Counter()
        for key, r in first.items():
            if key.startswith("Provenance/"):
                continue
            vals = [i["value"] for i in r["identifier"] if i["system"] == IDENTIFIER_SYSTEM]
            assert len(vals) == 1, key
            idents[(key.split("/")[0], vals[0])] += 1
            assert any(x["url"] == EXT_HASH for x in r.get("extension", [])), key
        assert max(idents.values()) == 1
        # ChargeItems carry units, GP (or GO/GN), the rule ids and the table versions behind them
        for key, r in first.items():
            if not key.startswith("ChargeItem/"):
                continue
            assert r["status"] == "planned"
            assert r["quantity"]["value"] >= 1
            assert r["context"]["reference"].startswith("Encounter/")
            mods = [
                x["valueCodeableConcept"]["coding"][0]["code"]
                for x in r["extension"]
                if x["url"] == EXT_MODIFIER
            ]
            assert {"GP", "GO", "GN"} & set(mods), key
            assert "KX" not in mods  # never added silently
            assert any(x["url"] == EXT_RULE for x in r["extension"])
            assert any(
                x["url"] == EXT_TABLES and "billable_codes@" in x["valueString"] for x in r["extension"]
            )
        # each processed encounter got one Provenance naming its sources and the rule versions
        provs = [r for k, r in first.items() if k.startswith("Provenance/")]
        assert all(p["entity"] and p["policy"] and p["agent"][0]["who"]["type"] == "Device" for p in provs)

    # second sync: the window is empty, nothing is written
    run2 = uuid.uuid4().hex[:16]
    send_sync(env, run2)
    info2 = wait_run(state, run2)
    assert int(info2.get("processed", 0)) == 0
    with FhirClient(fhir_server.base_url) as client:
        assert versions(ptbill_resources(client)) == versions(first)

    # backfill of the whole history: every encounter is re-decided, nothing changes on the server
    run3 = uuid.uuid4().hex[:16]
    send_sync(env, run3, since="1970-01-01T00:00:00Z", until=info["until"], backfill=True)
    info3 = wait_run(state, run3)
    assert int(info3["unchanged"]) == n_encounters
    assert int(info3.get("fhir_write_requests", 0)) == 0
    assert state.watermark() == info2["until"]  # a backfill never moves the watermark
    with FhirClient(fhir_server.base_url) as client:
        assert versions(ptbill_resources(client)) == versions(first)


def test_reprocessing_updates_in_place_retires_stale_and_keeps_reviewed(fhir_server, redis_url, workers):
    env, state = synced_clinic(fhir_server, redis_url, workers, patients=2, seed_value=11)

    with FhirClient(fhir_server.base_url) as client:
        before = ptbill_resources(client)
        charges = [r for k, r in before.items() if k.startswith("ChargeItem/")]
        assert len(charges) >= 2
        # pick an encounter with a ChargeItem; rewrite one of its Procedures as vague documentation
        target = charges[0]
        enc_ref = target["context"]["reference"]
        enc_id = enc_ref.split("/")[1]
        proc_ref = target["service"][0]["reference"]
        proc = client.read("Procedure", proc_ref.split("/")[1])
        proc["code"] = {"text": "ther ex as tolerated"}
        proc.pop("note", None)
        put(client, proc)
        # a biller has already reviewed another encounter's ChargeItem
        other = next(c for c in charges if c["context"]["reference"] != enc_ref)
        other["status"] = "billable"
        put(client, other)
        reviewed_version = client.read("ChargeItem", other["id"])["meta"]["versionId"]

    run2 = uuid.uuid4().hex[:16]
    send_sync(env, run2)
    info = wait_run(state, run2)
    assert int(info["processed"]) == 1  # only the encounter whose Procedure changed

    with FhirClient(fhir_server.base_url) as client:
        after = ptbill_resources(client)
    changed = {
        k
        for k in after
        if (k not in before or after[k]["meta"]["versionId"] != before[k]["meta"]["versionId"])
        and k != f"ChargeItem/{other['id']}"  # the biller's own edit
    }
    for k in changed:  # every change belongs to the edited encounter
        r = after[k]
        tags = {(t["system"], t["code"]) for t in r.get("meta", {}).get("tag", [])}
        assert (ENCOUNTER_TAG, enc_id) in tags, k
    # the vague Procedure now raises an abstention finding and its old suggestion is retired
    issues = [
        r
        for k, r in after.items()
        if k.startswith("DetectedIssue/")
        and any(i.get("reference") == proc_ref for i in r.get("implicated", []))
    ]
    assert any(
        r["code"]["coding"][0]["code"].startswith("DOC-UNSUPPORTED") and r["status"] == "preliminary"
        for r in issues
    )
    old = after[f"ChargeItem/{target['id']}"]
    assert old["status"] in ("entered-in-error", "planned")
    if old["status"] == "planned":  # the encounter still bills the code through another Procedure
        assert proc_ref not in [s["reference"] for s in old.get("service", [])]
    # the reviewed ChargeItem was not touched
    assert after[f"ChargeItem/{other['id']}"]["status"] == "billable"
    assert after[f"ChargeItem/{other['id']}"]["meta"]["versionId"] == reviewed_version


def test_withdrawn_encounter_has_its_suggestions_retired(fhir_server, redis_url, workers):
    env, state = synced_clinic(fhir_server, redis_url, workers, patients=2, seed_value=21)
    with FhirClient(fhir_server.base_url) as client:
        before = ptbill_resources(client)
        charge = next(r for k, r in before.items() if k.startswith("ChargeItem/"))
        enc_id = charge["context"]["reference"].split("/")[1]
        enc = client.read("Encounter", enc_id)
        enc["status"] = "entered-in-error"
        put(client, enc)
    run2 = uuid.uuid4().hex[:16]
    send_sync(env, run2)
    info = wait_run(state, run2)
    assert int(info["withdrawn"]) == 1 and int(info["processed"]) == 1
    with FhirClient(fhir_server.base_url) as client:
        after = ptbill_resources(client)
    owned = [
        (k, r)
        for k, r in after.items()
        if not k.startswith(("Provenance/", "Flag/"))
        and (ENCOUNTER_TAG, enc_id) in {(t["system"], t["code"]) for t in r["meta"].get("tag", [])}
    ]
    assert owned
    for k, r in owned:
        expected = "cancelled" if k.startswith("Task/") else "entered-in-error"
        assert r["status"] == expected, k
    # nothing else changed
    for k, r in after.items():
        if k in before and (k, r) not in owned and not k.startswith("Provenance/"):
            assert r["meta"]["versionId"] == before[k]["meta"]["versionId"], k
