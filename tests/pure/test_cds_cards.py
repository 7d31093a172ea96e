"""CDS Hooks cards: encounter-discharge from prefetch decides exactly like the sync (one decide()), card
structure per CDS Hooks 2.0, indicators by severity, rules and table versions named; patient-view from
ptbill's Flags and Tasks with the KX basis; prefetch gaps answered with 412 or a partial card."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from integration.cds.cards import (
    INDICATORS,
    SUMMARY_MAX,
    RuleCatalog,
    card_lines,
    card_rows,
    engine_rule_sources,
    patient_view_cards,
    summarize,
)
from integration.cds.prefetch import own_suggestion
from integration.decide import decide
from integration.fhir.extract import extract_encounter, group_bundle
from integration.fhir.writeback import build_outputs
from integration.hooks import HookRequestError, HookService, parse_hook_request
from integration.sync import Group, decide_group
from integration.sync import own_suggestion as sync_own_suggestion
from mappings.loader import default_tables
from tests.pure.cds_support import BUNDLES, as_prefetch, hook_body, load

TABLES = default_tables()
CATALOG = RuleCatalog.from_tables(TABLES)
SERVICE = HookService(TABLES, allowed_servers=("https://emr.example/fhir",))


def discharge(prefetch: dict[str, Any], enc: str, patient: str, **extra: Any) -> list[dict[str, Any]]:
    req = parse_hook_request(
        hook_body("encounter-discharge", {"patientId": patient, "encounterId": enc}, prefetch, **extra),
        "encounter-discharge",
    )
    cards, _ = SERVICE.discharge(req)
    return [c.to_json() for c in cards]


def sync_decision(name: str):
    groups, _ = group_bundle(load(name))
    enc, rel = groups[0]
    return decide_group(Group(enc, dict(rel)), TABLES)


def check_card(card: dict[str, Any]) -> None:
    """The CDS Hooks 2.0 required card fields, and ptbill's own: rule and tables named."""
    assert isinstance(card["summary"], str) and card["summary"].strip()
    assert len(card["summary"]) <= SUMMARY_MAX < 140 and "\n" not in card["summary"]
    assert card["indicator"] in INDICATORS
    assert isinstance(card["source"]["label"], str) and card["source"]["label"]
    assert set(card["source"]["topic"]) == {"system", "code", "display"}
    assert uuid.UUID(card["uuid"])
    assert "suggestions" not in card and "selectionBehavior" not in card
    for k, v in card.items():  # the spec: optional elements are omitted, never null or empty
        assert v not in (None, "", [], {}), k
    ext = card["extension"]["ptbill"]
    assert ext["tablesFingerprint"] == CATALOG.fingerprint
    assert "table set " + CATALOG.fingerprint in card["detail"]
    if ext["kind"] in ("finding", "action", "flag", "line"):
        assert ext["rules"] and all(f"`{r}`" in card["detail"] for r in ext["rules"])


@pytest.mark.parametrize("name", BUNDLES)
def test_discharge_cards_from_prefetch_are_the_sync_decision(name):
    prefetch, enc, patient = as_prefetch(load(name))
    cards = discharge(prefetch, enc, patient)
    _facts, decision = sync_decision(name)
    for c in cards:
        check_card(c)
    lines = sorted(
        (
            c["extension"]["ptbill"]["code"],
            c["extension"]["ptbill"]["units"],
            tuple(c["extension"]["ptbill"]["modifiers"]),
        )
        for c in cards
        if c["extension"]["ptbill"]["kind"] == "line"
    )
    assert lines == sorted((ln.code, ln.units, tuple(m.code for m in ln.modifiers)) for ln in decision.lines)
    kinds = {
        k: sorted(c["source"]["topic"]["code"] for c in cards if c["extension"]["ptbill"]["kind"] == k)
        for k in ("finding", "action", "flag")
    }
    assert kinds["finding"] == sorted(f.code for f in decision.findings)
    assert kinds["action"] == sorted(a.code for a in decision.actions)
    assert kinds["flag"] == sorted(f.code for f in decision.flags)
    assert len({c["uuid"] for c in cards}) == len(cards)
    assert [c["uuid"] for c in discharge(prefetch, enc, patient)] == [c["uuid"] for c in cards]  # stable


