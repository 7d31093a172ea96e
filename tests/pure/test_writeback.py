"""Write-back planning: identifiers, content hashes, update-in-place, retirement, human-reviewed resources."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from integration.fhir.writeback import (
    ENCOUNTER_TAG,
    EXT_HASH,
    EXT_MODIFIER,
    IDENTIFIER_SYSTEM,
    Existing,
    build_outputs,
    content_hash,
    existing_from_bundle,
    plan_writes,
    resource_id,
)
from integration.model import (
    ActionItem,
    BillingLine,
    Decision,
    EncounterFacts,
    Evidence,
    Finding,
    FlagItem,
    Intervention,
    Modifier,
)
from integration.sync import r4b_validator

FACTS = EncounterFacts(
    encounter_id="enc-1",
    status="finished",
    patient_id="pat-1",
    date_of_service=date(2026, 3, 2),
    interventions=(Intervention(id="p1", text="SLR 3x10", minutes=23, version_id="2"),),
    version_id="4",
)
LINE = BillingLine(
    code="97110",
    units=2,
    date_of_service=date(2026, 3, 2),
    modifiers=(Modifier("GP", "MOD-GP", "PT plan of care"),),
    minutes=23,
    procedure_ids=("p1",),
    performer_refs=("Practitioner/pt-1",),
    evidence=(Evidence("phrase", "straight leg raise", "R-97110-FORM"),),
    rule_ids=("UNITS-CMS",),
)
FINDING = Finding(
    "DOC-97110-BODY-PART", "moderate", "Name the body part.", "DOC-97110-1", "LCD L33631", ("p1",)
)
ACTION = ActionItem(
    "ATTEST-KX", "Attest medical necessity above the KX threshold.", "KX-1", "NGS", line_code="97110"
)
FLAG = FlagItem("KX-APPROACHING", "KX threshold approaching", "KX-1", "NGS", key="2026")
DECISION = Decision(
    "enc-1",
    lines=(LINE,),
    findings=(FINDING,),
    actions=(ACTION,),
    flags=(FLAG,),
    table_versions=(("billable_codes", "2026.11.1+abc"),),
    engine_version="0.1.0",
)
NOW = datetime(2026, 3, 3, tzinfo=UTC)


def outputs():
    return build_outputs(FACTS, DECISION)


def test_outputs_have_deterministic_identifiers_and_ids():
    a, b = outputs(), outputs()
    assert [(o.resource_type, o.identifier) for o in a] == [
        ("ChargeItem", "ci|enc-1|97110|2026-03-02"),
        ("DetectedIssue", "di|enc-1|DOC-97110-BODY-PART|proc:p1"),
        ("Task", "task|enc-1|ATTEST-KX|line:97110"),
        ("Flag", "flag|Patient/pat-1|KX-APPROACHING|2026"),
    ]
    assert [o.resource for o in a] == [o.resource for o in b]
    for o in a:
        assert o.resource["id"] == resource_id(o.resource_type, o.identifier)
        assert o.resource["identifier"] == [{"system": IDENTIFIER_SYSTEM, "value": o.identifier}]
        assert content_hash(o.resource) == o.content_hash
        assert {"url": EXT_HASH, "valueString": o.content_hash} in o.resource["extension"]


def test_outputs_are_valid_r4():
    validate = r4b_validator()
    for o in outputs():
        validate(o.resource)
    plan = plan_writes(FACTS, DECISION, outputs(), {}, recorded=NOW)
    assert plan.bundle is not None
    for e in plan.bundle["entry"]:
        validate(e["resource"])


def test_charge_item_content():
    ci = outputs()[0].resource
    assert ci["status"] == "planned"
    assert ci["quantity"] == {"value": 2}
    assert ci["code"]["coding"][0] == {"system": "http://www.ama-assn.org/go/cpt", "code": "97110"}
    assert ci["context"] == {"reference": "Encounter/enc-1"}
    assert ci["service"] == [{"reference": "Procedure/p1"}]
    mods = [x for x in ci["extension"] if x["url"] == EXT_MODIFIER]
    assert mods[0]["valueCodeableConcept"]["coding"][0]["code"] == "GP"
    assert (ENCOUNTER_TAG, "enc-1") in {(t["system"], t["code"]) for t in ci["meta"]["tag"]}


def test_task_focuses_the_line_and_detected_issue_implicates_the_procedure():
    by_type = {o.resource_type: o for o in outputs()}
    ci_url = by_type["ChargeItem"].full_url
    assert by_type["Task"].resource["focus"] == {"reference": ci_url}
    assert by_type["Task"].resource["status"] == "requested"
    assert by_type["DetectedIssue"].resource["implicated"] == [{"reference": "Procedure/p1"}]
    assert not by_type["Flag"].encounter_owned  # patient-level: never retired by an encounter re-run


def test_first_write_puts_everything_then_provenance():
    plan = plan_writes(FACTS, DECISION, outputs(), {}, recorded=NOW)
    assert plan.bundle is not None
    entries = plan.bundle["entry"]
    assert [e["request"]["method"] for e in entries] == ["PUT"] * 5
    assert entries[0]["request"]["url"].startswith("ChargeItem/ptb-")
    prov = entries[-1]["resource"]
    assert prov["resourceType"] == "Provenance"
    assert {"role": "source", "what": {"reference": "Encounter/enc-1/_history/4"}} in prov["entity"]
    assert {"role": "source", "what": {"reference": "Procedure/p1/_history/2"}} in prov["entity"]
    assert any(p.startswith("https://ptbill.dev/fhir/rules/billable_codes/") for p in prov["policy"])
    assert prov["agent"][0]["who"]["type"] == "Device"
    assert len(prov["target"]) == 4


def as_existing(outs, **status_override):
    found = []
    for o in outs:
        r = dict(o.resource)
        if o.resource_type in status_override:
            r["status"] = status_override[o.resource_type]
        found.append(r)
    return existing_from_bundle(found)


def test_unchanged_outputs_write_nothing():
    plan = plan_writes(FACTS, DECISION, outputs(), as_existing(outputs()), recorded=NOW)
    assert plan.bundle is None
    assert plan.unchanged == 4


def test_changed_line_is_updated_in_place_and_stale_ones_retired():
    old = as_existing(outputs())
    new_decision = Decision(
        "enc-1",
        lines=(BillingLine(code="97530", units=2, date_of_service=date(2026, 3, 2), procedure_ids=("p1",)),),
        flags=(FLAG,),
        table_versions=DECISION.table_versions,
    )
    new_outputs = build_outputs(FACTS, new_decision)
    plan = plan_writes(FACTS, new_decision, new_outputs, old, recorded=NOW)
    assert plan.bundle is not None
    assert [o.identifier for o in plan.written] == ["ci|enc-1|97530|2026-03-02"]
    assert sorted(plan.retired) == sorted(
        [
            "ci|enc-1|97110|2026-03-02",
            "di|enc-1|DOC-97110-BODY-PART|proc:p1",
            "task|enc-1|ATTEST-KX|line:97110",
        ]
    )
    statuses = {
        e["resource"]["resourceType"]: e["resource"]["status"]
        for e in plan.bundle["entry"]
        if e["resource"]["resourceType"] != "Provenance"
        and e["resource"]["code"]["coding"][0]["code"] != "97530"
    }
    assert statuses == {
        "ChargeItem": "entered-in-error",
        "DetectedIssue": "entered-in-error",
        "Task": "cancelled",
    }
    assert plan.unchanged == 1  # the patient Flag


@pytest.mark.parametrize(
    ("rtype", "status"), [("ChargeItem", "billable"), ("ChargeItem", "billed"), ("Task", "completed")]
)
def test_resources_a_person_acted_on_are_left_alone(rtype, status):
    old = as_existing(outputs(), **{rtype: status})
    empty = Decision("enc-1", table_versions=DECISION.table_versions)
    plan = plan_writes(FACTS, empty, [], old, recorded=NOW)
    ident = next(i for (t, i) in old if t == rtype)
    assert ident in plan.kept_reviewed
    assert ident not in plan.retired


def test_already_retired_is_not_retired_again():
    old = as_existing(
        outputs(), ChargeItem="entered-in-error", DetectedIssue="entered-in-error", Task="cancelled"
    )
    plan = plan_writes(FACTS, Decision("enc-1"), [], old, recorded=NOW)
    assert plan.bundle is None


def test_conditional_mode_uses_identifier_urls():
    plan = plan_writes(FACTS, DECISION, outputs(), {}, recorded=NOW, mode="conditional")
    assert plan.bundle is not None
    urls = [e["request"]["url"] for e in plan.bundle["entry"][:-1]]
    assert all("?identifier=" in u for u in urls)
    assert all("id" not in e["resource"] for e in plan.bundle["entry"][:-1])


def test_existing_found_under_another_id_is_updated_there():
    o = outputs()[0]
    moved = {**o.resource, "id": "legacy-42"}
    plan = plan_writes(
        FACTS,
        DECISION,
        outputs(),
        {("ChargeItem", o.identifier): Existing("ChargeItem", o.identifier, "stale", "planned", moved)},
        recorded=NOW,
    )
    assert plan.bundle is not None
    assert plan.bundle["entry"][0]["request"]["url"] == "ChargeItem/legacy-42"
