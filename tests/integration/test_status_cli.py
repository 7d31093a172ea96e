"""``ptbill status`` / ``retry-failed`` as real processes against real Redis, sekmet and Celery workers.

success -> status exit 0 with watermark, last success and counters;
FHIR server down while encounters are being processed -> dead letters (reason, attempts), status exit 1;
server back -> ``ptbill retry-failed --inline`` re-drives them -> status exit 0;
FHIR server down for the whole sync -> the sync task fails after PTBILL_MAX_RETRIES -> status exit 1.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from integration.fhir.client import FhirClient
from tests.integration.support import env_for, ptbill, seed, send_sync, state_for, wait_for, wait_run

pytestmark = pytest.mark.integration



def status_json(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    p = ptbill(env, "status", "--json")
    return p.returncode, json.loads(p.stdout)


def touch_procedures(base_url: str, n: int) -> list[str]:
    """Rewrite one Procedure in each of ``n`` encounters as vague documentation (its suggestions change)."""
    touched: list[str] = []
    with FhirClient(base_url) as client:
        for e in client.search_entries("Procedure", [("_count", "200")]):
            proc = e["resource"]
            enc = proc.get("encounter", {}).get("reference", "")
            if not enc.startswith("Encounter/") or enc in touched:
                continue
            proc["code"] = {"text": "ther ex as tolerated"}
            proc.pop("note", None)
            client.transaction(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {"resource": proc, "request": {"method": "PUT", "url": f"Procedure/{proc['id']}"}}
                    ],
                }
            )
            touched.append(enc)
            if len(touched) == n:
                break
    return [t.split("/", 1)[1] for t in touched]


def test_status_success_dead_letters_and_retry(fhir_server, redis_url, workers, tmp_path):
    env = env_for(fhir_server.base_url, redis_url, PTBILL_MAX_RETRIES="1")
    seed(fhir_server.base_url, patients=2, seed_value=5)
    state = state_for(env)

    # never synced: not healthy, but a readable report
    rc, rep = status_json(env)
    assert rc == 0 and rep["last_run"] is None and rep["watermark"] is None
    assert "never synced" in rep["problems"]

    # 1. a successful sync through the workers, driven by the CLI itself
    w = workers.start(env, concurrency=1)
    p = ptbill(env, "sync", "--quiet", "--timeout", "120")
    assert p.returncode == 0, p.stderr
    run1 = json.loads(p.stdout)
    assert int(run1["processed"]) >= 2 and int(run1.get("dead_lettered", 0)) == 0

    rc, rep = status_json(env)
    assert rc == 0, rep
    assert rep["healthy"] is True and rep["problems"] == []
    assert rep["watermark"] == run1["until"]
    assert rep["last_run"]["status"] == "ok"
    assert rep["last_successful_run"]["run_id"] == run1["run_id"]
    assert rep["last_successful_run"]["until"] == run1["until"]
    assert rep["last_run"]["counters"]["processed"] == int(run1["processed"])
    assert rep["totals"]["processed"] == int(run1["processed"])
    assert rep["totals"]["created"] > 0
    assert rep["dead_letters"] == []

    human = ptbill(env, "status")
    assert human.returncode == 0
    assert "health:           OK" in human.stdout
    assert f"watermark:        {run1['until']}" in human.stdout
    assert f"last successful:  {rep['last_successful_run']['finished']}" in human.stdout
    assert "dead letters:     0" in human.stdout

    # 2. page a new run with a reader-only worker, then take the FHIR server away before processing
    w.stop()
    changed = touch_procedures(fhir_server.base_url, 2)
    assert len(changed) == 2
    workers.start(env, concurrency=1, queues="fhir_read")
    run2 = uuid.uuid4().hex[:16]
    send_sync(env, run2)
    wait_for(
        lambda: state.run(run2).get("paging_done") == "1" and state.pending_count(run2) == 2,
        60,
        "run 2 to page its two changed encounters",
    )
    port = fhir_server.port
    fhir_server.stop()
    workers.start(env, concurrency=1, queues="process")
    info = wait_run(state, run2, timeout=120)
    assert int(info["dead_lettered"]) == 2

    rc, rep = status_json(env)
    assert rc == 1
    assert rep["healthy"] is False
    assert rep["last_run"]["status"] == "partial"
    assert {d["encounter"] for d in rep["dead_letters"]} == {f"Encounter/{e}" for e in changed}
    for d in rep["dead_letters"]:
        assert d["reason"].startswith("FhirTemporaryError"), d
        assert d["attempts"] == 2  # first try + PTBILL_MAX_RETRIES=1
        assert d["run_id"] == run2
    human = ptbill(env, "status")
    assert human.returncode == 1
    assert "ATTENTION" in human.stdout and "2 dead-lettered encounter(s)" in human.stdout
    for e in changed:
        assert f"Encounter/{e}: FhirTemporaryError" in human.stdout
    assert "(attempts 2," in human.stdout

    # 3. the server comes back (same port, same data); retry-failed re-drives the dead letters
    fhir_server.requested_port = port
    fhir_server.start()
    p = ptbill(env, "retry-failed", "--inline")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"retried": 2, "succeeded": 2}
    rc, rep = status_json(env)
    assert rc == 0 and rep["dead_letters"] == [] and rep["healthy"] is True
    assert rep["totals"]["processed"] == int(run1["processed"]) + 2


def test_status_after_failed_sync(fhir_server, redis_url, workers):
    env = env_for(fhir_server.base_url, redis_url, PTBILL_MAX_RETRIES="1", PTBILL_HTTP_TIMEOUT="2")
    seed(fhir_server.base_url, patients=1, seed_value=9)
    state = state_for(env)
    fhir_server.stop()  # connection refused from now on

    # through the workers: the sync task retries once, then records the failure
    workers.start(env, concurrency=1, queues="fhir_read")
    run_id = uuid.uuid4().hex[:16]
    send_sync(env, run_id)
    last = wait_for(
        lambda: (lambda d: d if d.get("status") == "failed" and d.get("run_id") == run_id else None)(
            state.last()
        ),
        90,
        "the sync task to fail after its retries",
    )
    assert last["reason"].startswith("FhirTemporaryError")
    assert state.sync_lock_holder() is None  # the lock is released for the next run

    rc, rep = status_json(env)
    assert rc == 1
    assert rep["last_run"]["status"] == "failed" and rep["last_run"]["run_id"] == run_id
    assert "last sync failed" in rep["problems"]
    assert rep["last_successful_run"] is None
    human = ptbill(env, "status")
    assert human.returncode == 1
    assert "last run:         failed" in human.stdout
    assert "reason:         FhirTemporaryError" in human.stdout

    # in-process (--inline): the failure is recorded the same way, with a JSON result and exit 1
    p = ptbill(env, "sync", "--inline")
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["status"] == "failed" and out["reason"].startswith("FhirTemporaryError")
    assert "Traceback" not in p.stderr
    assert state.last()["status"] == "failed"
    assert state.sync_lock_holder() is None
