"""ptbill_demo.synth: deterministic, valid, loadable, varied synthetic PT clinic data."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from integration.fhir.extract import (
    EXT_GROUP_SIZE,
    EXT_TOTAL_TIMED_MINUTES,
    EXT_VISIT_NUMBER,
    extract_encounter,
    group_bundle,
)
from integration.model import CPT, SNOMED, SOPT_SYSTEMS
from ptbill_demo.synth import SYNTH, TRUTH_TAG, clinic_summary, generate_clinic


@pytest.fixture(scope="module")
def clinic() -> list[dict[str, Any]]:
    return generate_clinic(patients=30, seed=7)


def _resources(bundles: list[dict[str, Any]], rtype: str | None = None) -> list[dict[str, Any]]:
    return [
        e["resource"] for b in bundles for e in b["entry"] if rtype in (None, e["resource"]["resourceType"])
    ]


def test_same_seed_is_byte_identical_and_seeds_differ() -> None:
    a = json.dumps(generate_clinic(patients=6, seed=3))
    assert a == json.dumps(generate_clinic(patients=6, seed=3))
    assert a != json.dumps(generate_clinic(patients=6, seed=4))


def test_counts(clinic: list[dict[str, Any]]) -> None:
    s = clinic_summary(clinic)
    assert s["bundles"] == 31 and s["patients"] == 30
    assert 30 * 4 <= s["encounters"] <= 30 * 12
    assert s["procedures"] == len(_resources(clinic, "Procedure")) > s["encounters"]
    assert s["resources.EpisodeOfCare"] == 30 and s["resources.PractitionerRole"] == 5
    small = generate_clinic(patients=2, seed=1, visits_per_patient=(3, 3))
    assert clinic_summary(small)["encounters"] == 6
    assert clinic_summary(generate_clinic(patients=0)) == clinic_summary([small[0]])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patients": -1},
        {"patients": 1, "visits_per_patient": (0, 3)},
        {"patients": 1, "visits_per_patient": (5, 4)},
    ],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate_clinic(**kwargs)


def test_every_resource_and_bundle_validates_as_r4b() -> None:
    bundles = generate_clinic(patients=8, seed=11)
    for b in bundles:
        get_fhir_model_class("Bundle").model_validate(b)
        for e in b["entry"]:
            res = e["resource"]
            get_fhir_model_class(res["resourceType"]).model_validate(res)


def test_transactions_are_conditional_and_references_resolve(clinic: list[dict[str, Any]]) -> None:
    master_idents = {
        f"{e['resource']['resourceType']}?identifier={i['system']}|{i['value']}"
        for e in clinic[0]["entry"]
        for i in e["resource"]["identifier"]
    }
    for b in clinic:
        assert b["type"] == "transaction"
        urls = {e["fullUrl"] for e in b["entry"]}
        assert len(urls) == len(b["entry"]) and all(u.startswith("urn:uuid:") for u in urls)
        for e in b["entry"]:
            res = e["resource"]
            ident = res["identifier"][0]
            assert ident["system"].startswith(SYNTH + "/")
            assert e["request"] == {
                "method": "PUT",
                "url": f"{res['resourceType']}?identifier={ident['system']}|{ident['value']}",
            }
            for ref in _references(res):
                if ref.startswith("urn:uuid:"):
                    assert ref in urls  # inside the same bundle
                else:
                    assert ref in master_idents  # conditional reference to the master data


def _references(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                out.append(v)
            else:
                out.extend(_references(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_references(v))
    return out


def test_extraction_round_trip(clinic: list[dict[str, Any]]) -> None:
    merged = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [e for b in clinic for e in b["entry"]],
    }
    groups, problems = group_bundle(merged)
    assert problems == []
    by_url = {e["fullUrl"]: e["resource"] for e in merged["entry"]}
    generated = {}
    for e in merged["entry"]:
        if e["resource"]["resourceType"] == "Procedure":
            generated.setdefault(e["resource"]["encounter"]["reference"], []).append(e)
    assert len(groups) == clinic_summary(clinic)["encounters"]
    pta_seen = extracted = 0
    for enc, related in groups:
        facts = extract_encounter(enc, related)
        enc_url = next(u for u, r in by_url.items() if r is enc or r.get("identifier") == enc["identifier"])
        expected = generated.get(enc_url, [])
        assert len(facts.interventions) == len(expected)
        extracted += len(expected)
        want_minutes = {e["fullUrl"].removeprefix("urn:uuid:"): _minutes(e["resource"]) for e in expected}
        assert {i.id: i.minutes for i in facts.interventions} == want_minutes
        assert facts.patient_id is not None and facts.coverages and facts.episode is not None
        assert facts.date_of_service == date.fromisoformat(enc["period"]["start"][:10])
        for itv in facts.interventions:
            assert itv.performers and itv.performers[0].actor.startswith(
                ("PractitionerRole/", "Practitioner/")
            )
        refs = {p.reference: p for p in facts.practitioners}
        assert all(p.actor in refs for i in facts.interventions for p in i.performers)
        pta_seen += sum(any(c.code == "225200000X" for c in p.codes) for p in facts.practitioners)
        ext_urls = {x["url"] for x in enc.get("extension", [])}
        if EXT_VISIT_NUMBER in ext_urls:
            assert facts.episode.visit_number is not None
        if EXT_TOTAL_TIMED_MINUTES in ext_urls:
            assert facts.documented_total_timed_minutes is not None
        if EXT_GROUP_SIZE in ext_urls:
            assert facts.group_size is not None and all(i.group_size for i in facts.interventions)
        assert all("urn" not in p for p in facts.input_problems)
    assert pta_seen > 0
    assert extracted == clinic_summary(clinic)["procedures"]


def _minutes(proc: dict[str, Any]) -> int | None:
    period = proc.get("performedPeriod") or {}
    if "end" not in period:
        return None
    delta = datetime.fromisoformat(period["end"]) - datetime.fromisoformat(period["start"])
    return int(delta.total_seconds() // 60)


def test_variety(clinic: list[dict[str, Any]]) -> None:
    procs = _resources(clinic, "Procedure")
    encs = _resources(clinic, "Encounter")
    truth = [p["meta"]["tag"][0]["code"] for p in procs]
    assert {"97110", "97530", "97112", "97116", "97140", "97535", "97150", "G0283", "97010", "97035"} <= set(
        truth
    )
    assert {"97161", "97162", "97163"} & set(truth)
    texts = {p["code"].get("text") for p in procs if p["code"].get("text")}
    assert len(texts) > 60
    coded = [p for p in procs if any(c.get("system") == CPT for c in p["code"].get("coding", []))]
    uncoded = [p for p in procs if not p["code"].get("coding")]
    snomed_only = [
        p
        for p in procs
        if p["code"].get("coding") and all(c["system"] == SNOMED for c in p["code"]["coding"])
    ]
    conflicting = [
        p
        for p, t in zip(procs, truth, strict=True)
        if any(c.get("code") not in (t, None) and c["system"] != SNOMED for c in p["code"].get("coding", []))
    ]
    no_text = [p for p in procs if "text" not in p["code"]]
    assert min(len(coded), len(uncoded), len(snomed_only), len(conflicting), len(no_text)) > 3
    assert any(
        p["code"].get("text") in ("ther ex as tolerated", "tx per POC", "see flowsheet") for p in procs
    )
    assert any("end" not in p.get("performedPeriod", {"end": 1}) for p in procs)  # missing end
    assert any("performedDateTime" in p for p in procs)
    assert any("note" in p for p in procs) and any("bodySite" in p for p in procs)
    performers = {p["performer"][0]["actor"]["reference"].rsplit("|", 1)[1] for p in procs}
    assert {"role-pta-1", "role-pta-2"} & performers and {"role-pt-1", "role-pt-2"} & performers
    assert {"finished", "cancelled", "in-progress"} <= {e["status"] for e in encs}
    assert any(x["url"] == EXT_GROUP_SIZE for e in encs for x in e.get("extension", []))
    sopt = {c["system"] for cov in _resources(clinic, "Coverage") for c in cov["type"]["coding"]}
    assert sopt == set(SOPT_SYSTEMS)
    sopt_codes = {c["code"] for cov in _resources(clinic, "Coverage") for c in cov["type"]["coding"]}
    assert {"1", "2"} <= sopt_codes and sopt_codes & {"5", "6"}
    assert all(p["meta"]["tag"][0]["system"] == TRUTH_TAG for p in procs)


def test_names_are_clearly_fake(clinic: list[dict[str, Any]]) -> None:
    for p in _resources(clinic, "Patient"):
        assert p["name"][0]["text"] == "synthetic test patient"
    assert all("synthetic" in o["name"] for o in _resources(clinic[:1], "Organization"))


def _patient_of(res: dict[str, Any]) -> str:
    return (res.get("subject") or res.get("beneficiary") or res.get("patient"))["reference"]


def test_prior_billed_charges_for_some_medicare_patients(clinic: list[dict[str, Any]]) -> None:
    medicare = {
        _patient_of(c) for c in _resources(clinic, "Coverage") if c["type"]["coding"][0]["code"] == "1"
    }
    charges = _resources(clinic, "ChargeItem")
    with_prior = {_patient_of(c) for c in charges}
    assert with_prior and with_prior <= medicare and with_prior != medicare  # some, not all, Medicare only
    first_visit: dict[str, str] = {}
    for e in _resources(clinic, "Encounter"):
        p = _patient_of(e)
        first_visit[p] = min(first_visit.get(p, "9999"), e["period"]["start"][:10])
    for c in charges:
        assert c["status"] == "billed"
        (coding,) = c["code"]["coding"]
        assert coding["system"] == CPT and coding["code"].startswith("97")
        assert isinstance(c["quantity"]["value"], int) and c["quantity"]["value"] >= 1
        day = c["occurrenceDateTime"]
        assert day < first_visit[_patient_of(c)] and day[:4] == first_visit[_patient_of(c)][:4]
        assert "context" not in c  # an earlier episode: no Encounter of this clinic's data


def test_prior_charges_do_not_change_other_patients() -> None:
    """Prior charges use their own random stream: patients without them are generated as before."""
    import ptbill_demo.synth as synth

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth, "PRIOR_EPISODE_SHARE", 0.0)
        without = synth.generate_clinic(patients=12, seed=5)
    with_prior = synth.generate_clinic(patients=12, seed=5)
    changed = [
        (a, b)
        for a, b in zip(without[1:], with_prior[1:], strict=True)
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)
    ]
    assert 0 < len(changed) < 12
    for _, b in changed:
        assert any(e["resource"]["resourceType"] == "ChargeItem" for e in b["entry"])


def test_prior_charges_bring_kx_flags_and_attestation_tasks(clinic: list[dict[str, Any]]) -> None:
    from integration.decide import decide
    from mappings.loader import default_tables

    tables = default_tables()
    master = {"resourceType": "Bundle", "type": "collection", "entry": clinic[0]["entry"]}
    flags: set[str] = set()
    tasks = 0
    for b in clinic[1:]:
        if not any(e["resource"]["resourceType"] == "ChargeItem" for e in b["entry"]):
            continue
        groups, _ = group_bundle({**b, "entry": master["entry"] + b["entry"]})
        for enc, related in groups:
            facts = extract_encounter(enc, related)
            assert facts.prior_charges and all(pc.status == "billed" for pc in facts.prior_charges)
            d = decide(facts, tables)
            flags |= {f.code for f in d.flags if f.code.startswith("KX-")}
            tasks += sum(a.code == "ATTEST-KX" for a in d.actions)
            assert not any(m.code == "KX" for ln in d.lines for m in ln.modifiers)  # never added
    assert "KX-THRESHOLD-NEAR" in flags or "KX-THRESHOLD-EXCEEDED" in flags
    assert tasks > 0
