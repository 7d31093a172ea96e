"""The claim check keeps only what one encounter needs, and deciding from it changes nothing.

The claim check is built from search pages, where a server has resolved every reference to ``Type/id``;
``server_shape`` does to the synthetic transaction bundles what a server does on load.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from integration.fhir.extract import group_bundle
from integration.sync import Group, decide_group, slim
from mappings.loader import default_tables
from ptbill_demo.synth import generate_clinic


def server_shape(bundles: list[dict[str, Any]]) -> dict[str, Any]:
    """One searchset-like Bundle: ids assigned, urn:uuid and conditional references resolved."""
    by_url: dict[str, str] = {}
    by_ident: dict[str, str] = {}
    resources = []
    for b in bundles:
        for e in b["entry"]:
            r = json.loads(json.dumps(e["resource"]))
            r.setdefault("id", str(uuid.uuid5(uuid.NAMESPACE_URL, e.get("fullUrl") or json.dumps(r))))
            key = f"{r['resourceType']}/{r['id']}"
            if e.get("fullUrl"):
                by_url[e["fullUrl"]] = key
            for i in r.get("identifier") or []:
                by_ident[f"{r['resourceType']}?identifier={i.get('system')}|{i.get('value')}"] = key
            resources.append(r)

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: fix(v) for k, v in node.items()}
            ref = out.get("reference")
            if isinstance(ref, str):
                out["reference"] = by_url.get(ref) or by_ident.get(ref) or ref
            return out
        if isinstance(node, list):
            return [fix(x) for x in node]
        return node

    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": fix(r)} for r in resources]}


def groups(patients: int = 12, seed: int = 5) -> list[Group]:
    page = server_shape(generate_clinic(patients=patients, seed=seed))
    return [Group(enc, dict(rel)) for enc, rel in group_bundle(page)[0]]


def round_trip(g: Group) -> Group:
    return Group.from_json(json.loads(json.dumps(g.to_json())))


def test_slim_claim_check_decides_the_same_and_is_smaller():
    tables = default_tables()
    gs = groups()
    assert len(gs) > 40
    for g in gs:
        small = slim(g)
        assert len(json.dumps(small.to_json())) < len(json.dumps(g.to_json()))
        facts_a, dec_a = decide_group(round_trip(g), tables)
        facts_b, dec_b = decide_group(round_trip(small), tables)
        assert facts_a == facts_b, g.encounter_id
        assert dec_a == dec_b, g.encounter_id


def test_slim_keeps_one_key_per_resource_and_only_this_encounters_procedures():
    g = groups(patients=3)[0]
    small = slim(g)
    for key, res in small.related.items():
        assert key == f"{res['resourceType']}/{res['id']}"
        if res["resourceType"] == "Procedure":
            assert res["encounter"]["reference"] == f"Encounter/{g.encounter_id}"
