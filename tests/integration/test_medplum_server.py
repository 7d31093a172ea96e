"""The Medplum test server (tests/servers/medplum) keeps the rules it claims, over real HTTP.

Each test starts a real server process through the ``medplum_server`` fixture and talks to it with plain
``requests`` (not ptbill's client), so these tests say what the server does, whatever ptbill does.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from ptbill_demo.synth import clinic_summary, generate_clinic
from tests.integration.medplum_server import (
    MedplumServer,
    escape_search_value,
    identifier_condition,
    seed_clinic,
)

pytestmark = pytest.mark.integration

FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
SYS = "https://ptbill.test/id"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ALL = ["lenient", "rules", "rules-tx"]


class Api:
    """A few HTTP calls against one server's FHIR base."""

    def __init__(self, srv: MedplumServer):
        self.base = srv.url
        self.http = requests.Session()

    def req(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        headers = {**FHIR, **kw.pop("headers", {})}
        return self.http.request(method, f"{self.base}/{path}", json=body, headers=headers, timeout=30, **kw)

    def create(self, resource: dict[str, Any], **kw: Any) -> dict[str, Any]:
        r = self.req("POST", resource["resourceType"], resource, **kw)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def search(self, rtype: str, params: Any) -> dict[str, Any]:
        r = self.req("GET", rtype, params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def bundle(self, kind: str, entries: list[dict[str, Any]]) -> requests.Response:
        return self.req("POST", "", {"resourceType": "Bundle", "type": kind, "entry": entries})


def patient(value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": value}], **extra}


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry") or [] if e.get("search", {}).get("mode") == mode]


def outcome_text(body: dict[str, Any]) -> str:
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(str((i.get("details") or {}).get("text", "")) for i in body["issue"])


def next_link(bundle: dict[str, Any]) -> str | None:
    return next((link["url"] for link in bundle.get("link") or [] if link["relation"] == "next"), None)


# --- metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize("medplum_server", ALL, indirect=True)
def test_metadata_tells_the_truth_about_the_profile(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    cs = api.req("GET", "metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    profile = medplum_server.profile
    for rtype in ("Encounter", "Procedure", "ChargeItem", "DetectedIssue", "Task", "Flag", "Provenance"):
        res = by_type[rtype]
        codes = {i["code"] for i in res["interaction"]}
        assert {"read", "vread", "search-type", "create", "update", "delete", "history-instance"} <= codes
        assert res["versioning"] == "versioned-update"
        assert res["updateCreate"] is (profile == "lenient")
        assert res["conditionalCreate"] is True and res["conditionalUpdate"] is True
    params = {p["name"] for p in by_type["Procedure"]["searchParam"]}
    assert {
        "_id",
        "_lastUpdated",
        "_tag",
        "identifier",
        "status",
        "encounter",
        "subject",
        "patient",
    } <= params
    assert "beneficiary" in {p["name"] for p in by_type["Coverage"]["searchParam"]}
    assert "practitioner" in {p["name"] for p in by_type["PractitionerRole"]["searchParam"]}
    assert "identifier" in {p["name"] for p in by_type["DetectedIssue"]["searchParam"]}
    assert "Procedure:encounter" in by_type["Encounter"]["searchRevInclude"]
    assert "Encounter:patient" in by_type["Encounter"]["searchInclude"]
    system = {i["code"] for i in rest["interaction"]}
    assert "batch" in system
    assert ("transaction" in system) is (profile != "rules")
    if profile == "rules-tx":
        doc = next(i for i in rest["interaction"] if i["code"] == "transaction")["documentation"]
        assert "at most 8 entries" in doc and "at most 50 update" in doc

    # every advertised search parameter of the types ptbill uses is accepted; an unadvertised one is refused
    for rtype in ("Encounter", "Procedure", "ChargeItem", "DetectedIssue", "Coverage", "PractitionerRole"):
        for p in by_type[rtype]["searchParam"]:
            value = {"date": "ge2020-01-01", "reference": "Patient/x"}.get(p["type"], "x")
            r = api.req("GET", rtype, params={p["name"]: value})
            assert r.status_code == 200, (rtype, p["name"], r.text)
    assert "quantity" not in {p["name"] for p in by_type["ChargeItem"]["searchParam"]}
    r = api.req("GET", "ChargeItem", params={"quantity": "1"})
    assert r.status_code == 400 and "not supported" in outcome_text(r.json())
    r = api.req("GET", "Encounter", params={"no-such-param": "1"})
    assert r.status_code == 400 and "Unknown search parameter" in outcome_text(r.json())


@pytest.mark.parametrize(
    "medplum_server", [{"profile": "rules", "types": ["Patient", "Encounter"]}], indirect=True
)
def test_types_flag_limits_what_is_served_and_declared(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    cs = api.req("GET", "metadata").json()
    assert [r["type"] for r in cs["rest"][0]["resource"]] == ["Encounter", "Patient"]
    r = api.req("GET", "Procedure")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert api.req("GET", "Patient").status_code == 200


SWITCHED_OFF = {
    "profile": "rules-tx",
    "without": ["conditional-update", "versioned-update", "batch"],
    "without_search_params": ["DetectedIssue.identifier"],
}


@pytest.mark.parametrize("medplum_server", [SWITCHED_OFF], indirect=True)
def test_features_switched_off_are_declared_absent_and_refused(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    rest = api.req("GET", "metadata").json()["rest"][0]
    di = next(r for r in rest["resource"] if r["type"] == "DetectedIssue")
    assert (
        di["conditionalUpdate"] is False
        and di["versioning"] == "versioned"
        and di["conditionalCreate"] is True
    )
    assert "identifier" not in {p["name"] for p in di["searchParam"]}
    assert {i["code"] for i in rest["interaction"]} == {"transaction"}
    made = api.create(patient("off"))
    refused = [
        api.req("PUT", f"Patient?{identifier_condition(SYS, 'off')}", patient("off")),
        api.req(
            "PUT", f"Patient/{made['id']}", made, headers={"If-Match": f'W/"{made["meta"]["versionId"]}"'}
        ),
        api.req("GET", "DetectedIssue", params={"identifier": f"{SYS}|x"}),
        api.bundle("batch", [{"request": {"method": "GET", "url": "Patient"}}]),
        api.bundle(
            "transaction",
            [
                {
                    "resource": patient("off"),
                    "request": {"method": "PUT", "url": f"Patient?{identifier_condition(SYS, 'off')}"},
                }
            ],
        ),
    ]
    for r in refused:
        assert r.status_code == 400, (r.request.method, r.url, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert api.req("PUT", f"Patient/{made['id']}", {**made, "active": True}).status_code == 200
    assert api.req("GET", "DetectedIssue", params={"patient": "Patient/x"}).status_code == 200


def test_every_response_has_a_date_header(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    created = api.create(patient("d1"))
    responses = [
        api.req("GET", "metadata"),
        api.req("GET", f"Patient/{created['id']}"),
        api.req("GET", f"Patient/{uuid.uuid4()}"),  # 404
        api.req("GET", "Patient", params={"identifier": f"{SYS}|d1"}),
        api.req("POST", "Patient", {"resourceType": "Patient", "birthDate": "nope"}),  # 400
        api.bundle("batch", [{"request": {"method": "GET", "url": "Patient"}}]),
        api.http.get(f"{medplum_server.url.rsplit('/fhir', 1)[0]}/elsewhere", timeout=10),  # outside the base
    ]
    now = datetime.now(UTC)
    for r in responses:
        assert "Date" in r.headers, (r.status_code, r.url)
        assert abs(parsedate_to_datetime(r.headers["Date"]) - now) < timedelta(minutes=1)
        if r.status_code >= 400:
            assert r.json()["resourceType"] == "OperationOutcome"


# --- ids and create-by-PUT -------------------------------------------------------------------


def test_rules_accept_only_uuid_ids(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    r = api.req("PUT", "Patient/ptb-0123abcd", {**patient("u1"), "id": "ptb-0123abcd"})
    assert r.status_code == 400 and "Invalid id" in outcome_text(r.json())
    assert api.req("GET", "Patient/ptb-0123abcd").status_code == 404
    # create ignores a client id and assigns a UUID
    made = api.create({**patient("u2"), "id": "ptb-mine"})
    assert UUID_RE.match(made["id"]) and made["id"] != "ptb-mine"
    # the same rule inside a batch
    answer = api.bundle(
        "batch",
        [
            {
                "resource": {**patient("u3"), "id": "ptb-x"},
                "request": {"method": "PUT", "url": "Patient/ptb-x"},
            }
        ],
    ).json()
    assert answer["entry"][0]["response"]["status"] == "400"


def test_rules_refuse_create_by_put(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    new_id = str(uuid.uuid4())
    r = api.req("PUT", f"Patient/{new_id}", {**patient("c1"), "id": new_id})
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert api.req("GET", f"Patient/{new_id}").status_code == 404
    assert api.search("Patient", {"_summary": "count"})["total"] == 0
    # an existing resource is updated by PUT as usual
    made = api.create(patient("c2"))
    r = api.req("PUT", f"Patient/{made['id']}", {**made, "active": True})
    assert r.status_code == 200 and r.json()["active"] is True


@pytest.mark.parametrize("medplum_server", ["lenient"], indirect=True)
def test_lenient_allows_client_ids_and_create_by_put(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    r = api.req("PUT", "Patient/ptb-0123abcd", {**patient("l1"), "id": "ptb-0123abcd"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/Patient/ptb-0123abcd/_history/{r.json()['meta']['versionId']}")
    again = api.req("PUT", "Patient/ptb-0123abcd", {**patient("l1"), "id": "ptb-0123abcd", "active": True})
    assert again.status_code == 200 and again.json()["meta"]["versionId"] != r.json()["meta"]["versionId"]
    # inside a batch too: 201 for the PUT that created, 200 for the one that updated
    entries = [
        {
            "resource": {**patient("l2"), "id": "ptb-new"},
            "request": {"method": "PUT", "url": "Patient/ptb-new"},
        },
        {
            "resource": {**patient("l1"), "id": "ptb-0123abcd"},
            "request": {"method": "PUT", "url": "Patient/ptb-0123abcd"},
        },
    ]
    answer = api.bundle("batch", entries).json()
    assert [e["response"]["status"] for e in answer["entry"]] == ["201", "200"]


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("medplum_server", ALL, indirect=True)
def test_invalid_resources_are_refused_with_an_operation_outcome(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    for bad in (
        {"resourceType": "Patient", "birthDate": "2020-13-45"},  # not a date
        {"resourceType": "Patient", "favouriteColour": "blue"},  # no such element
        {"resourceType": "Procedure", "subject": {"reference": "Patient/1"}},  # status is required
        {
            "resourceType": "ChargeItem",
            "status": "billable",
            "code": {"text": "x"},
            "subject": {},
            "unitz": 1,
        },
    ):
        r = api.req("POST", bad["resourceType"], bad)
        assert r.status_code == 400, (bad, r.text)
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
        assert body["issue"][0].get("expression"), body
    made = api.create(patient("v1"))
    r = api.req("PUT", f"Patient/{made['id']}", {**made, "birthDate": "yesterday"})
    assert r.status_code == 400
    assert api.req("GET", f"Patient/{made['id']}").json()["meta"]["versionId"] == made["meta"]["versionId"]
    answer = api.bundle(
        "batch",
        [
            {
                "resource": {"resourceType": "Patient", "active": "yes"},
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    )
    entry = answer.json()["entry"][0]["response"]
    assert entry["status"] == "400" and entry["outcome"]["resourceType"] == "OperationOutcome"


# --- versioned and conditional writes -----------------------------------------------------------


@pytest.mark.parametrize("medplum_server", ALL, indirect=True)
def test_if_match_versioned_update(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    r = api.req("POST", "Patient", patient("m1"))
    made = r.json()
    etag = r.headers["ETag"]
    assert etag == f'W/"{made["meta"]["versionId"]}"' and r.headers["Last-Modified"]
    ok = api.req("PUT", f"Patient/{made['id']}", {**made, "active": True}, headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.headers["ETag"] != etag
    stale = api.req("PUT", f"Patient/{made['id']}", {**made, "active": False}, headers={"If-Match": etag})
    assert stale.status_code == 412 and stale.json()["resourceType"] == "OperationOutcome"
    malformed = api.req("PUT", f"Patient/{made['id']}", made, headers={"If-Match": "1"})
    assert malformed.status_code == 400
    current = api.req("GET", f"Patient/{made['id']}")
    assert current.json()["active"] is True and current.headers["ETag"] == ok.headers["ETag"]
    # If-Match in a batch entry
    answer = api.bundle(
        "batch",
        [
            {
                "resource": {**made, "active": False},
                "request": {"method": "PUT", "url": f"Patient/{made['id']}", "ifMatch": etag},
            }
        ],
    ).json()
    assert answer["entry"][0]["response"]["status"] == "412"


@pytest.mark.parametrize("medplum_server", ALL, indirect=True)
def test_conditional_create(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    cond = identifier_condition(SYS, "cc|1")
    first = api.req("POST", "Patient", patient("cc|1"), headers={"If-None-Exist": cond})
    assert first.status_code == 201
    second = api.req("POST", "Patient", patient("cc|1", active=True), headers={"If-None-Exist": cond})
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    assert "active" not in second.json()  # the existing resource, untouched
    api.create(patient("dup"))
    api.create(patient("dup"))
    several = api.req(
        "POST", "Patient", patient("dup"), headers={"If-None-Exist": identifier_condition(SYS, "dup")}
    )
    assert several.status_code == 412 and several.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("medplum_server", ALL, indirect=True)
def test_conditional_update(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    query = identifier_condition(SYS, "cu,1")
    created = api.req("PUT", f"Patient?{query}", patient("cu,1"))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert UUID_RE.match(pid)
    updated = api.req("PUT", f"Patient?{query}", patient("cu,1", active=True))
    assert updated.status_code == 200 and updated.json()["id"] == pid and updated.json()["active"] is True
    assert api.search("Patient", {"_summary": "count"})["total"] == 1
    wrong_id = api.req("PUT", f"Patient?{query}", {**patient("cu,1"), "id": str(uuid.uuid4())})
    assert wrong_id.status_code == 400
    # with If-Match: checked against the one match
    etag = f'W/"{updated.json()["meta"]["versionId"]}"'
    stale = api.req("PUT", f"Patient?{query}", patient("cu,1"), headers={"If-Match": 'W/"0"'})
    assert stale.status_code == 412
    fresh = api.req("PUT", f"Patient?{query}", patient("cu,1", active=False), headers={"If-Match": etag})
    assert fresh.status_code == 200 and fresh.json()["id"] == pid
    api.create(patient("two"))
    api.create(patient("two"))
    several = api.req("PUT", f"Patient?{identifier_condition(SYS, 'two')}", patient("two"))
    assert several.status_code == 412


# --- search ----------------------------------------------------------------------------------


@pytest.mark.parametrize("medplum_server", ALL, indirect=True)
def test_identifier_search_follows_r4_escaping(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    values = ["a|b", "a", "b", "x,y", "x", "cost$5", "back\\slash", "plain"]
    made = {v: api.create(patient(v))["id"] for v in values}
    for v in values:
        found = ids(api.search("Patient", {"identifier": f"{SYS}|{escape_search_value(v)}"}))
        assert found == [made[v]], v
    # unescaped: "a|b" is system "...|a" code "b"... never the resource holding "a|b"
    assert made["a|b"] not in ids(api.search("Patient", {"identifier": f"{SYS}|a|b"}))
    # an unescaped comma is two alternatives
    assert sorted(ids(api.search("Patient", {"identifier": f"{SYS}|x,{SYS}|y"}))) == [made["x"]]
    both = ids(api.search("Patient", {"identifier": f"{SYS}|a,{SYS}|b"}))
    assert sorted(both) == sorted([made["a"], made["b"]])
    assert len(ids(api.search("Patient", {"identifier": f"{SYS}|", "_count": 100}))) == len(values)
    assert ids(api.search("Patient", {"identifier": "plain"})) == [made["plain"]]  # code alone
    assert ids(api.search("Patient", {"identifier": "|plain"})) == []  # no-system only


@pytest.mark.parametrize("medplum_server", ["lenient", "rules"], indirect=True)
def test_paging_by_next_links(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    made = [api.create(patient(f"pg{i:02d}"))["id"] for i in range(25)]
    page = api.search("Patient", {"_count": 10, "_sort": "_lastUpdated"})
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += ids(page)
        if medplum_server.profile == "lenient":
            assert page["total"] == 25
        else:
            assert "total" not in page  # Medplum's default: no total unless asked
        url = next_link(page)
        if not url:
            break
        r = api.http.get(url, headers=FHIR, timeout=30)
        assert r.status_code == 200
        page = r.json()
    assert pages == 3 and seen == made  # ascending _lastUpdated, each once
    assert api.search("Patient", {"_count": 5, "_total": "accurate"})["total"] == 25
    counted = api.search("Patient", {"_summary": "count"})
    assert counted["total"] == 25 and "entry" not in counted
    desc = ids(api.search("Patient", {"_count": 3, "_sort": "-_lastUpdated"}))
    assert desc == list(reversed(made))[:3]
    assert len(ids(api.search("Patient", {}))) == 20  # default page size


@pytest.mark.parametrize(
    "medplum_server", [{"profile": "lenient", "total": "never", "max_count": 7}], indirect=True
)
def test_total_can_be_omitted_and_count_is_capped(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    for i in range(9):
        api.create(patient(f"t{i}"))
    page = api.search("Patient", {"_count": 100})
    assert "total" not in page and len(ids(page)) == 7 and next_link(page)
    assert "total" not in api.search("Patient", {"_summary": "count"})


def test_search_parameters_ptbill_uses(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    clinic = seed_clinic(api.base, patients=2)
    enc_ids = clinic.ids_of("Encounter")
    first = api.req("GET", f"Encounter/{enc_ids[0]}").json()
    pid = first["subject"]["reference"]

    # _lastUpdated window and _sort
    everything = api.search("Encounter", {"_count": 1000, "_sort": "_lastUpdated"})
    stamps = [e["resource"]["meta"]["lastUpdated"] for e in everything["entry"]]
    assert stamps == sorted(stamps) and len(stamps) == len(enc_ids)
    middle = stamps[len(stamps) // 2]
    later = ids(api.search("Encounter", [("_lastUpdated", f"gt{middle}"), ("_count", "1000")]))
    upto = ids(api.search("Encounter", [("_lastUpdated", f"le{middle}"), ("_count", "1000")]))
    assert sorted(later + upto) == sorted(enc_ids) and not set(later) & set(upto)

    # _id (comma list), status, subject/patient, encounter, beneficiary, practitioner
    two = enc_ids[:2]
    assert sorted(ids(api.search("Encounter", {"_id": ",".join(two)}))) == sorted(two)
    statuses = {e["resource"]["status"] for e in everything["entry"]}
    st = sorted(statuses)[0]
    assert all(
        e["resource"]["status"] == st
        for e in api.search("Encounter", {"status": st, "_count": 1000})["entry"]
    )
    mine = ids(api.search("Encounter", {"subject": pid, "_count": 1000}))
    assert mine and ids(api.search("Encounter", {"patient": pid, "_count": 1000})) == mine
    assert ids(api.search("Encounter", {"subject": pid.split("/")[1], "_count": 1000})) == mine  # bare id
    procs = api.search("Procedure", {"encounter": ",".join(f"Encounter/{i}" for i in two), "_count": 1000})
    assert procs.get("entry") and all(
        e["resource"]["encounter"]["reference"] in {f"Encounter/{i}" for i in two} for e in procs["entry"]
    )
    cov = api.search("Coverage", {"beneficiary": pid})
    assert [e["resource"]["beneficiary"]["reference"] for e in cov["entry"]] == [pid]
    role = api.req("GET", f"PractitionerRole/{clinic.ids_of('PractitionerRole')[0]}").json()
    prac = role["practitioner"]["reference"]
    assert ids(api.search("PractitionerRole", {"practitioner": prac})) == [role["id"]]

    # _include / _revinclude (and that a read ignores _include, as Medplum's server does)
    inc = api.search(
        "Encounter",
        [("_id", enc_ids[0]), ("_include", "Encounter:patient"), ("_revinclude", "Procedure:encounter")],
    )
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in inc["entry"]}
    assert modes == {("Encounter", "match"), ("Patient", "include"), ("Procedure", "include")}
    assert all(
        e["fullUrl"].endswith(f"{e['resource']['resourceType']}/{e['resource']['id']}") for e in inc["entry"]
    )
    with_prac = api.search(
        "PractitionerRole", [("_id", role["id"]), ("_include", "PractitionerRole:practitioner")]
    )
    assert {e["resource"]["resourceType"] for e in with_prac["entry"]} == {"PractitionerRole", "Practitioner"}
    read = api.req(
        "GET", f"PractitionerRole/{role['id']}", params={"_include": "PractitionerRole:practitioner"}
    )
    assert read.json()["resourceType"] == "PractitionerRole"

    # _elements, _tag
    slim = api.search("Procedure", {"_elements": "id,encounter", "_count": 3})["entry"][0]["resource"]
    assert set(slim) <= {"resourceType", "id", "meta", "encounter"} and "encounter" in slim
    assert any(t.get("code") == "SUBSETTED" for t in slim["meta"]["tag"])
    tag = {"system": "https://ptbill.test/tag", "code": "ours"}
    tagged = api.create({**patient("tagged"), "meta": {"tag": [tag]}})
    assert ids(api.search("Patient", {"_tag": f"{tag['system']}|{tag['code']}"})) == [tagged["id"]]


def test_searches_inside_a_batch_page_like_direct_ones(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    for i in range(3):
        api.create(patient(f"b{i}"))
    answer = api.bundle(
        "batch", [{"request": {"method": "GET", "url": "Patient?_count=2&_total=accurate"}}]
    ).json()
    found = answer["entry"][0]["resource"]
    assert found["total"] == 3 and len(found["entry"]) == 2
    url = next_link(found)
    assert url and api.http.get(url, headers=FHIR, timeout=30).json()["entry"]


# --- batch and transaction -------------------------------------------------------------------

URN = "urn:uuid:" + str(uuid.UUID(int=1))


def mixed_bundle(kind: str) -> list[dict[str, Any]]:
    """A good patient, an encounter referring to it by urn:uuid, an invalid patient, a PUT to a new id."""
    missing = str(uuid.uuid4())
    return [
        {"fullUrl": URN, "resource": patient("tx-good"), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": URN},
            },
            "request": {"method": "POST", "url": "Encounter"},
        },
        {
            "resource": {"resourceType": "Patient", "birthDate": "never"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {**patient("tx-put"), "id": missing},
            "request": {"method": "PUT", "url": f"Patient/{missing}"},
        },
    ]


def test_rules_process_a_transaction_as_a_batch(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    r = api.bundle("transaction", mixed_bundle("transaction"))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"] for e in answer["entry"]] == ["201", "201", "400", "404"]
    assert answer["entry"][2]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    # what succeeded stays, and the urn:uuid reference was resolved to the new Patient
    pat = answer["entry"][0]["resource"]
    enc = api.req("GET", answer["entry"][1]["response"]["location"]).json()
    assert enc["subject"]["reference"] == f"Patient/{pat['id']}"
    assert api.search("Patient", {"_summary": "count"})["total"] == 1


@pytest.mark.parametrize("medplum_server", ["lenient", "rules-tx"], indirect=True)
def test_atomic_transactions_keep_nothing_when_an_entry_fails(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    entries = mixed_bundle("transaction")
    r = api.bundle("transaction", entries[:3])  # the invalid patient fails
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert api.search("Patient", {"_summary": "count"})["total"] == 0
    assert api.search("Encounter", {"_summary": "count"})["total"] == 0
    # conditional update failing (several matches) also rolls back the creates before it
    api.create(patient("twin"))
    api.create(patient("twin"))
    cond = {
        "resource": patient("twin"),
        "request": {"method": "PUT", "url": f"Patient?{identifier_condition(SYS, 'twin')}"},
    }
    r = api.bundle("transaction", [entries[0], cond])
    assert r.status_code >= 400
    assert api.search("Patient", {"_summary": "count"})["total"] == 2
    ok = api.bundle("transaction", entries[:2])
    assert ok.status_code == 200 and [e["response"]["status"] for e in ok.json()["entry"]] == ["201", "201"]
    enc = api.req("GET", ok.json()["entry"][1]["response"]["location"]).json()
    assert enc["subject"]["reference"] == f"Patient/{ok.json()['entry'][0]['resource']['id']}"


def conditional_creates(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "resource": patient(f"{prefix}{i}"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": identifier_condition(SYS, f"{prefix}{i}"),
            },
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("medplum_server", ["rules-tx"], indirect=True)
def test_rules_tx_limits(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    r = api.bundle("transaction", conditional_creates(9, "c"))
    assert r.status_code == 400 and "too many entries" in outcome_text(r.json())
    assert api.search("Patient", {"_summary": "count"})["total"] == 0
    assert api.bundle("transaction", conditional_creates(8, "c")).status_code == 200
    # the same nine entries are fine as a batch, and unconditional creates have no entry limit
    assert api.bundle("batch", conditional_creates(9, "d")).status_code == 200
    plain = [
        {"resource": patient(f"p{i}"), "request": {"method": "POST", "url": "Patient"}} for i in range(60)
    ]
    assert api.bundle("transaction", plain).status_code == 200
    # at most 50 updates
    found = api.search("Patient", {"identifier": f"{SYS}|", "_count": 100})
    existing = [e["resource"] for e in found["entry"]][:51]
    puts = [
        {"resource": {**p, "active": True}, "request": {"method": "PUT", "url": f"Patient/{p['id']}"}}
        for p in existing
    ]
    r = api.bundle("transaction", puts)
    assert r.status_code == 400 and "more update operations than allowed" in outcome_text(r.json())
    assert api.bundle("transaction", puts[:50]).status_code == 200


@pytest.mark.parametrize(
    "medplum_server",
    [{"profile": "rules-tx", "tx_max_conditional_entries": 12, "tx_max_updates": 3}],
    indirect=True,
)
def test_transaction_limits_are_configurable(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    cs = api.req("GET", "metadata").json()
    doc = next(i for i in cs["rest"][0]["interaction"] if i["code"] == "transaction")["documentation"]
    assert "at most 12 entries" in doc and "at most 3 update" in doc
    assert api.bundle("transaction", conditional_creates(12, "c")).status_code == 200  # above Medplum's 8
    assert api.bundle("transaction", conditional_creates(13, "e")).status_code == 400
    made = [api.create(patient(f"u{i}")) for i in range(4)]
    puts = [{"resource": p, "request": {"method": "PUT", "url": f"Patient/{p['id']}"}} for p in made]
    assert api.bundle("transaction", puts).status_code == 400
    assert api.bundle("transaction", puts[:3]).status_code == 200


# --- delete, history, references, errors ----------------------------------------------------------


def test_delete_and_history(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    proc = api.create(
        {"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Patient/p"}}
    )
    v1 = proc["meta"]["versionId"]
    api.req("PUT", f"Procedure/{proc['id']}", {**proc, "status": "not-done"})
    r = api.req("DELETE", f"Procedure/{proc['id']}")
    assert r.status_code == 200
    assert api.req("GET", f"Procedure/{proc['id']}").status_code == 410
    assert ids(api.search("Procedure", {})) == []
    hist = api.req("GET", f"Procedure/{proc['id']}/_history").json()
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]
    old = api.req("GET", f"Procedure/{proc['id']}/_history/{v1}")
    assert old.status_code == 200 and old.json()["status"] == "completed"


@pytest.mark.parametrize("medplum_server", [{"profile": "rules", "check_references": True}], indirect=True)
def test_check_references_refuses_dangling_references(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    dangling = {
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "x"},
        "subject": {"reference": URN},
    }
    r = api.req("POST", "Flag", dangling)
    assert r.status_code == 400 and "Unresolved reference" in outcome_text(r.json())
    r = api.req("POST", "Flag", {**dangling, "subject": {"reference": f"Patient/{uuid.uuid4()}"}})
    assert r.status_code == 400
    r = api.req(
        "POST", "Flag", {**dangling, "subject": {"reference": f"Patient?{identifier_condition(SYS, 'x')}"}}
    )
    assert r.status_code == 400 and "Unresolved reference" in outcome_text(r.json())
    pat = api.create(patient("ref"))
    api.create({**dangling, "subject": {"reference": f"Patient/{pat['id']}"}})


def test_errors_are_operation_outcomes(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    checks = [
        (api.req("GET", "NoSuchType"), 404),
        (api.req("GET", f"Patient/{uuid.uuid4()}"), 404),
        (
            api.req("POST", "Patient", data="{not json", headers={"Content-Type": "application/fhir+json"}),
            400,
        ),
        (
            api.req("POST", "Patient", data="<Patient/>", headers={"Content-Type": "application/fhir+xml"}),
            415,
        ),
        (api.req("POST", "", {"resourceType": "Bundle", "type": "collection", "entry": []}), 400),
        (api.req("POST", "Encounter", patient("wrong-type")), 400),
    ]
    for r, status in checks:
        assert r.status_code == status, (r.request.method, r.url, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"


# --- the seed helper -------------------------------------------------------------------------


def test_seed_clinic_uses_server_ids_and_is_idempotent(medplum_server: MedplumServer) -> None:
    api = Api(medplum_server)
    bundles = generate_clinic(patients=3, seed=7)
    clinic = seed_clinic(api.base, bundles)
    assert all(UUID_RE.match(i) for i in clinic.ids.values())
    summary = clinic_summary(bundles)
    for rtype in ("Patient", "Encounter", "Procedure", "Coverage", "Practitioner", "ChargeItem"):
        total = api.search(rtype, {"_summary": "count"})["total"]
        assert total == clinic.count(rtype) == summary[f"resources.{rtype}"], rtype
    # every reference resolves to a stored resource (no urn:uuid, no conditional reference left)
    known = {f"{t}/{i}" for (t, _), i in clinic.ids.items()}
    for rtype in ("Encounter", "Procedure", "Coverage", "PractitionerRole", "ChargeItem", "EpisodeOfCare"):
        for e in api.search(rtype, {"_count": 1000})["entry"]:
            for ref in re.findall(r'"reference": "([^"]+)"', json.dumps(e["resource"])):
                assert ref in known, (rtype, ref)
    again = seed_clinic(api.base, bundles)
    assert again.ids == clinic.ids
    assert api.search("Procedure", {"_summary": "count"})["total"] == clinic.count("Procedure")
