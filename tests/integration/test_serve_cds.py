"""CDS Hooks against the real `ptbill serve` process, called by a stand-in EHR (its own keys and JWKS,
signed JWTs, prefetch made from the discovery templates against a real sekmet-fhir server):

* discovery; encounter-discharge cards (structure per CDS Hooks 2.0) that match what the sync wrote for
  the same encounter, with prefetch and, without it, by reading with the fhirAuthorization token;
* patient-view cards for the patient's ptbill Flags and open Tasks;
* nothing written to the EMR by any hook call;
* refusals: no/expired/foreign/replayed/misaddressed JWTs, untrusted issuers, missing context or
  prefetch, oversized and malformed bodies, unknown services.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from integration.cds.prefetch import DISCHARGE_PREFETCH, PATIENT_VIEW_PREFETCH
from integration.fhir.client import FhirClient
from integration.fhir.writeback import ENCOUNTER_TAG, EXT_MODIFIER, PTBILL_TAG
from integration.hooks import cards_for_encounter
from mappings.loader import default_tables
from tests.integration.serve_support import FakeEhr, ServeProcess, hook_request, run_prefetch
from tests.integration.support import env_for, ptbill, seed

pytestmark = pytest.mark.integration

TAG = f"{PTBILL_TAG}|ptbill"
OUTPUT_TYPES = ("ChargeItem", "DetectedIssue", "Task", "Flag", "Provenance")
DISCHARGE = "ptbill-encounter-discharge"
PATIENT_VIEW = "ptbill-patient-view"
TABLES = default_tables()
AUTH = {
    "access_token": "ehr-issued-token",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "user/*.read",
    "subject": "ptbill",
}


def written_state(client: FhirClient) -> dict[str, str]:
    """Every ptbill resource on the server with its version (to prove hooks write nothing)."""
    out = {}
    for t in OUTPUT_TYPES:
        for e in client.search_entries(t, [("_tag", TAG), ("_count", "500")]):
            r = e["resource"]
            out[f"{t}/{r['id']}"] = r["meta"]["versionId"]
    return out


def charge_lines(client: FhirClient, encounter_id: str) -> list[tuple[str, int, tuple[str, ...]]]:
    lines = []
    tag = f"{ENCOUNTER_TAG}|{encounter_id}"
    for e in client.search_entries("ChargeItem", [("_tag", tag), ("status", "planned")]):
        r = e["resource"]
        mods = tuple(
            x["valueCodeableConcept"]["coding"][0]["code"]
            for x in r.get("extension", [])
            if x["url"] == EXT_MODIFIER
        )
        lines.append((r["code"]["coding"][0]["code"], int(r["quantity"]["value"]), mods))
    return sorted(lines)


def card_lines(cards: list[dict[str, Any]]) -> list[tuple[str, int, tuple[str, ...]]]:
    return sorted(
        (
            c["extension"]["ptbill"]["code"],
            c["extension"]["ptbill"]["units"],
            tuple(c["extension"]["ptbill"]["modifiers"]),
        )
        for c in cards
        if c["extension"]["ptbill"]["kind"] == "line"
    )


def check_cards(cards: list[dict[str, Any]]) -> None:
    for c in cards:
        assert set(c) >= {"summary", "indicator", "source", "uuid"}
        assert isinstance(c["summary"], str) and 0 < len(c["summary"]) < 140
        assert c["indicator"] in ("info", "warning", "critical")
        assert c["source"]["label"]
        assert uuid.UUID(c["uuid"])
        assert "Rule `" in c["detail"] or c["source"]["topic"]["code"] == "PARTIAL-DATA"
        assert "table set " in c["detail"]
    assert len({c["uuid"] for c in cards}) == len(cards)


@pytest.fixture
def cds(tmp_path, fhir_server, redis_url):
    """A seeded, synced clinic; `ptbill serve` trusting a stand-in EHR."""
    seed(fhir_server.base_url, patients=6, seed_value=13)
    env = env_for(fhir_server.base_url, redis_url)
    synced = ptbill(env, "sync", "--inline", "--quiet", timeout=300)
    assert synced.returncode == 0, synced.stderr[-2000:]
    with FakeEhr() as ehr:
        port = ServeProcess(env, tmp_path / "unused.log").port
        serve_env = {
            **env,
            "PTBILL_CDS_CLIENTS": ehr.clients_env(),
            "PTBILL_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        with ServeProcess(serve_env, tmp_path / "serve.log", port=port) as srv:
            yield srv, ehr, fhir_server


def call(
    srv: ServeProcess,
    ehr: FakeEhr,
    service: str,
    body: Any,
    token: str | None = "default",  # noqa: S107 - a marker, not a secret
    **kw: Any,
) -> httpx.Response:
    headers = {}
    if token == "default":
        token = ehr.token(f"{srv.url}/cds-services/{service}")
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{srv.url}/cds-services/{service}",
        content=content,
        headers={**headers, "Content-Type": "application/json", **kw.pop("headers", {})},
        timeout=30,
        **kw,
    )


def test_discovery_and_discharge_cards_match_what_the_sync_wrote(cds):
    srv, ehr, fhir = cds
    disc = httpx.get(f"{srv.url}/cds-services", timeout=10).json()
    services = {s["id"]: s for s in disc["services"]}
    assert (
        services[DISCHARGE]["hook"] == "encounter-discharge"
        and services[PATIENT_VIEW]["hook"] == "patient-view"
    )
    for s in services.values():
        assert s["description"] and s["prefetch"]

    with FhirClient(fhir.base_url) as client:
        before = written_state(client)
        encounters = [
            e["resource"]
            for e in client.search_entries("Encounter", [("status", "finished"), ("_count", "200")])
        ]
        compared: Counter[str] = Counter()
        demo_checked = False
        for enc in encounters[:12]:
            ctx = {"patientId": enc["subject"]["reference"].split("/")[-1], "encounterId": enc["id"]}
            prefetch = run_prefetch(fhir.base_url, services[DISCHARGE]["prefetch"], ctx)
            r = call(srv, ehr, DISCHARGE, hook_request("encounter-discharge", ctx, prefetch=prefetch))
            assert r.status_code == 200, r.text
            cards = r.json()["cards"]
            check_cards(cards)
            assert card_lines(cards) == charge_lines(client, enc["id"])  # one decide(): same as the sync
            # without prefetch: ptbill reads with the token the EHR passes
            r2 = call(
                srv,
                ehr,
                DISCHARGE,
                hook_request("encounter-discharge", ctx, fhirServer=fhir.base_url, fhirAuthorization=AUTH),
            )
            assert r2.status_code == 200, r2.text
            assert [c["uuid"] for c in r2.json()["cards"]] == [c["uuid"] for c in cards]
            compared.update(c["indicator"] for c in cards)
            if not demo_checked:  # the demo's entry point gives the same cards
                assert [c["uuid"] for c in cards_for_encounter(client, enc["id"], TABLES)] == [
                    c["uuid"] for c in cards
                ]
                demo_checked = True
        assert compared["info"] and compared["warning"]  # lines and findings/attestations seen
        assert written_state(client) == before  # no hook call wrote anything


def test_patient_view_shows_flags_with_their_basis_and_open_tasks(cds):
    srv, ehr, fhir = cds
    with FhirClient(fhir.base_url) as client:
        flags = [e["resource"] for e in client.search_entries("Flag", [("_tag", TAG), ("status", "active")])]
        tasks = [
            e["resource"] for e in client.search_entries("Task", [("_tag", TAG), ("status", "requested")])
        ]
        assert tasks
        patients = {r["subject"]["reference"].split("/")[-1] for r in flags} | {
            t["for"]["reference"].split("/")[-1] for t in tasks
        }
        before = written_state(client)
        seen_kinds: Counter[str] = Counter()
        for patient in sorted(patients):
            ctx = {"patientId": patient}
            prefetch = run_prefetch(fhir.base_url, PATIENT_VIEW_PREFETCH, ctx)
            r = call(srv, ehr, PATIENT_VIEW, hook_request("patient-view", ctx, prefetch=prefetch))
            assert r.status_code == 200, r.text
            cards = r.json()["cards"]
            check_cards(cards)
            mine = [f for f in flags if f["subject"]["reference"].endswith("/" + patient)]
            assert sorted(
                c["extension"]["ptbill"]["resource"]
                for c in cards
                if c["extension"]["ptbill"]["kind"] == "flag"
            ) == sorted(f"Flag/{f['id']}" for f in mine)
            for c in cards:
                seen_kinds[c["extension"]["ptbill"]["kind"]] += 1
                if c["source"]["topic"]["code"].startswith("KX-"):
                    assert "**Basis**" in c["detail"] and "estimate $" in c["detail"]
            r2 = call(
                srv,
                ehr,
                PATIENT_VIEW,
                hook_request("patient-view", ctx, fhirServer=fhir.base_url, fhirAuthorization=AUTH),
            )
            assert r2.status_code == 200 and r2.json() == r.json()
        assert seen_kinds["task"]
        assert written_state(client) == before


def test_refusals(cds):
    srv, ehr, fhir = cds
    with FhirClient(fhir.base_url) as client:
        enc = next(iter(client.search_entries("Encounter", [("status", "finished")])))["resource"]
    ctx = {"patientId": enc["subject"]["reference"].split("/")[-1], "encounterId": enc["id"]}
    aud = f"{srv.url}/cds-services/{DISCHARGE}"
    good = hook_request(
        "encounter-discharge", ctx, prefetch=run_prefetch(fhir.base_url, DISCHARGE_PREFETCH, ctx)
    )
    foreign = FakeEhr(iss=ehr.iss)  # same issuer name, other keys
    stranger = FakeEhr(iss="https://stranger.example")
    try:
        reused = ehr.token(aud)
        assert call(srv, ehr, DISCHARGE, good, token=reused).status_code == 200
        cases = {
            "missing-token": (good, None),
            "expired": (good, ehr.token(aud, exp=1_000_000_000, iat=999_999_000)),
            "bad-signature": (good, foreign.token(aud)),
            "untrusted-issuer": (good, stranger.token(aud)),
            "wrong-audience": (good, ehr.token(f"{srv.url}/cds-services/{PATIENT_VIEW}")),
            "replayed": (good, reused),
            "algorithm-not-allowed": (good, ehr.token(aud, alg="RS256")),
        }
        for reason, (body, token) in cases.items():
            r = call(srv, ehr, DISCHARGE, body, token=token)
            assert r.status_code == 401, (reason, r.text)
            assert r.json()["error"] == reason
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert call(srv, ehr, DISCHARGE, good, token=ehr.token(aud, alg="ES384")).status_code == 200
    finally:
        foreign.close()
        stranger.close()

    def status_of(body: Any, service: str = DISCHARGE) -> tuple[int, str]:
        r = call(srv, ehr, service, body)
        return r.status_code, r.json().get("error", "")

    no_ctx = hook_request("encounter-discharge", {"patientId": ctx["patientId"]}, prefetch=good["prefetch"])
    assert status_of(no_ctx) == (400, "missing-context")
    assert status_of(hook_request("encounter-discharge", ctx)) == (412, "prefetch-missing")
    assert status_of(
        {**good, "prefetch": {k: v for k, v in good["prefetch"].items() if k != "procedures"}}
    ) == (412, "prefetch-missing")
    assert status_of(b"{not json") == (400, "invalid-json")
    assert status_of({**good, "hook": "patient-view"}) == (400, "wrong-hook")
    assert status_of(b"x" * 6_000_000) == (413, "too-large")
    assert status_of(good, "no-such-service") == (404, "unknown-service")
    log = srv.log_text()
    lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    assert lines and all("patient" not in json.dumps(x).lower() for x in lines)
    for value in (ctx["patientId"], ctx["encounterId"]):
        assert value not in log
