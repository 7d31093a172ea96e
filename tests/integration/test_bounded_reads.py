"""Reads bounded per run and servers' answers honoured, against real servers and the real CLI.

A run over ``PTBILL_MAX_PAGES`` or past ``PTBILL_SYNC_DEADLINE`` fails with its reason, releases its lock
and leaves ``ptbill status`` unhealthy; a window whose since is after the server's clock is refused; a
PractitionerRole performer brings its Practitioner (and qualifications) on sekmet and on Medplum.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integration.claim import Group
from integration.fhir.client import FhirClient
from integration.fhir.queries import context_requests, fetch_context
from ptbill_demo.embedded import SekmetServer, WorkerProcess
from tests.integration.medplum_server import seed_clinic
from tests.integration.support import env_for, ptbill, seed, state_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SekmetServer]:
    with SekmetServer(tmp_path_factory.mktemp("bounded") / "fhir") as srv:
        seed(srv.base_url, patients=2, seed_value=9)
        yield srv


def forget(env: dict[str, str]) -> None:
    """Drop this server's sync state (the module's server only; other tests' servers have other keys)."""
    st = state_for(env)
    keys = st.r.keys(f"{st.p}:*")
    if keys:
        st.r.delete(*keys)


def status(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    p = ptbill(env, "status", "--json")
    return p.returncode, json.loads(p.stdout)


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("PTBILL_MAX_PAGES", "2", "PTBILL_MAX_PAGES"),
        ("PTBILL_SYNC_DEADLINE", "1", "PTBILL_SYNC_DEADLINE"),
    ],
)
def test_a_run_over_its_bounds_fails_releases_its_lock_and_status_says_so(
    server, redis_url, setting, value, said
):
    env = env_for(server.base_url, redis_url, **{setting: value})
    forget(env)
    p = ptbill(env, "sync", "--inline", timeout=300)
    assert p.returncode == 1
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["status"] == "failed" and said in out["reason"] and "Traceback" not in p.stderr
    st = state_for(env)
    assert st.sync_lock_holder() is None and st.watermark() is None  # lock released, nothing skipped
    code, report = status(env)
    assert code == 1 and report["last_run"]["status"] == "failed" and said in report["last_run"]["reason"]
    # the same window within its bounds then goes through
    ok = ptbill(env_for(server.base_url, redis_url), "sync", "--inline", timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    code, report = status(env)
    assert report["write_strategy"] == "id" and report["last_run"]["status"] == "ok"


def test_a_window_starting_after_the_servers_clock_is_refused(server, redis_url):
    env = env_for(server.base_url, redis_url)
    p = ptbill(
        env, "backfill", "--inline", "--since", "2999-01-01T00:00:00Z", "--until", "2999-02-01T00:00:00Z"
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    reason = json.loads(p.stdout.strip().splitlines()[-1])["reason"]
    assert "is after until" in reason and "server's clock" in reason


def performer_roles(client: FhirClient) -> list[str]:
    """PractitionerRole ids that Procedures name as performer."""
    out: list[str] = []
    for e in client.search_entries("Procedure", [("_count", "200")]):
        for perf in e["resource"].get("performer", []):
            ref = perf.get("actor", {}).get("reference", "")
            if ref.startswith("PractitionerRole/") and ref.split("/")[1] not in out:
                out.append(ref.split("/")[1])
    return out


def assert_role_brings_practitioner(base_url: str) -> None:
    with FhirClient(base_url) as client:
        role_id = performer_roles(client)[0]
        proc = {
            "resourceType": "Procedure",
            "id": "x",
            "performer": [{"actor": {"reference": f"PractitionerRole/{role_id}"}}],
        }
        group = Group({"resourceType": "Encounter", "id": "e"}, {"Procedure/x": proc})
        found = fetch_context(client, context_requests([group], set()))
    role = found[f"PractitionerRole/{role_id}"]
    practitioner = found[role["practitioner"]["reference"]]
    assert practitioner["resourceType"] == "Practitioner" and practitioner.get("qualification")


def test_practitioner_role_performer_brings_its_practitioner_on_sekmet(server):
    assert_role_brings_practitioner(server.base_url)


def test_practitioner_role_performer_brings_its_practitioner_on_medplum(medplum_server):
    seed_clinic(medplum_server.base_url, patients=1, seed=9)
    assert_role_brings_practitioner(medplum_server.base_url)


@pytest.fixture
def stu3_server() -> Iterator[str]:
    """An HTTP server whose /metadata is a FHIR 3.0.2 CapabilityStatement (and nothing else)."""
    body = json.dumps({"resourceType": "CapabilityStatement", "fhirVersion": "3.0.2", "rest": []}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path.endswith("/metadata") else 404)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_worker_refuses_to_start_against_a_server_lacking_what_ptbill_needs(tmp_path, redis_url, stu3_server):
    worker = WorkerProcess(env_for(stu3_server, redis_url), tmp_path / "worker.log", concurrency=1).start()
    try:
        assert worker.process is not None
        rc = worker.process.wait(timeout=60)
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert rc != 0 and "FHIR server unsupported; worker refuses to start" in log
    assert (
        "FHIR version 3.0.2 (ptbill needs R4, 4.0.x)" in log
        and "Encounter (not in the CapabilityStatement)" in log
    )