def test_indicator_follows_severity_and_cards_are_ordered_by_urgency():
    prefetch, enc, patient = as_prefetch(load("e_vague_unsupported"))
    cards = discharge(prefetch, enc, patient)
    by_code = {c["source"]["topic"]["code"]: c for c in cards}
    assert by_code["DOC-UNSUPPORTED-VAGUE"]["indicator"] == "critical"  # severity high
    assert by_code["DOC-UNITS-BELOW-TOTAL"]["indicator"] == "info"  # severity low
    ranks = [INDICATORS.index(c["indicator"]) for c in cards]
    assert ranks == sorted(ranks, reverse=True)


def test_line_cards_carry_units_modifiers_minutes_and_the_unit_rule():
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    lines = [c for c in discharge(prefetch, enc, patient) if c["extension"]["ptbill"]["kind"] == "line"]
    card = next(c for c in lines if c["extension"]["ptbill"]["code"] == "97112")
    assert card["summary"].startswith("Suggested 97112-GP x 2 units")
    assert "24 timed min" in card["summary"] and "CMS rule" in card["summary"]
    assert card["indicator"] == "info"
    assert (
        "Modifier GP" in card["detail"] and "`MOD-GP`" in card["detail"] and "`UNITS-CMS`" in card["detail"]
    )
    assert card["source"]["topic"] == {
        "system": "http://www.ama-assn.org/go/cpt",
        "code": "97112",
        "display": "97112-GP",
    }


def test_every_rule_on_a_card_is_an_engine_rule_with_its_source_or_a_table_row():
    known = engine_rule_sources()  # collected from the billing steps' Rule constants
    assert {"UNITS-CMS", "MOD-GP", "NCCI-PTP", "KX", "DOC-PROGRESS"} <= set(known)
    for name in BUNDLES:
        _, decision = sync_decision(name)
        ids = {r for ln in decision.lines for r in ln.rule_ids}
        ids |= {x.rule_id for x in (*decision.findings, *decision.actions, *decision.flags)}
        for rid in ids:
            assert rid in known or CATALOG.tables_for([rid]), (name, rid)
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    card = next(c for c in discharge(prefetch, enc, patient) if c["source"]["topic"]["code"] == "97112")
    assert f"- Rule `UNITS-CMS`: {known['UNITS-CMS'][:20]}" in card["detail"]


def test_card_rows_and_lines_for_a_table_or_a_log():
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    cards = discharge(prefetch, enc, patient)
    rows = card_rows(cards)
    assert len(rows) == len(cards)
    assert rows[0] == (cards[0]["indicator"], cards[0]["source"]["topic"]["code"], cards[0]["summary"])
    lines = card_lines(cards)
    assert lines[0] == f"[{rows[0][0]}] {rows[0][2]} ({rows[0][1]})"
    assert any(line.startswith("[info] Suggested 97112-GP x 2 units") for line in lines)


def test_kx_cards_name_the_tables_and_versions_of_the_rule():
    prefetch, enc, patient = as_prefetch(load("d_medicare_kx_near"))
    cards = discharge(prefetch, enc, patient)
    flag = next(c for c in cards if c["source"]["topic"]["code"] == "KX-THRESHOLD-NEAR")
    versions = dict(TABLES.versions())
    assert flag["extension"]["ptbill"]["tables"] == {
        "kx_thresholds": versions["kx_thresholds"],
        "fee_schedule": versions["fee_schedule"],
    }
    assert f"kx_thresholds {versions['kx_thresholds']}" in flag["detail"]
    attest = next(c for c in cards if c["source"]["topic"]["code"] == "ATTEST-KX")
    assert attest["indicator"] == "warning" and attest["summary"].startswith("Attestation needed:")
    assert "Basis:" in attest["detail"]


def test_classification_findings_name_the_table_row_they_come_from():
    prefetch, enc, patient = as_prefetch(load("c2_overlapping_attest_59"))
    card = next(
        c for c in discharge(prefetch, enc, patient) if c["source"]["topic"]["code"] == "DOC-97530-ONE-ON-ONE"
    )
    assert list(card["extension"]["ptbill"]["tables"]) == ["classify_doc_requirements"]
    assert card["indicator"] == "warning"
    assert "Procedure/" in card["detail"]


