"""Helpers of the CDS tests: a Bundle split into the prefetch an EHR would send for ptbill's templates."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data" / "bundles"
BUNDLES = sorted(p.stem for p in DATA.glob("*.json"))

KEY_OF_TYPE = {
    "Procedure": "procedures",
    "Practitioner": "procedures",  # _include=Procedure:performer
    "PractitionerRole": "procedures",
    "Coverage": "coverage",
    "Organization": "coverage",  # _include=Coverage:payor
    "EpisodeOfCare": "episodes",
    "ChargeItem": "charges",
}


def load(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


def searchset(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def as_prefetch(bundle: dict[str, Any], encounter_id: str | None = None) -> tuple[dict[str, Any], str, str]:
    """(prefetch, encounter id, patient id) for ptbill's encounter-discharge templates."""
    encounters = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"]
    enc = next(e for e in encounters if encounter_id in (None, e["id"]))
    keys: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("procedures", "coverage", "episodes", "charges", "visits")
    }
    patient_ref = enc["subject"]["reference"]
    for e in bundle["entry"]:
        r = e["resource"]
        key = KEY_OF_TYPE.get(r["resourceType"])
        if key is None:
            continue
        if r["resourceType"] == "Procedure":
            if (r.get("subject") or {}).get("reference") == patient_ref:
                visit = {"fullUrl": e.get("fullUrl"), "resource": r, "search": {"mode": "match"}}
                keys["visits"].append(visit)
            if (r.get("encounter") or {}).get("reference") != f"Encounter/{enc['id']}":
                continue
        mode = (
            "match"
            if r["resourceType"] in ("Procedure", "Coverage", "EpisodeOfCare", "ChargeItem")
            else "include"
        )
        keys[key].append({"fullUrl": e.get("fullUrl"), "resource": r, "search": {"mode": mode}})
    prefetch: dict[str, Any] = {"encounter": enc}
    for k, entries in keys.items():
        prefetch[k] = searchset(entries) if entries else None
    patient = enc["subject"]["reference"].split("/", 1)[1]
    return prefetch, enc["id"], patient


def hook_body(
    hook: str, context: dict[str, Any], prefetch: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/u1", **context},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body
