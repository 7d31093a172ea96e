"""Write-back planning: identifiers, content hashes, whose change it is, update-in-place with If-Match,
retirement, explanations where a person's change and the suggestion differ, the old identifier scheme."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from integration.fhir.identifiers import escape_search_value, identifier_query, identifier_value
from integration.fhir.writeback import (
    CHANGE_TAG,
    ENCOUNTER_TAG,
    EXT_HASH,
    EXT_MODIFIER,
    IDENTIFIER_SYSTEM,
    LOCAL_REF,
    PTBILL_TAG,
    RETIRED_BY_PTBILL,
    REVIEW_DIFFERS,
    build_outputs,
    build_transaction,
    content_hash,
    existing_from_bundle,
    full_url,
    map_refs,
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


KEYS = [
    ("ChargeItem", "ci|enc-1|97110|2026-03-02"),
    ("DetectedIssue", "di|enc-1|DOC-97110-BODY-PART|proc:p1"),
    ("Task", "task|enc-1|ATTEST-KX|line:97110"),
    ("Flag", "flag|Patient/pat-1|KX-APPROACHING|2026"),
]


def test_identifiers_are_hashes_of_the_natural_key_and_ids_are_unchanged():
    a, b = outputs(), outputs()
    assert [(o.resource_type, o.key) for o in a] == KEYS
    assert [o.resource for o in a] == [o.resource for o in b]
    for o in a:
        prefix = o.key.split("|")[0]
        assert o.identifier == identifier_value(o.key)
        assert o.identifier.startswith(prefix + "-") and len(o.identifier) == len(prefix) + 33
        assert escape_search_value(o.identifier) == o.identifier  # never needs escaping
        # the id mode id is the one earlier versions wrote (from the natural key): no duplicates on upgrade
        assert o.resource["id"] == resource_id(o.resource_type, o.key)
        assert o.resource["identifier"] == [{"system": IDENTIFIER_SYSTEM, "value": o.identifier}]
        assert content_hash(o.resource) == o.content_hash
        assert {"url": EXT_HASH, "valueString": o.content_hash} in o.resource["extension"]


def test_search_values_are_escaped_per_r4():
    assert escape_search_value("a|b,c$d\\e") == "a\\|b\\,c\\$d\\\\e"
    assert identifier_query("x|y") == "identifier=https%3A%2F%2Fptbill.dev%2Ffhir%2Fidentifier%7Cx%5C%7Cy"


def test_outputs_and_bundles_are_valid_r4():
    validate = r4b_validator()
    for mode in ("id", "conditional"):
        plan = plan_writes(FACTS, DECISION, outputs(), {}, mode=mode)
        bundle = build_transaction(FACTS, DECISION, plan, mode=mode, recorded=NOW)
        assert bundle is not None
        for e in bundle["entry"]:
            validate(e["resource"])
            assert LOCAL_REF not in str(e["resource"])  # placeholders never reach the server


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


def by_type(bundle):
    return {e["resource"]["resourceType"]: e for e in bundle["entry"]}


def test_task_refers_to_the_charge_item_by_urn_in_the_same_transaction_else_by_real_id():
    outs = {o.resource_type: o for o in outputs()}
    ci = outs["ChargeItem"]
    assert outs["Task"].resource["focus"] == {"reference": LOCAL_REF + ci.identifier}
    assert outs["DetectedIssue"].resource["implicated"] == [{"reference": "Procedure/p1"}]
    assert not outs["Flag"].encounter_owned  # patient-level: never retired by an encounter re-run
    cond = by_type(
        build_transaction(
            FACTS,
            DECISION,
            plan_writes(FACTS, DECISION, outputs(), {}, mode="conditional"),
            mode="conditional",
        )
    )
    assert cond["Task"]["resource"]["focus"] == {"reference": cond["ChargeItem"]["fullUrl"]}
    ident = by_type(
        build_transaction(FACTS, DECISION, plan_writes(FACTS, DECISION, outputs(), {}), mode="id")
    )
    assert ident["Task"]["resource"]["focus"] == {"reference": f"ChargeItem/{ci.resource_id}"}
    # the ChargeItem exists (server id) and only the Task changes: the real id, never a dangling urn:uuid
    server = on_server(outputs(), "conditional")
    task = next(o for o in outputs() if o.resource_type == "Task")
    server = [r for r in server if r["resourceType"] != "Task"]
    plan = plan_writes(FACTS, DECISION, outputs(), existing_from_bundle(server), mode="conditional")
    assert [w.resource_type for w in plan.writes] == ["Task"]
    b = by_type(build_transaction(FACTS, DECISION, plan, mode="conditional"))
    ci_id = next(r["id"] for r in server if r["resourceType"] == "ChargeItem")
    assert b["Task"]["resource"]["focus"] == {"reference": f"ChargeItem/{ci_id}"}
    assert task.identifier == plan.writes[0].identifier


def test_first_write_id_mode_puts_by_id_and_posts_one_provenance():
    bundle = build_transaction(FACTS, DECISION, plan_writes(FACTS, DECISION, outputs(), {}), recorded=NOW)
    entries = bundle["entry"]
    assert [e["request"]["method"] for e in entries] == ["PUT"] * 4 + ["POST"]
    assert entries[0]["request"]["url"].startswith("ChargeItem/ptb-")
    prov = entries[-1]["resource"]
    assert prov["resourceType"] == "Provenance" and "id" not in prov
    change = next(t["code"] for t in prov["meta"]["tag"] if t["system"] == CHANGE_TAG)
    assert (
        entries[-1]["request"]["ifNoneExist"].startswith("_tag=")
        and change in entries[-1]["request"]["ifNoneExist"]
    )
    assert {"role": "source", "what": {"reference": "Encounter/enc-1/_history/4"}} in prov["entity"]
    assert {"role": "source", "what": {"reference": "Procedure/p1/_history/2"}} in prov["entity"]
    assert any(p.startswith("https://ptbill.dev/fhir/rules/billable_codes/") for p in prov["policy"])
    assert prov["agent"][0]["who"]["type"] == "Device"
    assert len(prov["target"]) == 4


def test_first_write_conditional_mode_creates_with_if_none_exist_and_server_ids():
    plan = plan_writes(FACTS, DECISION, outputs(), {}, mode="conditional")
    entries = build_transaction(FACTS, DECISION, plan, mode="conditional")["entry"]
    for e, o in zip(entries[:-1], outputs(), strict=True):
        assert e["request"] == {
            "method": "POST",
            "url": o.resource_type,
            "ifNoneExist": identifier_query(o.identifier),
        }
        assert "id" not in e["resource"]
        assert e["fullUrl"] == full_url(o.resource_type, o.identifier)


def on_server(outs, mode="id", **changes):
    """The outputs as a server holds them after ptbill wrote them: server ids, references resolved,
    meta.versionId; ``changes``: {resource type: {field: value}} a person made afterwards."""
    ids = {
        o.identifier: (o.resource_id if mode == "id" else f"00000000-0000-4000-8000-{i:012d}")
        for i, o in enumerate(outs)
    }
    refs = {
        LOCAL_REF + o.identifier: f"ChargeItem/{ids[o.identifier]}"
        for o in outs
        if o.resource_type == "ChargeItem"
    }
    found = []
    for o in outs:
        r = map_refs({**o.resource, "id": ids[o.identifier]}, refs)
        r["meta"] = {**r["meta"], "versionId": "1"}
        r.update(changes.get(o.resource_type, {}))
        found.append(r)
    return found


def test_unchanged_outputs_write_nothing_on_either_mode():
    for mode in ("id", "conditional"):
        plan = plan_writes(
            FACTS, DECISION, outputs(), existing_from_bundle(on_server(outputs(), mode)), mode=mode
        )
        assert plan.empty and plan.unchanged == 4 and not plan.kept_reviewed


NEW_DECISION = Decision(
    "enc-1",
    lines=(BillingLine(code="97530", units=2, date_of_service=date(2026, 3, 2), procedure_ids=("p1",)),),
    flags=(FLAG,),
    table_versions=DECISION.table_versions,
)


def test_changed_line_is_written_and_stale_ones_retired_with_if_match_and_ptbills_tag():
    old = existing_from_bundle(on_server(outputs(), "conditional"))
    new_outputs = build_outputs(FACTS, NEW_DECISION)
    plan = plan_writes(FACTS, NEW_DECISION, new_outputs, old, mode="conditional")
    assert [w.identifier for w in plan.written] == [identifier_value("ci|enc-1|97530|2026-03-02")]
    assert sorted(plan.retired) == sorted(identifier_value(k) for _, k in KEYS[:3])
    bundle = build_transaction(FACTS, NEW_DECISION, plan, mode="conditional")
    retired = [e for e in bundle["entry"] if e["request"]["method"] == "PUT"]
    assert {e["resource"]["resourceType"]: e["resource"]["status"] for e in retired} == {
        "ChargeItem": "entered-in-error",
        "DetectedIssue": "entered-in-error",
        "Task": "cancelled",
    }
    for e in retired:
        assert e["request"]["ifMatch"] == 'W/"1"'
        assert e["request"]["url"] == f"{e['resource']['resourceType']}/{e['resource']['id']}"
        assert (PTBILL_TAG, RETIRED_BY_PTBILL) in {
            (t["system"], t["code"]) for t in e["resource"]["meta"]["tag"]
        }
    prov = bundle["entry"][-1]["resource"]
    assert {t["reference"] for t in prov["target"]} >= {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in retired
    }
    assert plan.unchanged == 1  # the patient Flag


def test_ptbills_own_retirement_is_revived_but_a_persons_is_final():
    old = existing_from_bundle(on_server(outputs(), "conditional"))
    retire = plan_writes(FACTS, NEW_DECISION, build_outputs(FACTS, NEW_DECISION), old, mode="conditional")
    bundle = build_transaction(FACTS, NEW_DECISION, retire, mode="conditional")
    # the server after ptbill's retirement
    after = [
        {**e["resource"], "meta": {**e["resource"]["meta"], "versionId": "2"}}
        for e in bundle["entry"]
        if e["request"]["method"] == "PUT"
    ]
    retired = existing_from_bundle(after)
    assert all(e.owned and e.retired_by_ptbill for e in retired.values())
    revive = plan_writes(FACTS, DECISION, outputs(), retired, mode="conditional")
    assert {w.kind for w in revive.writes if w.resource_type != "Flag"} == {"update"}
    assert {w.body["status"] for w in revive.writes if w.resource_type == "ChargeItem"} == {"planned"}
    # a person's entered-in-error (their change, not ptbill's): never revived
    person = existing_from_bundle(
        on_server(outputs(), "conditional", ChargeItem={"status": "entered-in-error"})
    )
    plan = plan_writes(FACTS, DECISION, outputs(), person, mode="conditional")
    assert identifier_value(KEYS[0][1]) in plan.kept_reviewed
    assert not [w for w in plan.writes if w.resource_type == "ChargeItem"]


@pytest.mark.parametrize(
    "change",
    [
        {"status": "billable"},
        {"status": "billed"},
        {"quantity": {"value": 3}},
        {"note": [{"text": "checked with the therapist"}]},
        # a modifier removed (the rest, ptbill's hash included, kept)
        {"extension": [x for x in outputs()[0].resource["extension"] if x["url"] != EXT_MODIFIER]},
    ],
)
def test_any_change_a_person_made_is_left_alone(change):
    server = existing_from_bundle(on_server(outputs(), "conditional", ChargeItem=change))
    ci = identifier_value(KEYS[0][1])
    assert not server[("ChargeItem", ci)].owned
    # the suggestion is unchanged: the person's change stands, nothing to explain
    plan = plan_writes(FACTS, DECISION, outputs(), server, mode="conditional")
    assert plan.empty and ci in plan.kept_reviewed and not plan.differs
    # the suggestion changed (or is withdrawn): still left alone, and a DetectedIssue points at both
    plan = plan_writes(FACTS, NEW_DECISION, build_outputs(FACTS, NEW_DECISION), server, mode="conditional")
    assert ci not in plan.retired and ci in plan.kept_reviewed and ci in plan.differs
    review = [w for w in plan.writes if REVIEW_DIFFERS in str(w.body.get("code"))]
    assert len(review) == 1
    bundle = build_transaction(FACTS, NEW_DECISION, plan, mode="conditional")
    entry = next(e for e in bundle["entry"] if REVIEW_DIFFERS in str(e["resource"].get("code")))
    refs = {x["reference"] for x in entry["resource"]["implicated"]}
    assert refs == {"ChargeItem/00000000-0000-4000-8000-000000000000", "Procedure/p1"}
    r4b_validator()(entry["resource"])


def test_a_persons_task_completion_with_a_withdrawn_suggestion_is_explained():
    server = existing_from_bundle(on_server(outputs(), "id", Task={"status": "completed"}))
    plan = plan_writes(FACTS, Decision("enc-1", table_versions=DECISION.table_versions), [], server)
    task = identifier_value(KEYS[2][1])
    assert task in plan.kept_reviewed and task not in plan.retired and task in plan.differs


def test_a_persons_rejection_of_a_withdrawn_suggestion_needs_no_explanation():
    server = existing_from_bundle(on_server(outputs(), "id", ChargeItem={"status": "entered-in-error"}))
    plan = plan_writes(FACTS, Decision("enc-1", table_versions=DECISION.table_versions), [], server)
    assert identifier_value(KEYS[0][1]) in plan.kept_reviewed and not plan.differs


def legacy_server():
    """Resources as versions before the hashed identifiers wrote them (id mode): ``|``-joined values,
    references to the ChargeItem hashed as its urn:uuid and resolved by the server."""
    found = []
    outs = outputs()
    urns = {LOCAL_REF + o.identifier: full_url(o.resource_type, o.key) for o in outs}
    ids = {
        full_url(o.resource_type, o.key): f"ChargeItem/{o.resource_id}"
        for o in outs
        if o.resource_type == "ChargeItem"
    }
    for o in outs:
        r = map_refs({k: v for k, v in o.resource.items() if k != "extension"}, urns)
        r["identifier"] = [{"system": IDENTIFIER_SYSTEM, "value": o.key}]
        r["extension"] = [x for x in o.resource["extension"] if x["url"] != EXT_HASH]
        r["extension"].append({"url": EXT_HASH, "valueString": content_hash(r)})
        r = map_refs(r, ids)
        r["meta"] = {**r["meta"], "versionId": "3"}
        found.append(r)
    return found


def test_resources_of_the_old_identifier_scheme_are_recognised_and_updated_in_place():
    existing = existing_from_bundle(legacy_server())
    assert set(existing) == {(o.resource_type, o.identifier) for o in outputs()}
    assert all(e.owned for e in existing.values())
    plan = plan_writes(FACTS, DECISION, outputs(), existing)
    assert {w.kind for w in plan.writes} == {"update"} and len(plan.writes) == 4
    assert {w.id for w in plan.writes} == {o.resource_id for o in outputs()}
    assert all(
        w.body["identifier"][0]["value"] == identifier_value(k)
        for w, (_, k) in zip(plan.writes, KEYS, strict=True)
    )
    # a person's change on an old resource is recognised as theirs
    touched = legacy_server()
    touched[0]["quantity"] = {"value": 1}
    assert not existing_from_bundle(touched)[("ChargeItem", identifier_value(KEYS[0][1]))].owned