def test_withdrawn_encounter_gets_no_cards():
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    prefetch["encounter"] = {**prefetch["encounter"], "status": "entered-in-error"}
    assert discharge(prefetch, enc, patient) == []


# --- prefetch gaps ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["encounter", "procedures", "coverage"])
def test_required_prefetch_missing_without_authorization_is_412(key):
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    del prefetch[key]
    with pytest.raises(HookRequestError) as e:
        discharge(prefetch, enc, patient)
    assert e.value.status == 412 and e.value.reason == "prefetch-missing" and key in e.value.message


def test_prefetch_operation_outcome_counts_as_missing():
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    prefetch["procedures"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    with pytest.raises(HookRequestError) as e:
        discharge(prefetch, enc, patient)
    assert e.value.status == 412


def test_token_for_a_server_not_allowed_is_refused_before_any_request():
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    del prefetch["procedures"]
    with pytest.raises(HookRequestError) as e:
        discharge(
            prefetch,
            enc,
            patient,
            fhirServer="https://elsewhere.example/fhir",
            fhirAuthorization={
                "access_token": "t",
                "token_type": "Bearer",
                "expires_in": 60,
                "scope": "x",
                "subject": "s",
            },
        )
    assert e.value.status == 412 and e.value.reason == "fhir-server-not-allowed"


def test_optional_prefetch_missing_adds_a_partial_data_card():
    prefetch, enc, patient = as_prefetch(load("d_medicare_kx_near"))
    del prefetch["charges"]
    cards = discharge(prefetch, enc, patient)
    partial = [c for c in cards if c["source"]["topic"]["code"] == "PARTIAL-DATA"]
    assert len(partial) == 1 and "prior charges" in partial[0]["summary"]
    assert all(c["source"]["topic"]["code"] != "KX-THRESHOLD-NEAR" for c in cards)  # no prior spend known


def test_null_prefetch_means_no_data_not_missing():
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    prefetch["episodes"] = None
    prefetch["charges"] = None
    assert not [
        c for c in discharge(prefetch, enc, patient) if c["source"]["topic"]["code"] == "PARTIAL-DATA"
    ]


def test_prefetch_for_another_encounter_or_patient_is_refused():
    prefetch, enc, patient = as_prefetch(load("a_medicare_cms_units"))
    with pytest.raises(HookRequestError) as e:
        discharge(prefetch, "other-encounter", patient)
    assert e.value.status == 412
    with pytest.raises(HookRequestError) as e:
        discharge(prefetch, enc, "someone-else")
    assert e.value.status == 400 and e.value.reason == "context-mismatch"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.update(hook="patient-view"), "wrong-hook"),
        (lambda b: b.update(hookInstance="not-a-uuid"), "invalid-request"),
        (lambda b: b.pop("context"), "missing-context"),
        (lambda b: b["context"].pop("encounterId"), "missing-context"),
        (lambda b: b["context"].update(patientId="a/b"), "missing-context"),
        (lambda b: b.update(prefetch=[]), "invalid-request"),
        (
            lambda b: b.update(fhirAuthorization={"access_token": "t", "token_type": "Bearer"}),
            "invalid-request",
        ),
        (lambda b: b.update(fhirServer="ftp://x"), "invalid-request"),
    ],
)
def test_malformed_hook_requests_are_400(mutate, reason):
    body = hook_body("encounter-discharge", {"patientId": "p", "encounterId": "e"}, {})
    mutate(body)
    with pytest.raises(HookRequestError) as e:
        parse_hook_request(body, "encounter-discharge")
    assert e.value.status == 400 and e.value.reason == reason


def test_context_filter_matches_the_sync():
    base = {
        "resourceType": "ChargeItem",
        "status": "planned",
        "identifier": [{"system": "https://ptbill.dev/fhir/identifier", "value": "x"}],
    }
    for r in (
        base,
        {**base, "status": "billable"},
        {**base, "identifier": [{"system": "urn:emr", "value": "1"}]},
        {**base, "resourceType": "Task"},
        {"resourceType": "ChargeItem", "status": "planned"},
    ):
        assert own_suggestion(r) == sync_own_suggestion(r)


# --- patient-view ----------------------------------------------------------------------------------


