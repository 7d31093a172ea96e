"""FhirClient against a scripted HTTP server: error sorting, retries, paging, limits, auth refresh."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from integration.errors import (
    ConfigError,
    FhirAuthError,
    FhirConflict,
    FhirFatalError,
    FhirNotFound,
    FhirTemporaryError,
    InputError,
)
from integration.fhir.auth import BearerAuth, SmartBackendAuth
from integration.fhir.client import (
    EntryResult,
    FhirClient,
    outcome_text,
    parse_retry_after,
    parse_transaction_response,
)

ENC = {"resourceType": "Encounter", "id": "e1", "status": "finished"}


def make(fhir, sleeps, **kw):
    kw.setdefault("retries", 2)
    kw.setdefault("timeout", 5.0)
    return FhirClient(fhir.base_url, sleep=sleeps.append, **kw)


def tx_bundle(n=1):
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "ChargeItem", "status": "planned"},
                "request": {"method": "POST", "url": "ChargeItem"},
            }
            for _ in range(n)
        ],
    }


def tx_answer(*statuses, outcome=None):
    entries = []
    for s in statuses:
        resp = {"status": s, "location": "ChargeItem/c1/_history/1", "etag": 'W/"1"'}
        if outcome and not s.startswith("2"):
            resp["outcome"] = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "conflict", "diagnostics": outcome}],
            }
        entries.append({"response": resp})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


# --- basics ----------------------------------------------------------------------------------------


def test_read_sends_fhir_headers_and_returns_json(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.json(200, ENC))
    with make(fhir, sleeps, user_agent="ptbill-test/1") as c:
        assert c.read("Encounter", "e1") == ENC
    (req,) = fhir.requests
    assert req.headers["accept"] == "application/fhir+json"
    assert req.headers["user-agent"] == "ptbill-test/1"
    assert "content-type" not in req.headers
    assert "authorization" not in req.headers


def test_write_sends_content_type_and_body(fhir, sleeps):
    fhir.on("POST", "/fhir", fhir.json(200, tx_answer("201 Created")))
    with make(fhir, sleeps) as c:
        answer = c.transaction(tx_bundle())
    assert answer["type"] == "transaction-response"
    (req,) = fhir.requests
    assert req.headers["content-type"] == "application/fhir+json"
    assert req.json() == tx_bundle()


@pytest.mark.parametrize(
    ("rtype", "rid", "exc"),
    [
        ("Encounter", "../metadata", InputError),
        ("Encounter", "a/b", InputError),
        ("encounter", "e1", InputError),
        ("Encounter", "", InputError),
        ("Encounter", "x" * 65, InputError),
    ],
)
def test_read_rejects_ids_that_would_change_the_path(fhir, sleeps, rtype, rid, exc):
    with make(fhir, sleeps) as c, pytest.raises(exc):
        c.read(rtype, rid)
    assert fhir.requests == []


@pytest.mark.parametrize("url", ["ftp://h/fhir", "http://h/fhir?x=1", "http://u:p@h/fhir", "nohost", ""])
def test_bad_base_url_is_a_config_error(url):
    with pytest.raises(ConfigError):
        FhirClient(url)


def test_closed_client_refuses(fhir, sleeps):
    c = make(fhir, sleeps)
    c.close()
    with pytest.raises(RuntimeError):
        c.capabilities()


def test_capabilities_and_get_relative_path(fhir, sleeps):
    fhir.on("GET", "/fhir/metadata", fhir.json(200, {"resourceType": "CapabilityStatement"}))
    fhir.on("GET", "/fhir/Patient/p1/$everything", fhir.json(200, {"resourceType": "Bundle"}))
    with make(fhir, sleeps) as c:
        assert c.capabilities()["resourceType"] == "CapabilityStatement"
        assert c.get("Patient/p1/$everything", {"_type": "Encounter"})["resourceType"] == "Bundle"
    assert fhir.requests[1].query == {"_type": ["Encounter"]}


def test_get_refuses_another_host(fhir, sleeps):
    with (
        make(fhir, sleeps, auth=BearerAuth("s3cret")) as c,
        pytest.raises(FhirFatalError, match="another host"),
    ):
        c.get("http://example.invalid/fhir/Patient/1")
    assert fhir.requests == []


# --- error sorting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, FhirFatalError),
        (422, FhirFatalError),
        (401, FhirAuthError),
        (403, FhirAuthError),
        (404, FhirNotFound),
        (410, FhirNotFound),
        (409, FhirConflict),
        (412, FhirConflict),
        (408, FhirTemporaryError),
        (429, FhirTemporaryError),
        (500, FhirTemporaryError),
        (502, FhirTemporaryError),
        (503, FhirTemporaryError),
        (504, FhirTemporaryError),
        (501, FhirFatalError),
    ],
)
def test_status_is_sorted_and_outcome_surfaced(fhir, sleeps, status, exc):
    fhir.on("GET", "/fhir/Encounter", fhir.outcome(status, "Unknown search parameter 'foo'", "second issue"))
    with make(fhir, sleeps, retries=0) as c, pytest.raises(exc) as info:
        list(c.search("Encounter", {"name": "Smith", "birthdate": "1950-01-01"}))
    err = info.value
    assert type(err) is exc
    assert err.status == status
    assert err.outcome == "Unknown search parameter 'foo'; second issue"
    assert "Unknown search parameter 'foo'" in str(err)
    # the query string (which may identify a patient) stays out of the error
    assert err.url == f"{fhir.base_url}/Encounter"
    assert "Smith" not in str(err) and "1950" not in str(err) and "Smith" not in repr(err.summary())


def test_outcome_from_details_text_and_non_outcome_bodies(fhir, sleeps):
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "details": {"text": "Encounter.status missing"}}],
    }
    fhir.on("POST", "/fhir", fhir.json(422, body))
    fhir.on("GET", "/fhir/Encounter/x", fhir.raw(500, b"<html>oops</html>", {"Content-Type": "text/html"}))
    with make(fhir, sleeps, retries=0) as c:
        with pytest.raises(FhirFatalError) as info:
            c.transaction(tx_bundle())
        assert info.value.outcome == "Encounter.status missing"
        with pytest.raises(FhirTemporaryError) as info2:
            c.read("Encounter", "x")
        assert info2.value.outcome is None and info2.value.status == 500


# --- retries -----------------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(fhir, sleeps):
    fhir.on(
        "GET",
        "/fhir/Encounter/e1",
        fhir.outcome(429, "slow down", headers={"Retry-After": "7"}),
        fhir.json(200, ENC),
    )
    with make(fhir, sleeps) as c:
        assert c.read("Encounter", "e1") == ENC
        assert c.stats.snapshot()["retries"] == 1
    assert sleeps == [7.0]


def test_429_retry_after_http_date_is_honoured(fhir, sleeps):
    when = datetime.now(UTC) + timedelta(seconds=20)
    fhir.on(
        "GET",
        "/fhir/Encounter/e1",
        fhir.outcome(429, "slow down", headers={"Retry-After": format_datetime(when, usegmt=True)}),
        fhir.json(200, ENC),
    )
    with make(fhir, sleeps) as c:
        assert c.read("Encounter", "e1") == ENC
    assert len(sleeps) == 1 and 17.0 <= sleeps[0] <= 20.0


def test_retry_after_beyond_max_wait_is_raised_not_slept(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.outcome(503, "maintenance", headers={"Retry-After": "120"}))
    with make(fhir, sleeps, max_retry_wait=30) as c, pytest.raises(FhirTemporaryError) as info:
        c.read("Encounter", "e1")
    assert info.value.retry_after == 120.0
    assert info.value.outcome == "maintenance"
    assert sleeps == [] and len(fhir.requests) == 1


def test_503_then_success_uses_backoff_with_jitter(fhir, sleeps):
    fhir.on(
        "GET", "/fhir/Encounter/e1", fhir.outcome(503, "busy"), fhir.outcome(503, "busy"), fhir.json(200, ENC)
    )
    with make(fhir, sleeps, backoff=1.0) as c:
        assert c.read("Encounter", "e1") == ENC
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.5 and 1.0 <= sleeps[1] <= 3.0


def test_retries_exhausted_raises_last_error(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter/e1", *[fhir.outcome(502, "bad gateway")] * 3)
    with make(fhir, sleeps, retries=2, backoff=100, max_retry_wait=4) as c:
        with pytest.raises(FhirTemporaryError, match="bad gateway"):
            c.read("Encounter", "e1")
        snap = c.stats.snapshot()
    assert len(fhir.requests) == 3
    assert sleeps == [4, 4]  # backoff capped by max_retry_wait
    assert snap["retries"] == 2 and snap["by_status_class"] == {"5xx": 3}
    assert snap["errors"] == {"FhirTemporaryError": 1}


@pytest.mark.parametrize("fault", ["close", "reset"])
def test_connection_dropped_without_answer_is_temporary_and_retried(fhir, sleeps, fault):
    fhir.on("GET", "/fhir/Encounter/e1", getattr(fhir, fault)(), fhir.json(200, ENC))
    with make(fhir, sleeps) as c:
        assert c.read("Encounter", "e1") == ENC
        assert c.stats.snapshot()["by_status_class"] == {"transport": 1, "2xx": 1}
    assert len(sleeps) == 1


def test_transaction_not_retried_after_reset_unless_idempotent(fhir, sleeps):
    fhir.on("POST", "/fhir", fhir.reset())
    with make(fhir, sleeps) as c, pytest.raises(FhirTemporaryError):
        c.transaction(tx_bundle())
    assert len(fhir.to("/fhir")) == 1 and sleeps == []  # the server may have committed it

    fhir.on("POST", "/fhir", fhir.reset(), fhir.json(200, tx_answer("200 OK")))
    with make(fhir, sleeps) as c:
        c.transaction(tx_bundle(), idempotent=True)
    assert len(fhir.to("/fhir")) == 3


def test_transaction_retried_after_429(fhir, sleeps):
    fhir.on(
        "POST",
        "/fhir",
        fhir.outcome(429, "later", headers={"Retry-After": "2"}),
        fhir.json(200, tx_answer("201 Created")),
    )
    with make(fhir, sleeps) as c:
        c.transaction(tx_bundle())
    assert sleeps == [2.0]


def test_connect_refused_is_temporary_and_retried_even_for_writes(sleeps):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with FhirClient(f"http://127.0.0.1:{port}/fhir", sleep=sleeps.append, retries=1) as c:
        with pytest.raises(FhirTemporaryError, match="connection"):
            c.transaction(tx_bundle())
    assert len(sleeps) == 1  # never sent, so safe to retry a write


def test_timeout_is_temporary(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.slow(3.0, fhir.json(200, ENC)))
    with make(fhir, sleeps, timeout=0.2, retries=0) as c:
        t0 = time.monotonic()
        with pytest.raises(FhirTemporaryError, match="timeout"):
            c.read("Encounter", "e1")
        assert time.monotonic() - t0 < 2.0


# --- bodies ------------------------------------------------------------------------------------------


def test_truncated_json_body_is_temporary_then_retried(fhir, sleeps):
    body = b'{"resourceType": "Encounter", "id": "e1", "status": "fin'
    fhir.on("GET", "/fhir/Encounter/e1", fhir.truncated(200, body), fhir.json(200, ENC))
    with make(fhir, sleeps) as c:
        assert c.read("Encounter", "e1") == ENC
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "body", [b'{"resourceType": "Encounter", "id": "e1", "sta', b"", b"[1, 2]", b"\xff\xfe"]
)
def test_invalid_json_on_2xx_is_temporary(fhir, sleeps, body):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.raw(200, body))
    with make(fhir, sleeps, retries=0) as c, pytest.raises(FhirTemporaryError) as info:
        c.read("Encounter", "e1")
    assert info.value.status == 200


@pytest.mark.parametrize("declared", [True, False])
def test_oversize_body_is_fatal(fhir, sleeps, declared):
    big = b'{"resourceType": "Bundle", "x": "' + b"a" * 5000 + b'"}'
    reply = fhir.raw(200, big) if declared else fhir.no_length(200, big)
    fhir.on("GET", "/fhir/Encounter/e1", reply)
    with (
        make(fhir, sleeps, max_response_bytes=1000) as c,
        pytest.raises(FhirFatalError, match="max_response"),
    ):
        c.read("Encounter", "e1")
    assert sleeps == []


# --- paging ------------------------------------------------------------------------------------------


def test_search_follows_relative_and_absolute_next_links(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter", fhir.bundle([{"id": "1"}], next_url="Encounter?page=2"))
    fhir.on(
        "GET", "/fhir/Encounter", fhir.bundle([{"id": "2"}], next_url=f"{fhir.base_url}/Encounter?page=3")
    )
    fhir.on("GET", "/fhir/Encounter", fhir.bundle([{"id": "3"}], next_url="?page=4"))
    fhir.on("GET", "/fhir/Encounter", fhir.bundle([{"id": "4"}], next_url="/fhir/Encounter?page=5"))
    fhir.on("GET", "/fhir/Encounter", fhir.bundle([{"id": "5"}]))
    with make(fhir, sleeps, page_size=7) as c:
        ids = [
            e["resource"]["id"]
            for e in c.search_entries("Encounter", [("date", "ge2024"), ("date", "le2025")])
        ]
    assert ids == ["1", "2", "3", "4", "5"]
    first, *rest = fhir.requests
    assert first.query == {"date": ["ge2024", "le2025"], "_count": ["7"]}
    assert [r.query for r in rest] == [{"page": [str(n)]} for n in range(2, 6)]


def test_search_keeps_a_given_count(fhir, sleeps):
    fhir.on("GET", "/fhir/Procedure", fhir.bundle([]))
    with make(fhir, sleeps) as c:
        pages = list(c.search("Procedure", {"_count": 3, "encounter": "Encounter/e1"}))
    assert len(pages) == 1
    assert fhir.requests[0].query == {"_count": ["3"], "encounter": ["Encounter/e1"]}


def test_search_detects_a_next_link_loop(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter", fhir.bundle([], next_url="Encounter?page=2"))
    fhir.on("GET", "/fhir/Encounter", fhir.bundle([], next_url="Encounter?page=3"))
    fhir.on("GET", "/fhir/Encounter", fhir.bundle([], next_url="Encounter?page=2"))
    with make(fhir, sleeps) as c, pytest.raises(FhirFatalError, match="loop"):
        list(c.search("Encounter"))
    assert len(fhir.requests) == 3


@pytest.mark.parametrize(
    "next_url",
    [
        "http://example.invalid/fhir/Encounter?page=2",
        "https://127.0.0.1:{port}/fhir/Encounter?page=2",
        "http://127.0.0.1:1/fhir/Encounter?page=2",
        "//example.invalid/fhir/Encounter",
    ],
)
def test_search_refuses_next_link_to_another_origin(fhir, sleeps, next_url):
    fhir.on("GET", "/fhir/Encounter", fhir.bundle([], next_url=next_url.format(port=fhir.port)))
    with (
        make(fhir, sleeps, auth=BearerAuth("s3cret")) as c,
        pytest.raises(FhirFatalError, match="another host"),
    ):
        list(c.search("Encounter"))
    assert len(fhir.requests) == 1


def test_search_max_pages(fhir, sleeps):
    for n in range(2, 5):
        fhir.on("GET", "/fhir/Encounter", fhir.bundle([], next_url=f"Encounter?page={n}"))
    with make(fhir, sleeps) as c, pytest.raises(FhirFatalError, match="max_pages"):
        list(c.search("Encounter", max_pages=2))


def test_search_refuses_non_bundle(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter", fhir.json(200, {"resourceType": "OperationOutcome"}))
    with make(fhir, sleeps) as c, pytest.raises(FhirFatalError, match="not a Bundle"):
        list(c.search("Encounter"))


# --- transactions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        ("409 Conflict", FhirConflict),
        ("400 Bad Request", FhirFatalError),
        ("412 Precondition Failed", FhirConflict),
        ("500 Internal Server Error", FhirFatalError),
        ("nonsense", FhirFatalError),
    ],
)
def test_transaction_with_failed_entry_raises_with_outcome(fhir, sleeps, status, exc):
    fhir.on(
        "POST", "/fhir", fhir.json(200, tx_answer("201 Created", status, outcome="version conflict on c1"))
    )
    with make(fhir, sleeps) as c, pytest.raises(exc) as info:
        c.transaction(tx_bundle(2))
    assert type(info.value) is exc
    assert info.value.outcome == "version conflict on c1"
    assert "entry 1" in str(info.value) and "version conflict on c1" in str(info.value)
    assert len(fhir.requests) == 1 and sleeps == []


def test_transaction_answer_with_wrong_entry_count_is_fatal(fhir, sleeps):
    fhir.on("POST", "/fhir", fhir.json(200, tx_answer("201 Created")))
    with make(fhir, sleeps) as c, pytest.raises(FhirFatalError, match="1 entries for 2 sent"):
        c.transaction(tx_bundle(2))


def test_batch_returns_mixed_results(fhir, sleeps):
    fhir.on(
        "POST", "/fhir", fhir.json(200, tx_answer("201 Created", "404 Not Found", outcome="no such thing"))
    )
    batch = dict(tx_bundle(2), type="batch")
    with make(fhir, sleeps) as c:
        results = parse_transaction_response(c.batch(batch))
    assert [r.ok for r in results] == [True, False]
    assert results[1] == EntryResult(404, "ChargeItem/c1/_history/1", 'W/"1"', "no such thing")


def test_transaction_refuses_wrong_bundle_type(fhir, sleeps):
    with make(fhir, sleeps) as c, pytest.raises(ValueError):
        c.transaction(dict(tx_bundle(), type="batch"))


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            {"status": "201 Created", "location": "http://h/fhir/ChargeItem/9/_history/2", "etag": 'W/"2"'},
            EntryResult(201, "http://h/fhir/ChargeItem/9/_history/2", 'W/"2"', None),
        ),
        ({"status": "200"}, EntryResult(200, None, None, None)),
        ({}, EntryResult(0, None, None, None)),
    ],
)
def test_parse_transaction_response(response, expected):
    (res,) = parse_transaction_response({"resourceType": "Bundle", "entry": [{"response": response}]})
    assert res == expected


@pytest.mark.parametrize(
    ("location", "reference"),
    [
        ("http://h/fhir/ChargeItem/9/_history/2", "ChargeItem/9"),
        ("Task/t1", "Task/t1"),
        (None, None),
        ("x", None),
    ],
)
def test_entry_reference(location, reference):
    assert EntryResult(201, location).reference == reference


# --- helpers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_date_relative_to_now():
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 90.0


def test_outcome_text_ignores_other_resources():
    assert outcome_text({"resourceType": "Bundle"}) is None
    assert outcome_text({"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}) is None
    assert outcome_text(
        {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "x" * 5000}]}
    ).endswith("…")


# --- auth refresh, TLS opt-out, logging, stats -----------------------------------------------------


def test_401_then_success_reauthenticates_once(fhir, sleeps, rsa_pem, token_endpoint):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.outcome(401, "token revoked"), fhir.json(200, ENC))
    auth = SmartBackendAuth("ptbill", rsa_pem, scope="system/Encounter.read")
    with make(fhir, sleeps, auth=auth) as c:
        assert c.read("Encounter", "e1") == ENC
        assert c.stats.snapshot()["auth_refreshes"] == 1
    calls = fhir.to("/fhir/Encounter/e1")
    assert [r.headers["authorization"] for r in calls] == ["Bearer tok-1", "Bearer tok-2"]
    assert len(token_endpoint.forms) == 2 and sleeps == []


def test_401_twice_is_an_auth_error(fhir, sleeps, rsa_pem, token_endpoint):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.outcome(401, "nope"), fhir.outcome(401, "still nope"))
    auth = SmartBackendAuth("ptbill", rsa_pem)
    with make(fhir, sleeps, auth=auth) as c, pytest.raises(FhirAuthError) as info:
        c.read("Encounter", "e1")
    assert info.value.status == 401 and info.value.outcome == "still nope"
    assert len(fhir.to("/fhir/Encounter/e1")) == 2 and len(token_endpoint.forms) == 2


def test_403_and_static_credentials_are_not_retried(fhir, sleeps, rsa_pem, token_endpoint):
    fhir.on("POST", "/fhir", fhir.outcome(403, "scope does not permit create"))
    with (
        make(fhir, sleeps, auth=SmartBackendAuth("ptbill", rsa_pem)) as c,
        pytest.raises(FhirAuthError) as info,
    ):
        c.transaction(tx_bundle())
    assert info.value.status == 403 and "scope does not permit create" in str(info.value)
    assert len(token_endpoint.forms) == 1

    fhir.on("GET", "/fhir/Encounter/e1", fhir.outcome(401, "bad token"))
    with make(fhir, sleeps, auth=BearerAuth("static")) as c, pytest.raises(FhirAuthError):
        c.read("Encounter", "e1")
    assert len(fhir.to("/fhir/Encounter/e1")) == 1


def test_token_endpoint_rejection_is_not_retried_as_a_401(fhir, sleeps, rsa_pem):
    fhir.always(
        "GET",
        "/fhir/.well-known/smart-configuration",
        fhir.json(200, {"token_endpoint": f"{fhir.root}/auth/token"}),
    )
    fhir.on(
        "POST", "/auth/token", fhir.json(401, {"error": "invalid_client", "error_description": "bad sig"})
    )
    with (
        make(fhir, sleeps, auth=SmartBackendAuth("ptbill", rsa_pem)) as c,
        pytest.raises(FhirAuthError) as info,
    ):
        c.read("Encounter", "e1")
    assert "invalid_client bad sig" in str(info.value)
    assert len(fhir.to("/auth/token")) == 1 and fhir.to("/fhir/Encounter/e1") == []


def test_verify_false_warns_once(fhir, sleeps, caplog):
    caplog.set_level(logging.WARNING, logger="integration.fhir.client")
    fhir.always("GET", "/fhir/metadata", fhir.json(200, {"resourceType": "CapabilityStatement"}), times=3)
    with make(fhir, sleeps, verify=False) as c:
        c.capabilities()
        c.capabilities()
    with make(fhir, sleeps, verify=False) as c:
        c.capabilities()
    warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(warnings) == 1


def test_logs_carry_no_query_strings_or_bodies(fhir, sleeps, caplog):
    caplog.set_level(logging.DEBUG, logger="integration.fhir")
    fhir.on(
        "GET",
        "/fhir/Patient",
        fhir.outcome(503, "busy"),
        fhir.bundle([{"resourceType": "Patient", "name": [{"family": "Zyxwabc"}]}]),
    )
    with make(fhir, sleeps) as c:
        list(c.search("Patient", {"family": "Zyxwabc", "birthdate": "1931-02-03"}))
    assert caplog.records, "expected request logging"
    assert "Zyxwabc" not in caplog.text and "1931" not in caplog.text and "?" not in caplog.text


def test_stats_count_requests_by_method_and_status(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.outcome(500, "x"), fhir.json(200, ENC))
    fhir.on("GET", "/fhir/Encounter/e2", fhir.outcome(404, "gone"))
    fhir.on("POST", "/fhir", fhir.json(200, tx_answer("201 Created")))
    with make(fhir, sleeps) as c:
        c.read("Encounter", "e1")
        with pytest.raises(FhirNotFound):
            c.read("Encounter", "e2")
        c.transaction(tx_bundle())
        snap = c.stats.snapshot()
        c.stats.reset()
        assert c.stats.snapshot()["requests"] == 0
    assert snap["requests"] == 4
    assert snap["by_method"] == {"GET": 3, "POST": 1}
    assert snap["by_status_class"] == {"5xx": 1, "2xx": 2, "4xx": 1}
    assert snap["retries"] == 1
    assert snap["bytes_sent"] == len(b"".join(r.body for r in fhir.requests))
    assert snap["bytes_received"] > 0
    assert snap["errors"] == {"FhirNotFound": 1}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_reported_not_followed(fhir, sleeps, status):
    location = "https://elsewhere.example/fhir/Encounter/e1?token=abc"
    fhir.on("GET", "/fhir/Encounter/e1", fhir.raw(status, b"", {"Location": location}))
    with make(fhir, sleeps, auth=BearerAuth("s3cret")) as c, pytest.raises(FhirFatalError) as info:
        c.read("Encounter", "e1")
    assert info.value.status == status
    assert "https://elsewhere.example/fhir/Encounter/e1" in str(info.value) and "abc" not in str(info.value)
    assert len(fhir.requests) == 1
