"""Bounded work in the FHIR client (issue 12): a total deadline per request, JSON that cannot crash it,
TLS settings that mean what they say whatever REQUESTS_CA_BUNDLE holds, and log lines that keep
ptbill's own values as allow-listed fields."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import pytest

from integration import logs
from integration.errors import FhirFatalError, FhirTemporaryError, reason
from integration.fhir.client import FhirClient

ENC = {"resourceType": "Encounter", "id": "e1", "status": "finished"}


def make(fhir: Any, sleeps: list[float], **kw: Any) -> FhirClient:
    return FhirClient(fhir.base_url, sleep=sleeps.append, **kw)


# --- a total deadline per request -----------------------------------------------------------------


def test_a_trickling_body_is_cut_at_the_request_deadline(fhir, sleeps):
    """Each byte arrives well within the read timeout, so before the deadline the request took as long
    as the server liked (here 60 s); now it ends after PTBILL_HTTP_TIMEOUT in all."""
    body = json.dumps(ENC).encode()
    fhir.on("GET", "/fhir/Encounter/e1", fhir.trickle(200, body, every=60 / len(body)))
    with make(fhir, sleeps, timeout=1.0, retries=0) as c:
        t0 = time.monotonic()
        with pytest.raises(FhirTemporaryError) as info:
            c.read("Encounter", "e1")
        took = time.monotonic() - t0
    assert took < 3.0, took
    assert info.value.kind == "deadline"
    assert "within 1 s" in str(info.value)


def test_a_quick_answer_is_not_affected_by_the_deadline(fhir, sleeps):
    fhir.always("GET", "/fhir/Encounter/e1", fhir.json(200, ENC), times=20)
    with make(fhir, sleeps, timeout=0.5) as c:
        for _ in range(20):
            assert c.read("Encounter", "e1") == ENC


# --- JSON that cannot crash the client ------------------------------------------------------------


def test_deeply_nested_json_is_a_clean_fatal_error(fhir, sleeps):
    deep = b'{"resourceType": "Encounter", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    fhir.on("GET", "/fhir/Encounter/e1", fhir.raw(200, deep))
    with make(fhir, sleeps) as c, pytest.raises(FhirFatalError) as info:
        c.read("Encounter", "e1")
    assert info.value.kind == "too-deep" and info.value.status == 200
    assert sleeps == []  # not retried: the same body comes back


def test_moderately_deep_json_past_the_limit_is_refused(fhir, sleeps):
    body = {"resourceType": "Encounter", "id": "e1"}
    node: dict[str, Any] = body
    for _ in range(80):  # parses fine, but deeper than any FHIR resource (limit 64)
        node["extension"] = [{}]
        node = node["extension"][0]
    fhir.on("GET", "/fhir/Encounter/e1", fhir.json(200, body))
    with make(fhir, sleeps) as c, pytest.raises(FhirFatalError, match="deeper than 64"):
        c.read("Encounter", "e1")


def test_undecodable_body_is_a_temporary_error_with_its_kind(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.raw(200, b'{"resourceType": "Encounter", "id": "\xff\xfe"}'))
    with make(fhir, sleeps, retries=0) as c, pytest.raises(FhirTemporaryError) as info:
        c.read("Encounter", "e1")
    assert info.value.kind == "not-json"


def test_deep_json_in_an_error_body_still_reports_the_status(fhir, sleeps):
    fhir.on("GET", "/fhir/Encounter/e1", fhir.raw(422, b"[" * 100_000))
    with make(fhir, sleeps) as c, pytest.raises(FhirFatalError) as info:
        c.read("Encounter", "e1")
    assert info.value.status == 422


# --- PHI-free reasons -----------------------------------------------------------------------------


def test_reason_has_method_url_status_and_kind_but_no_server_text(fhir, sleeps):
    fhir.on("POST", "/fhir", fhir.outcome(422, "Patient Zyxwabc Quux born 1931-02-03 rejected"))
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    with make(fhir, sleeps) as c, pytest.raises(FhirFatalError) as info:
        c.transaction(tx)
    text = reason(info.value)
    assert text == f"FhirFatalError POST {fhir.base_url} -> HTTP 422"
    assert "Zyxwabc" not in text


def test_connection_refused_is_named_as_such(sleeps):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with FhirClient(f"http://127.0.0.1:{port}/fhir", sleep=sleeps.append, retries=0) as c:
        with pytest.raises(FhirTemporaryError) as info:
            c.read("Encounter", "e1")
    assert info.value.kind == "connection-refused"
    assert reason(info.value) == (
        f"FhirTemporaryError GET http://127.0.0.1:{port}/fhir/Encounter/e1 (connection-refused)"
    )


# --- log lines keep ptbill's own values -----------------------------------------------------------


def test_retry_log_line_keeps_its_values_as_fields(fhir, sleeps):
    """The line used to be a %-template whose arguments the formatter drops: it said nothing."""
    fhir.on("GET", "/fhir/Patient", fhir.outcome(503, "busy: Zyxwabc"), fhir.bundle([]))
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure("INFO", "json", stream=out)
    try:
        with make(fhir, sleeps) as c:
            list(c.search("Patient", {"family": "Zyxwabc"}))
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    retry = [x for x in lines if x["msg"] == "FHIR request failed; retrying"]
    assert len(retry) == 1, lines
    r = retry[0]
    assert "args_dropped" not in r
    assert r["method"] == "GET" and r["url"] == f"{fhir.base_url}/Patient"
    assert r["http_status"] == 503 and r["error"] == "FhirTemporaryError"
    assert r["attempt"] == 1 and r["max_attempts"] == 2 and r["retry_in"] == round(sleeps[0], 2)
    assert "Zyxwabc" not in out.getvalue()


# --- TLS: PTBILL_TLS_VERIFY / PTBILL_CA_BUNDLE whatever the environment holds -----------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_fhir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            body = json.dumps({"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}/fhir", cert
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_tls_verify_off_holds_when_requests_ca_bundle_is_set(https_fhir, monkeypatch, sleeps):
    base, _ = https_fhir
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # does not trust our server
    with FhirClient(base, verify=False, retries=0, sleep=sleeps.append) as c:
        assert c.capabilities()["fhirVersion"] == "4.0.1"


def test_ca_bundle_holds_when_requests_ca_bundle_names_another(https_fhir, monkeypatch, sleeps):
    base, cert = https_fhir
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with FhirClient(base, verify=str(cert), retries=0, sleep=sleeps.append) as c:
        assert c.capabilities()["fhirVersion"] == "4.0.1"


def test_tls_verify_on_is_not_loosened_by_requests_ca_bundle(https_fhir, monkeypatch, sleeps):
    """verify=True means the default CA bundle, not whatever bundle the environment names."""
    base, cert = https_fhir
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # would trust our self-signed server
    with FhirClient(base, verify=True, retries=0, sleep=sleeps.append) as c:
        with pytest.raises(FhirTemporaryError) as info:
            c.capabilities()
    assert info.value.kind == "tls"