def written(name: str) -> tuple[list[dict[str, Any]], str]:
    """The Flags and Tasks ptbill writes for a bundle's encounter, and the patient id."""
    groups, _ = group_bundle(load(name))
    enc, rel = groups[0]
    facts = extract_encounter(enc, rel)
    outs = build_outputs(facts, decide(facts, TABLES))
    return [o.resource for o in outs if o.resource_type in ("Flag", "Task")], str(facts.patient_id)


def test_patient_view_kx_flag_card_carries_the_basis_of_its_task():
    resources, patient = written("d_medicare_kx_near")
    cards = [c.to_json() for c in patient_view_cards(resources, CATALOG, patient)]
    for c in cards:
        check_card(c)
    assert [c["source"]["topic"]["code"] for c in cards] == [
        "KX-THRESHOLD-NEAR"
    ]  # the ATTEST-KX task is its basis
    card = cards[0]
    assert "approaching" in card["summary"] and card["indicator"] == "info"
    assert "**Basis**" in card["detail"] and "estimate $" in card["detail"]
    assert card["extension"]["ptbill"]["rules"] == ["KX"]
    assert card["extension"]["ptbill"]["tablesAsOf"] == "now"  # Flags record no table versions
    assert "versions loaded now" in card["detail"]


def test_patient_view_groups_open_tasks_and_ignores_closed_foreign_and_other_patients():
    resources, patient = written("c2_overlapping_attest_59")
    tasks = [r for r in resources if r["resourceType"] == "Task"]
    task = next(r for r in tasks if r["code"]["coding"][0]["code"] == "ATTEST-59")
    second = {
        **task,
        "id": task["id"] + "-2",
        "meta": {**task["meta"], "lastUpdated": "2026-02-02T10:00:00Z"},
    }
    noise = [
        {**task, "id": "closed", "status": "completed"},
        {**task, "id": "other", "for": {"reference": "Patient/someone-else"}},
        {**task, "id": "foreign", "identifier": [], "meta": {}},
        {
            "resourceType": "Flag",
            "id": "inactive",
            "status": "inactive",
            "subject": {"reference": f"Patient/{patient}"},
            "meta": task["meta"],
        },
        {"resourceType": "Observation", "id": "o1"},
    ]
    cards = [c.to_json() for c in patient_view_cards([*resources, second, *noise], CATALOG, patient)]
    codes = [c["source"]["topic"]["code"] for c in cards]
    # one card per open task code (the engine also asks for DOC-TIME-OVERLAP here); attestations first
    assert codes[0] == "ATTEST-59"
    assert sorted(codes) == sorted({r["code"]["coding"][0]["code"] for r in tasks})
    card = cards[0]
    check_card(card)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("2 open ATTEST-59 tasks:")
    assert card["extension"]["ptbill"]["resources"] == [
        f"Task/{second['id']}",
        f"Task/{task['id']}",
    ]  # newest first


def test_patient_view_recorded_table_versions_win_over_current_ones():
    resources, patient = written("d_medicare_kx_near")
    flag = next(r for r in resources if r["resourceType"] == "Flag")
    flag = {
        **flag,
        "extension": [
            *flag["extension"],
            {
                "url": "https://ptbill.dev/fhir/StructureDefinition/table-versions",
                "valueString": "kx_thresholds@2025.1+abc",
            },
        ],
    }
    (card,) = patient_view_cards([flag], CATALOG, patient)
    assert card.tables == (("kx_thresholds", "2025.1+abc"),) and card.tables_recorded


def test_patient_view_with_nothing_open_returns_no_cards():
    assert patient_view_cards([], CATALOG, "p1") == []


def test_summaries_are_one_line_and_cut_at_a_word():
    text = "word " * 60
    s = summarize(text)
    assert len(s) <= SUMMARY_MAX and s.endswith("…") and re.fullmatch(r"(word )*word…", s)
    assert summarize("short\nline") == "short line"


def test_a_paginated_prefetch_counts_as_missing():
    prefetch, enc, patient = as_prefetch(load("d_medicare_kx_near"))
    prefetch["charges"]["link"] = [{"relation": "next", "url": "https://emr.example/fhir/ChargeItem?page=2"}]
    cards = discharge(prefetch, enc, patient)
    assert [c["summary"] for c in cards if c["source"]["topic"]["code"] == "PARTIAL-DATA"]
