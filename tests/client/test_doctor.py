"""ptbill doctor's FHIR check and the one-line explanations, against a scripted HTTP server:
401, 404 on the base, a server that is not FHIR R4, and a good one (with credentials)."""

from __future__ import annotations

import base64
import io

import pytest

from integration.errors import FhirAuthError, FhirNotFound, FhirTemporaryError
from tasks.doctor import main as doctor_main
from tasks.doctor import run_checks
from tasks.explain import explain
from tests.capability_statements import complete
from tests.redis_db import TEST_REDIS_URL as REDIS_URL

CAPABILITY = complete(software={"name": "scripted", "version": "1"})  # all ptbill needs


def env(fhir, **extra: str) -> dict[str, str]:
    return {
        "PTBILL_FHIR_BASE_URL": fhir.base_url,
        "PTBILL_REDIS_URL": REDIS_URL,
        "PTBILL_BROKER_URL": REDIS_URL,
        **extra,
    }


def check(checks, name):
    (c,) = [c for c in checks if c.name == name]
    return c


def test_good_server_with_basic_auth(fhir):
    fhir.on("GET", "/fhir/metadata", fhir.json(200, CAPABILITY))
    fhir.on(
        "GET", "/fhir/Encounter", fhir.json(200, {"resourceType": "Bundle", "type": "searchset", "total": 0})
    )
    e = env(fhir, PTBILL_FHIR_AUTH="basic", PTBILL_FHIR_USER="biller", PTBILL_FHIR_PASSWORD="pw-secret")
    _, checks = run_checks(e, workers=False)
    assert check(checks, "fhir").level == "OK" and "FHIR 4.0.1 (scripted 1)" in check(checks, "fhir").detail
    assert check(checks, "fhir-auth").level == "OK"
    assert check(checks, "redis").level == "OK" and check(checks, "broker").level == "OK"
    # the configured auth is what was sent
    expected = "Basic " + base64.b64encode(b"biller:pw-secret").decode()
    assert fhir.to("/fhir/metadata")[0].headers["authorization"] == expected
    out = io.StringIO()
    fhir.on("GET", "/fhir/metadata", fhir.json(200, CAPABILITY))
    fhir.on("GET", "/fhir/Encounter", fhir.json(200, {"resourceType": "Bundle", "type": "searchset"}))
    assert doctor_main(e, as_json=False, workers=False, out=out) == 0
    assert "pw-secret" not in out.getvalue() and "PTBILL_FHIR_PASSWORD" in out.getvalue()


@pytest.mark.parametrize(
    ("reply", "detail", "fix"),
    [
        (("outcome", 401, "no such user Jane Doe"), "refused ptbill's credentials", "PTBILL_FHIR_AUTH"),
        (("outcome", 403, "forbidden"), "refused ptbill's credentials", "PTBILL_FHIR_AUTH"),
        (("outcome", 404, "unknown path"), "nothing there: GET", "FHIR base"),
        (("json", 200, {"resourceType": "Patient"}), "not a CapabilityStatement", "FHIR base"),
        (("json", 200, {**CAPABILITY, "fhirVersion": "5.0.0"}), "FHIR 5.0.0; ptbill needs R4", "R4"),
    ],
)
def test_fhir_failures_are_one_line_with_a_fix(fhir, reply, detail, fix):
    kind, status, body = reply
    r = fhir.outcome(status, body) if kind == "outcome" else fhir.json(status, body)
    fhir.on("GET", "/fhir/metadata", r)
    _, checks = run_checks(env(fhir, PTBILL_FHIR_AUTH="bearer", PTBILL_FHIR_TOKEN="t0k"), workers=False)
    c = check(checks, "fhir")
    assert c.level == "FAIL"
    assert detail in c.detail and fix in c.fix
    assert "Jane Doe" not in c.detail + c.fix  # server text (may name a patient) is never repeated
    assert "\n" not in c.detail


def test_settings_failure_skips_what_needs_them(fhir):
    _, checks = run_checks(env(fhir, PTBILL_BROKER_URL="reddis://x"), workers=False)
    assert (
        check(checks, "settings").level == "FAIL"
        and "did you mean redis://" in check(checks, "settings").detail
    )
    assert {c.name for c in checks if c.level == "SKIP"} >= {"fhir", "redis", "broker"}
    assert check(checks, "mappings").level == "OK"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            FhirAuthError(
                "x: HTTP 401: secret text", status=401, method="GET", url="https://e/fhir/Encounter"
            ),
            "the FHIR server refused ptbill's credentials (GET https://e/fhir/Encounter -> HTTP 401)",
        ),
        (
            FhirNotFound("x", status=404, method="GET", url="https://e/wrong/metadata"),
            "nothing there: GET https://e/wrong/metadata -> HTTP 404",
        ),
        (
            FhirTemporaryError(
                "GET https://e/fhir/metadata: connection failed or reset",
                method="GET",
                url="https://e/fhir/metadata",
            ),
            "cannot reach the FHIR server: GET https://e/fhir/metadata: connection failed or reset",
        ),
        (
            FhirTemporaryError("GET x: HTTP 503: PHI here", status=503, method="GET", url="https://e/fhir/x"),
            "the FHIR server is unavailable (GET https://e/fhir/x -> HTTP 503)",
        ),
    ],
)
def test_explanations(exc, expected):
    ex = explain(exc)
    assert ex is not None and ex.what == expected
    assert "secret text" not in ex.line() and "PHI" not in ex.line()
