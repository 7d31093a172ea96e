"""FhirClient + SmartBackendAuth against a real sekmet-fhir server with SMART scopes enforced."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integration.errors import FhirAuthError, FhirNotFound
from integration.fhir.auth import BearerAuth, SmartBackendAuth
from integration.fhir.client import FhirClient, parse_transaction_response
from ptbill_demo.embedded import SekmetServer, SekmetStartError

pytestmark = [
    pytest.mark.integration,
]

WRITER_SCOPE = "system/Encounter.read system/ChargeItem.read system/*.write"
READER_SCOPE = "system/Encounter.read"
N_ENCOUNTERS = 5


def _pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    return {"writer": _pem(), "reader": _pem(), "stranger": _pem()}


@pytest.fixture(scope="module")
def sekmet(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, bytes]) -> Iterator[SekmetServer]:
    clients = [
        {
            "client_id": "ptbill-writer",
            "jwks": SmartBackendAuth("ptbill-writer", keys["writer"]).public_jwks(),
            "scopes": WRITER_SCOPE,
        },
        {
            "client_id": "ptbill-reader",
            "jwks": SmartBackendAuth("ptbill-reader", keys["reader"]).public_jwks(),
            "scopes": READER_SCOPE,
        },
    ]
    auth_config = {
        "types": ["smart"],
        "smart_clients": clients,
        "enforce_scopes": True,
        "token_lifetime": 600,
    }
    with SekmetServer(tmp_path_factory.mktemp("sekmet"), auth_config=auth_config) as srv:
        yield srv


def _encounter(i: int) -> dict:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "identifier": [{"system": "urn:ptbill:test", "value": f"enc-{i}"}],
    }


def _charge_item(encounter_ref: str) -> dict:
    return {
        "resourceType": "ChargeItem",
        "status": "planned",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "97110"}]},
        "subject": {"reference": "Patient/example"},
        "context": {"reference": encounter_ref},
        "quantity": {"value": 2},
    }


def _tx(resources: list[dict]) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources
        ],
    }


def test_smart_client_reads_encounters_and_writes_charge_item(sekmet: SekmetServer, keys: dict[str, bytes]):
    auth = SmartBackendAuth("ptbill-writer", keys["writer"], scope=WRITER_SCOPE)
    with FhirClient(sekmet.base_url, auth=auth, page_size=2, retries=0) as c:
        created = parse_transaction_response(c.transaction(_tx([_encounter(i) for i in range(N_ENCOUNTERS)])))
        assert [r.status for r in created] == [201] * N_ENCOUNTERS
        refs = [r.reference for r in created]
        assert all(ref and ref.startswith("Encounter/") for ref in refs)

        # real paging: 5 encounters at _count=2 -> 3 pages via the server's next links
        pages = list(c.search("Encounter", {"identifier": "urn:ptbill:test|"}))
        found = {f"Encounter/{p['resource']['id']}" for page in pages for p in page.get("entry", [])}
        assert len(pages) == 3 and set(refs) <= found

        enc_id = refs[0].split("/")[1]
        assert c.read("Encounter", enc_id)["status"] == "finished"

        answer = c.transaction(_tx([_charge_item(refs[0])]))
        (res,) = parse_transaction_response(answer)
        assert res.status == 201 and res.reference and res.reference.startswith("ChargeItem/")
        charge = c.read("ChargeItem", res.reference.split("/")[1])
        assert charge["context"]["reference"] == refs[0]

        with pytest.raises(FhirNotFound):
            c.read("Encounter", "does-not-exist")
        snap = c.stats.snapshot()
    assert auth.token_requests == 1  # one token, cached for every request
    assert auth.granted_scope and "system/*.write" in auth.granted_scope
    assert snap["by_status_class"].get("2xx", 0) >= 7


def test_too_narrow_scope_is_refused_on_write(sekmet: SekmetServer, keys: dict[str, bytes]):
    auth = SmartBackendAuth("ptbill-reader", keys["reader"], scope=READER_SCOPE)
    with FhirClient(sekmet.base_url, auth=auth, retries=0) as c:
        list(c.search("Encounter"))  # reading is allowed
        with pytest.raises(FhirAuthError) as info:
            c.transaction(_tx([_charge_item("Encounter/x")]))
    assert info.value.status == 403
    assert info.value.outcome and "do not permit" in info.value.outcome
    assert auth.token_requests == 1  # a 403 is not answered by re-authenticating


def test_no_auth_and_bad_bearer_get_401(sekmet: SekmetServer):
    with FhirClient(sekmet.base_url, retries=0) as c, pytest.raises(FhirAuthError) as info:
        c.read("Encounter", "any")
    assert info.value.status == 401 and info.value.outcome
    with FhirClient(sekmet.base_url, auth=BearerAuth("not-a-token"), retries=0) as c:
        with pytest.raises(FhirAuthError) as info:
            c.read("Encounter", "any")
        assert info.value.status == 401 and c.stats.snapshot()["requests"] == 1


def test_unregistered_key_is_refused_at_the_token_endpoint(sekmet: SekmetServer, keys: dict[str, bytes]):
    auth = SmartBackendAuth("ptbill-writer", keys["stranger"], scope=WRITER_SCOPE)
    with FhirClient(sekmet.base_url, auth=auth, retries=0) as c, pytest.raises(FhirAuthError) as info:
        c.read("Encounter", "any")
    assert info.value.status == 401 and "invalid_client" in (info.value.outcome or "")


def test_revoked_token_triggers_one_reauthentication(sekmet: SekmetServer, keys: dict[str, bytes]):
    auth = SmartBackendAuth("ptbill-writer", keys["writer"], scope=WRITER_SCOPE)
    with FhirClient(sekmet.base_url, auth=auth, retries=0) as c:
        list(c.search("Encounter", {"_count": 1}))
        assert auth.token_requests == 1
        # simulate a token the server no longer accepts (revoked / signing key rotated)
        auth._SmartBackendAuth__token = "revoked.token.value"  # type: ignore[attr-defined]
        list(c.search("Encounter", {"_count": 1}))
        assert auth.token_requests == 2
        assert c.stats.snapshot()["auth_refreshes"] == 1


def test_sekmet_server_reports_a_failed_start(tmp_path, capsys):
    bad = SekmetServer(tmp_path, extra_settings={"server_auth": {"types": ["kerberos"]}}, startup_timeout=20)
    with pytest.raises(SekmetStartError, match="exited with code"):
        bad.start()
    assert bad.process is None
    assert "sekmet log tail" in capsys.readouterr().err


class _Forward:
    """A plain reverse proxy in front of sekmet on another port: the FHIR base ptbill is given is the
    proxy's, so the discovery document sekmet serves names a token endpoint on another origin."""

    def __init__(self, upstream: str):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        up = urlsplit(upstream)
        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _forward(self) -> None:
                seen.append(self.path.split("?", 1)[0])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}{up.path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_token_endpoint_on_another_origin_is_used_only_when_configured(
    sekmet: SekmetServer, keys: dict[str, bytes]
):
    """Issue 12: the signed client assertion never travels to a host a discovery document merely names."""
    proxy = _Forward(sekmet.base_url)
    try:
        auth = SmartBackendAuth("ptbill-writer", keys["writer"], scope=WRITER_SCOPE)
        with FhirClient(proxy.base_url, auth=auth, retries=0) as c, pytest.raises(FhirAuthError) as info:
            c.read("Encounter", "any")
        assert "not on the FHIR server's origin" in str(info.value)
        assert auth.token_requests == 0  # no assertion was signed for, nor sent to, the other origin
        assert not any(p.endswith("/Encounter/any") for p in proxy.seen)  # nor was the FHIR request sent

        # configured explicitly (PTBILL_SMART_TOKEN_URL), the other origin is trusted
        with FhirClient(sekmet.base_url, retries=0) as plain:
            doc = plain.get(".well-known/smart-configuration")
        explicit = SmartBackendAuth(
            "ptbill-writer", keys["writer"], scope=WRITER_SCOPE, token_url=doc["token_endpoint"]
        )
        with FhirClient(proxy.base_url, auth=explicit, retries=0) as c:
            assert c.search("Encounter", {"_count": 1}).__next__()["resourceType"] == "Bundle"
        assert explicit.token_requests == 1
    finally:
        proxy.stop()
