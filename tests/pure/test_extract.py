"""integration.fhir.extract: FHIR JSON dicts -> Intervention / EncounterFacts, never crashing on odd input."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from integration.errors import InputError
from integration.fhir.extract import (
    EXT_GROUP_SIZE,
    EXT_TOTAL_TREATMENT_MINUTES,
    extract_encounter,
    extract_intervention,
    group_bundle,
    reference_key,
)
from integration.model import CPT, Coding

DATA = Path(__file__).resolve().parents[1] / "data" / "fhir"
FHIR_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "fhir-data"
needs_corpus = pytest.mark.skipif(not FHIR_DATA.is_dir(), reason="shared fhir-data corpus not present")


def proc(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"resourceType": "Procedure", "id": "p1", "status": "completed"}
    base.update(fields)
    return base


def period(start: Any, end: Any = None) -> dict[str, Any]:
    p = {"start": start}
    if end is not None:
        p["end"] = end
    return p


# --- Procedure -> Intervention ------------------------------------------------------------------

MINUTES_CASES = [
    # (performedPeriod, expected minutes, expected date)
    (period("2026-02-03T09:00:00-05:00", "2026-02-03T09:23:00-05:00"), 23, date(2026, 2, 3)),
    (period("2026-02-03T09:00:00-05:00", "2026-02-03T09:22:59-05:00"), 22, date(2026, 2, 3)),  # floor
    (period("2026-02-03T09:00:00Z", "2026-02-03T09:15:00.500Z"), 15, date(2026, 2, 3)),
    (period("2026-02-03T09:00:00-05:00", "2026-02-03T15:00:00+01:00"), 0, date(2026, 2, 3)),  # same instant
    (period("2026-02-03T09:00:00", "2026-02-03T09:08:00"), 8, date(2026, 2, 3)),  # naive both
    (period("2026-02-03T09:00:00", "2026-02-03T09:08:00Z"), None, date(2026, 2, 3)),  # mixed tz
    (period("2026-02-03T09:30:00Z", "2026-02-03T09:00:00Z"), None, date(2026, 2, 3)),  # end before start
    (period("2026-02-03T09:30:00Z"), None, date(2026, 2, 3)),  # no end
    (period("2026-02-03", "2026-02-03"), None, date(2026, 2, 3)),  # dates only: no time, no minutes
    (period("2026", "2026"), None, None),  # year only
    (period("2026-02", "2026-02"), None, None),  # year-month
    (period("yesterday", "today"), None, None),
    (period(None, "2026-02-03T09:30:00Z"), None, date(2026, 2, 3)),
    (period(12345, ["x"]), None, None),
]


@pytest.mark.parametrize(("performed", "minutes", "day"), MINUTES_CASES)
def test_performed_period_minutes_and_date(
    performed: dict[str, Any], minutes: int | None, day: date | None
) -> None:
    itv = extract_intervention(proc(performedPeriod=performed))
    assert itv.minutes == minutes
    assert itv.performed_date == day


@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("2016-09-27", date(2016, 9, 27)),
        ("2016-09-27T10:00:00Z", date(2016, 9, 27)),
        ("2002", None),
        ("2002-05", None),
        (None, None),
        (20020523, None),
    ],
)
def test_performed_datetime_gives_date_never_minutes(value: Any, day: date | None) -> None:
    itv = extract_intervention(proc(performedDateTime=value))
    assert itv.minutes is None
    assert itv.performed_date == day


def test_both_performed_datetime_and_period_prefers_period() -> None:
    p = proc(
        performedDateTime="2020-01-01",
        performedPeriod=period("2026-02-03T09:00:00Z", "2026-02-03T09:10:00Z"),
    )
    itv = extract_intervention(p)
    assert (itv.minutes, itv.performed_date) == (10, date(2026, 2, 3))
    facts = extract_encounter(*_single_visit(p))
    assert any("both performedDateTime and performedPeriod" in x for x in facts.input_problems)


def test_full_procedure_fields() -> None:
    p = proc(
        meta={"versionId": "7"},
        code={
            "coding": [
                {"system": CPT, "code": "97530", "display": "Therapeutic activities"},
                {"system": "http://snomed.info/sct", "code": "229065009"},
            ]
        },
        note=[{"text": "sit to stand x10"}, {"text": ""}, {"authorString": "x"}],
        bodySite=[{"text": "L shoulder"}, {"coding": [{"display": "Knee"}, {"display": "Hip"}]}],
        performer=[
            {
                "actor": {"reference": "http://srv/fhir/PractitionerRole/9/_history/2"},
                "function": {
                    "coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "225200000X"}]
                },
            },
            {"actor": {"display": "Paul Therapist, PT"}},
        ],
        reasonCode=[{"text": "low back pain"}, {"coding": [{"display": "Gait abnormality"}]}],
        category={"coding": [{"system": "http://snomed.info/sct", "code": "386053000"}]},
        extension=[{"url": EXT_GROUP_SIZE, "valueInteger": 3}],
    )
    itv = extract_intervention(p, encounter_group_size=5)
    assert itv.id == "p1" and itv.version_id == "7" and itv.status == "completed"
    assert itv.text == "Therapeutic activities"  # no code.text: first coding display
    assert itv.codings == (
        Coding(CPT, "97530", "Therapeutic activities"),
        Coding("http://snomed.info/sct", "229065009"),
    )
    assert itv.notes == ("sit to stand x10",)
    assert itv.body_sites == ("L shoulder", "Knee", "Hip")
    assert itv.performers[0].actor == "PractitionerRole/9"
    assert itv.performers[0].function[0].code == "225200000X"
    assert itv.performers[1].actor is None
    assert itv.reasons == ("low back pain", "Gait abnormality")
    assert itv.categories[0].code == "386053000"
    assert itv.group_size == 3  # the Procedure's own extension wins over the encounter's


def test_encounter_group_size_is_the_default() -> None:
    assert extract_intervention(proc(), encounter_group_size=4).group_size == 4
    assert extract_intervention(proc()).group_size is None


@pytest.mark.parametrize(
    "odd",
    [
        {"note": "just a string"},
        {"note": {"text": "a single object"}},
        {"bodySite": "knee"},
        {"performer": {"actor": {"reference": "Practitioner/1"}}},
        {"performer": [None, 3, {"actor": "Practitioner/1"}]},
        {"code": "97110"},
        {"code": {"coding": "97110"}},
        {"code": {"coding": {"system": CPT, "code": "97110"}}},
        {"category": [{"coding": [{"code": "x"}]}, "y"]},
        {"performedPeriod": "2026-01-01"},
        {"status": None},
        {"meta": "x"},
        {"extension": [{"url": EXT_GROUP_SIZE, "valueString": "lots"}]},
        {
            "contained": [{"resourceType": "Practitioner", "id": "x"}],
            "performer": [{"actor": {"reference": "#x"}}],
        },
        {"performer": [{"actor": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1"}}]},
        {"note": [{"text": "x" * 100_000}]},
        {"code": {"coding": [{"system": "urn:unknown", "code": "00000"}]}},
    ],
)
def test_odd_procedure_fields_never_raise(odd: dict[str, Any]) -> None:
    itv = extract_intervention(proc(**odd))
    assert itv.id == "p1"


def test_wrong_typed_fields_are_read_as_far_as_possible() -> None:
    itv = extract_intervention(
        proc(note={"text": "single"}, code={"coding": {"system": CPT, "code": "97110"}})
    )
    assert itv.notes == ("single",)
    assert itv.codings == (Coding(CPT, "97110"),)
    assert extract_intervention(proc(status=None)).status == "unknown"
    assert extract_intervention(proc(code={"text": "  "})).text == ""
    assert len(extract_intervention(proc(note=[{"text": "y" * 100_000}])).notes[0]) == 100_000


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "Procedure/1",
        [],
        {"resourceType": "Observation", "id": "1"},
        {"resourceType": "Procedure"},
        {"resourceType": "Procedure", "id": ""},
        {"resourceType": "Procedure", "id": 5},
    ],
)
def test_unreadable_procedure_raises_input_error(bad: Any) -> None:
    with pytest.raises(InputError):
        extract_intervention(bad)


# --- references ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        ("Encounter/1", "Encounter/1"),
        ("http://x/fhir/Encounter/1", "Encounter/1"),
        ("https://x/fhir/Encounter/1/_history/2", "Encounter/1"),
        ("Encounter/1/_history/2", "Encounter/1"),
        ("urn:uuid:abc", "urn:uuid:abc"),
        ("#c1", "#c1"),
        ("Practitioner?identifier=sys|1", None),
        ("", None),
        (None, None),
        (17, None),
        ("just-an-id", None),
        ("encounter/1", None),
    ],
)
def test_reference_key(ref: Any, key: str | None) -> None:
    assert reference_key(ref) == key


def _single_visit(
    *procedures: dict[str, Any], **enc_fields: Any
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    enc = {
        "resourceType": "Encounter",
        "id": "1",
        "status": "finished",
        "subject": {"reference": "Patient/9"},
        "period": {"start": "2026-02-03T09:00:00Z"},
    }
    enc.update(enc_fields)
    related: dict[str, dict[str, Any]] = {
        "Encounter/1": enc,
        "Patient/9": {"resourceType": "Patient", "id": "9"},
    }
    for p in procedures:
        p = {**p}
        p.setdefault("encounter", {"reference": "Encounter/1"})
        related[f"Procedure/{p['id']}"] = p
    return enc, related


@pytest.mark.parametrize(
    ("encounter_ref", "linked"),
    [
        ({"reference": "Encounter/1"}, True),
        ({"reference": "http://x/fhir/Encounter/1"}, True),
        ({"reference": "Encounter/1/_history/2"}, True),
        ({"reference": "Encounter/2"}, False),
        ({"reference": "urn:uuid:enc-one"}, True),  # alias registered below
        ({"reference": "urn:uuid:other"}, False),
        ({"display": "the visit"}, False),
        (None, False),
        ("Encounter/1", False),  # a string where a Reference is expected
    ],
)
def test_procedures_are_picked_by_encounter_reference(encounter_ref: Any, linked: bool) -> None:
    enc, related = _single_visit()
    related["urn:uuid:enc-one"] = enc
    related["Procedure/p1"] = proc(encounter=encounter_ref, performedPeriod=period("2026-02-03T09:00:00Z"))
    facts = extract_encounter(enc, related)
    assert [i.id for i in facts.interventions] == (["p1"] if linked else [])
    if encounter_ref is None:
        assert any("without encounter reference" in p for p in facts.input_problems)


def test_encounter_facts_from_fixture_bundle() -> None:
    bundle = json.loads((DATA / "pt_visit_transaction.json").read_text())
    before = copy.deepcopy(bundle)
    groups, problems = group_bundle(bundle)
    assert bundle == before  # input untouched
    assert len(groups) == 1
    assert sorted(problems) == sorted(
        ["entry without resource: 1", "entry is not an object: 1", "resource without resourceType: 1"]
    )
    enc, related = groups[0]
    facts = extract_encounter(enc, related)
    assert facts.encounter_id == "00000000-0000-4000-8000-000000000007"  # id from the urn:uuid fullUrl
    assert facts.patient_id == "00000000-0000-4000-8000-000000000001"
    assert facts.status == "finished"
    assert facts.date_of_service == date(2026, 2, 3)
    assert facts.period_start == "2026-02-03T09:00:00-05:00"
    assert [(i.id, i.minutes) for i in facts.interventions] == [("proc-a", 23), ("proc-b", None)]
    a = facts.interventions[0]
    assert a.version_id == "3" and a.body_sites == ("R knee", "Knee region structure")
    assert a.performers[0].actor == "PractitionerRole/role-pta-1"  # urn:uuid resolved to Type/id
    assert facts.documented_total_timed_minutes == 38
    assert facts.documented_total_treatment_minutes == 60  # Encounter.length 1 h
    roles = {p.reference: p for p in facts.practitioners}
    assert set(roles) == {"PractitionerRole/role-pta-1", "PractitionerRole/role-pt-1", "Practitioner/pt-1"}
    pta = roles["PractitionerRole/role-pta-1"]
    assert pta.practitioner == "Practitioner/pta-1"
    assert {c.code for c in pta.codes} == {"225200000X", "PTA"}  # role code + qualification
    pt = roles["Practitioner/pt-1"]  # from the conditional participant reference
    assert {c.code for c in pt.codes} == {"225100000X", "2251X0800X"}  # roles of that practitioner
    (cov,) = facts.coverages
    assert cov.id == "cov-1" and cov.order == 1 and cov.payor_names == ("Medicare Part B (test)",)
    assert cov.type_codings[0].code == "1" and cov.period_start == date(2026, 1, 1)
    (charge,) = facts.prior_charges
    assert (charge.code, charge.units, charge.date, charge.encounter, charge.written_by_ptbill) == (
        "97110",
        2,
        date(2026, 1, 20),
        "Encounter/older-visit",
        True,
    )
    ep = facts.episode
    assert ep is not None
    assert (ep.id, ep.start, ep.visit_number, ep.last_progress_report_visit, ep.plan_of_care_certified) == (
        "eoc-1",
        date(2026, 1, 5),
        11,
        10,
        date(2026, 1, 7),
    )
    assert any("performedPeriod has no end" in p for p in facts.input_problems)


def test_date_of_service_falls_back_to_earliest_procedure() -> None:
    p1 = proc(id="a", performedPeriod=period("2026-03-02T10:00:00Z"))
    p2 = proc(id="b", performedDateTime="2026-03-01")
    enc, related = _single_visit(p1, p2, period=None)
    facts = extract_encounter(enc, related)
    assert facts.date_of_service == date(2026, 3, 1)
    enc, related = _single_visit(period={"end": "2026-03-05"})
    facts = extract_encounter(enc, related)
    assert facts.date_of_service is None
    assert any("no date of service" in p for p in facts.input_problems)


@pytest.mark.parametrize(
    ("fields", "timed", "treatment", "group"),
    [
        ({"length": {"value": 45, "code": "min"}}, None, 45, None),
        ({"length": {"value": 1.5, "unit": "h"}}, None, 90, None),
        ({"length": {"value": 45, "unit": "furlongs"}}, None, None, None),
        ({"length": "45 min"}, None, None, None),
        (
            {
                "extension": [
                    {"url": EXT_TOTAL_TREATMENT_MINUTES, "valueQuantity": {"value": 50, "code": "min"}}
                ],
                "length": {"value": 60, "code": "min"},
            },
            None,
            50,
            None,
        ),
        ({"extension": [{"url": EXT_GROUP_SIZE, "valuePositiveInt": 4}]}, None, None, 4),
        ({"extension": "junk"}, None, None, None),
    ],
)
def test_documented_totals_and_group(fields: dict[str, Any], timed: Any, treatment: Any, group: Any) -> None:
    enc, related = _single_visit(proc(id="a"), **fields)
    facts = extract_encounter(enc, related)
    assert facts.documented_total_timed_minutes == timed
    assert facts.documented_total_treatment_minutes == treatment
    assert facts.group_size == group
    assert facts.interventions[0].group_size == group


def test_coverages_only_of_this_patient_and_by_order() -> None:
    enc, related = _single_visit()
    related["Coverage/b"] = {
        "resourceType": "Coverage",
        "id": "b",
        "status": "active",
        "order": 2,
        "beneficiary": {"reference": "Patient/9"},
        "payor": [{"reference": "Organization/o"}],
    }
    related["Coverage/a"] = {
        "resourceType": "Coverage",
        "id": "a",
        "order": 1,
        "beneficiary": {"reference": "http://x/fhir/Patient/9"},
        "payor": [{"identifier": {"system": "urn:payer", "value": "123"}}],
    }
    related["Coverage/c"] = {"resourceType": "Coverage", "id": "c", "beneficiary": {"reference": "Patient/8"}}
    related["Organization/o"] = {"resourceType": "Organization", "id": "o", "name": "Acme Health Plan"}
    facts = extract_encounter(enc, related)
    assert [c.id for c in facts.coverages] == ["a", "b"]
    assert facts.coverages[0].payor_identifiers == ("urn:payer|123",)
    assert facts.coverages[1].payor_names == ("Acme Health Plan",)
    assert any("Coverage/a: no status" in p for p in facts.input_problems)


def test_prior_charges_read_and_problems() -> None:
    enc, related = _single_visit()
    related["ChargeItem/1"] = {
        "resourceType": "ChargeItem",
        "id": "1",
        "status": "billable",
        "subject": {"reference": "Patient/9"},
        "code": {"coding": [{"system": "urn:local", "code": "X1"}, {"system": CPT, "code": "97140"}]},
        "occurrencePeriod": {"start": "2026-01-10T10:00:00Z"},
        "quantity": {"value": 2.5},
    }
    related["ChargeItem/2"] = {"resourceType": "ChargeItem", "id": "2", "subject": {"reference": "Patient/9"}}
    related["ChargeItem/3"] = {
        "resourceType": "ChargeItem",
        "id": "3",
        "subject": {"reference": "Patient/1"},
        "code": {"coding": [{"code": "97110"}]},
    }
    facts = extract_encounter(enc, related)
    (c,) = facts.prior_charges
    assert (c.code, c.units, c.date, c.written_by_ptbill, c.status) == (
        "97140",
        2,
        date(2026, 1, 10),
        False,
        "billable",
    )
    assert "ChargeItem/1: quantity is not a whole number" in facts.input_problems
    assert "ChargeItem/2: no code (ignored as prior charge)" in facts.input_problems


def test_unresolved_things_are_problems_not_errors() -> None:
    p = proc(
        id="a",
        performer=[
            {"actor": {"reference": "Practitioner?identifier=urn:npi|123"}},
            {"actor": {"reference": "PractitionerRole/missing"}},
        ],
    )
    enc, related = _single_visit(p, episodeOfCare=[{"reference": "EpisodeOfCare/e1"}])
    del related["Patient/9"]
    facts = extract_encounter(enc, related)
    assert facts.patient_id == "9"
    assert facts.episode is not None and facts.episode.id == "e1" and facts.episode.start is None
    joined = " | ".join(facts.input_problems)
    for expected in (
        "Patient resource not fetched",
        "EpisodeOfCare not fetched",
        "not resolved",
        "PractitionerRole resource of a performer not fetched",
    ):
        assert expected in joined
    assert "123" not in joined  # identifier values never appear in problems


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {},
        {"resourceType": "Procedure", "id": "1"},
        {"resourceType": "Encounter"},
        {"resourceType": "Encounter", "id": "  "},
        {"resourceType": "Encounter", "id": ["1"]},
    ],
)
def test_unreadable_encounter_raises_input_error(bad: Any) -> None:
    with pytest.raises(InputError):
        extract_encounter(bad, {})


def test_minimal_encounter_with_junk_related() -> None:
    enc = {
        "resourceType": "Encounter",
        "id": "e",
        "subject": "Patient/1",
        "participant": "x",
        "episodeOfCare": {},
    }
    related: Any = {
        "a": None,
        "b": "x",
        "c": {"resourceType": "Procedure"},
        "d": {"resourceType": "Procedure", "encounter": {"reference": "Encounter/e"}},
    }
    facts = extract_encounter(enc, related)
    assert facts.status == "unknown" and facts.interventions == () and facts.patient_id is None
    assert "Procedure/?: skipped (Procedure has no id)" in facts.input_problems
    assert extract_encounter(enc, "not a mapping").encounter_id == "e"  # type: ignore[arg-type]


# --- bundles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, [], {"resourceType": "Patient"}, "Bundle"])
def test_group_bundle_rejects_non_bundles(bad: Any) -> None:
    with pytest.raises(InputError):
        group_bundle(bad)


def test_group_bundle_counts_problems() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Encounter", "id": "1", "subject": {"reference": "Patient/1"}}},
            {"resource": {"resourceType": "Encounter", "id": "1"}},
            {"resource": {"resourceType": "Procedure", "id": "p", "encounter": {"reference": "Encounter/1"}}},
            {"resource": {"resourceType": "Procedure", "id": "q"}},
            {
                "resource": {
                    "resourceType": "Procedure",
                    "id": "r",
                    "encounter": {"reference": "Encounter/404"},
                }
            },
            {"resource": {"resourceType": "Procedure"}},
            {"resource": {"resourceType": "Coverage", "id": "c"}},
            {"resource": []},
            {},
            None,
        ],
    }
    groups, problems = group_bundle(bundle)
    assert [e["id"] for e, _ in groups] == ["1"]
    assert "Procedure/p" in groups[0][1] and "Procedure/r" not in groups[0][1]
    assert sorted(problems) == sorted(
        [
            "duplicate Encounter entry (first kept): 1",
            "Procedure without readable encounter reference: 1",
            "Procedure whose Encounter is not in the bundle: 1",
            "Procedure without id: 1",
            "Coverage without readable patient reference: 1",
            "entry resource is not an object: 1",
            "entry without resource: 1",
            "entry is not an object: 1",
        ]
    )
    assert group_bundle({"resourceType": "Bundle", "entry": "x"}) == ([], ["Bundle.entry is not a list"])
    assert group_bundle({"resourceType": "Bundle"}) == ([], [])


# --- the real corpus ----------------------------------------------------------------------------


def _corpus() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for f in sorted(FHIR_DATA.rglob("*.json")):
        try:
            out.append((str(f), json.loads(f.read_text())))
        except (ValueError, UnicodeDecodeError):
            continue
    for f in sorted(FHIR_DATA.rglob("*.ndjson")):
        for n, line in enumerate(f.read_text().splitlines()):
            if line.strip():
                out.append((f"{f}#L{n + 1}", json.loads(line)))
    return out


@needs_corpus
def test_every_corpus_encounter_and_procedure_extracts() -> None:
    corpus = _corpus()
    loose: dict[str, dict[str, Any]] = {}
    n_proc = n_enc = 0
    for _where, res in corpus:
        if not isinstance(res, dict):
            continue
        if res.get("resourceType") == "Bundle":
            groups, _problems = group_bundle(res)
            for enc, related in groups:
                extract_encounter(enc, related)
                n_enc += 1
            for e in res.get("entry") or []:
                r = e.get("resource") if isinstance(e, dict) else None
                if isinstance(r, dict) and r.get("resourceType") == "Procedure" and r.get("id"):
                    extract_intervention(r)
                    n_proc += 1
        elif res.get("resourceType") in ("Procedure", "Encounter") and res.get("id"):
            loose[f"{res['resourceType']}/{res['id']}"] = res
    by_encounter: dict[str, dict[str, dict[str, Any]]] = {}
    for key, res in loose.items():
        if res["resourceType"] == "Procedure":
            extract_intervention(res)
            n_proc += 1
            ek = reference_key((res.get("encounter") or {}).get("reference"))
            if ek:
                by_encounter.setdefault(ek, {})[key] = res
    for key, res in loose.items():
        if res["resourceType"] == "Encounter":
            extract_encounter(res, {key: res, **by_encounter.get(key, {})})
            n_enc += 1
    assert n_proc > 2000 and n_enc > 1000


@needs_corpus
def test_real_shapes() -> None:
    pt = json.loads((FHIR_DATA / "hl7-r4-examples-4.0.1" / "Procedure-physical-therapy.json").read_text())
    itv = extract_intervention(pt)
    assert itv.text == "Assessment of passive range of motion"
    assert itv.body_sites == ("Both knees",)
    assert itv.performed_date == date(2016, 9, 27) and itv.minutes is None
    assert itv.performers[0].actor is None  # display-only performer
    assert itv.reasons == ("assessment of mobility limitations due to osteoarthritis",)
    assert itv.categories[0].code == "386053000"  # R4 single CodeableConcept category

    first = (FHIR_DATA / "synthea-bulk-10-patients" / "Procedure.000.ndjson").read_text().splitlines()[0]
    syn = extract_intervention(json.loads(first))
    assert (syn.minutes, syn.performed_date) == (15, date(2022, 6, 22))

    narrative = json.loads(
        (FHIR_DATA / "hl7-r4-examples-4.0.1" / "Procedure-appendectomy-narrative.json").read_text()
    )
    assert extract_intervention(narrative).text == ""

    f001 = json.loads((FHIR_DATA / "hl7-r4-examples-4.0.1" / "Encounter-f001.json").read_text())
    assert extract_encounter(f001, {}).documented_total_treatment_minutes == 140

    smart = next((FHIR_DATA / "synthea-smart-r4-subset").glob("Laticia_Dibbert_*.json"))
    groups, problems = group_bundle(json.loads(smart.read_text()))
    assert problems == []
    facts = [extract_encounter(e, r) for e, r in groups]
    assert len(facts) == 26
    assert sum(len(f.interventions) for f in facts) == 18  # every urn:uuid Procedure found its Encounter
    assert all(f.patient_id == "e65aa207-9ec7-493e-987b-b2c686f1af10" for f in facts)
    knee = [i for f in facts for i in f.interventions if i.text == "Total knee replacement"]
    assert knee and knee[0].minutes == 15 and knee[0].performed_date == date(2006, 1, 31)

    npi_ref_encounter = json.loads(
        (FHIR_DATA / "synthea-bulk-10-patients" / "Encounter.000.ndjson").read_text().splitlines()[0]
    )
    roles = [
        json.loads(line)
        for line in (FHIR_DATA / "synthea-bulk-10-patients" / "PractitionerRole.000.ndjson")
        .read_text()
        .splitlines()
    ]
    practs = [
        json.loads(line)
        for line in (FHIR_DATA / "synthea-bulk-10-patients" / "Practitioner.000.ndjson")
        .read_text()
        .splitlines()
    ]
    related = {f"{r['resourceType']}/{r['id']}": r for r in roles + practs}
    enc_facts = extract_encounter(npi_ref_encounter, related)
    # Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|... resolved, and its role found by identifier
    assert len(enc_facts.practitioners) == 1
    assert enc_facts.practitioners[0].reference.startswith("Practitioner/")
    assert any(c.system == "http://nucc.org/provider-taxonomy" for c in enc_facts.practitioners[0].codes)
