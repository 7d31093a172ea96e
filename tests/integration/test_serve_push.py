"""Push mode end to end with real processes: sekmet-fhir's rest-hook Subscriptions -> `ptbill serve` ->
Redis broker -> real Celery worker -> suggestions written back to the same server.

* `ptbill subscribe` creates the Subscription (and changes nothing when run again); `ptbill status`
  shows it active;
* a Procedure edited on the server -> its encounter's suggestions written (and only that encounter's:
  no sync ran), also for a burst of edits, which leaves exactly what a sync would write;
* an encounter in a status ptbill does not bill is not processed;
* an empty ping (payload-less Subscription) -> a small incremental sync;
* a topic-based (backport) Subscription: handshake, then an id-only event -> processed;
* bad notifications: 4xx with an OperationOutcome, nothing dispatched, no patient data in the log.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import redis

from integration.fhir.client import FhirClient
from integration.fhir.writeback import ENCOUNTER_TAG, PTBILL_TAG
from integration.push import PushState
from ptbill_demo.embedded import free_port
from tests.integration.serve_support import ServeProcess, notifying_sekmet
from tests.integration.support import env_for, ptbill, seed, state_for, wait_for

pytestmark = pytest.mark.integration

SECRET = "notify-" + uuid.uuid4().hex
TOPIC = "http://sekmet.dev/fhir/SubscriptionTopic/encounter-complete"


def tagged(client: FhirClient, rtype: str, encounter_id: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in client.search_entries(
            rtype, [("_tag", f"{ENCOUNTER_TAG}|{encounter_id}"), ("_count", "200")]
        )
    ]


def ptbill_total(client: FhirClient) -> int:
    b = client.get("Provenance", [("_tag", f"{PTBILL_TAG}|ptbill"), ("_summary", "count")])
    return int(b.get("total") or 0)


def provenances(client: FhirClient, encounter_id: str) -> list[str]:
    """Ids of the Provenances ptbill created for one encounter (one per change)."""
    entries = client.search_entries("Provenance", [("_tag", f"{ENCOUNTER_TAG}|{encounter_id}")])
    return sorted(str(e["resource"]["id"]) for e in entries)


def put(client: FhirClient, resource: dict[str, Any]) -> None:
    body = {k: v for k, v in resource.items() if k != "meta"}
    client.transaction(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": body,
                    "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
                }
            ],
        }
    )


def finished_encounter_with_procedure(
    client: FhirClient, skip: set[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, Any]]:  # type: ignore[assignment]
    for e in client.search_entries("Encounter", [("status", "finished"), ("_count", "200")]):
        enc = e["resource"]
        if enc["id"] in skip:
            continue
        procs = [
            p["resource"]
            for p in client.search_entries("Procedure", [("encounter", f"Encounter/{enc['id']}")])
        ]
        timed = [
            p for p in procs if p.get("status") == "completed" and (p.get("performedPeriod") or {}).get("end")
        ]
        if timed:
            return enc, timed[0]
    raise AssertionError("no finished encounter with a timed Procedure")


def busiest_encounter(client: FhirClient, skip: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    best: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
    for e in client.search_entries("Encounter", [("status", "finished"), ("_count", "200")]):
        enc = e["resource"]
        if enc["id"] in skip:
            continue
        procs = [
            p["resource"]
            for p in client.search_entries("Procedure", [("encounter", f"Encounter/{enc['id']}")])
            if (p["resource"].get("performedPeriod") or {}).get("end")
        ]
        if best is None or len(procs) > len(best[1]):
            best = (enc, procs)
    assert best is not None and len(best[1]) >= 3, "no encounter with 3 timed Procedures"
    return best


def put_all(client: FhirClient, resources: list[dict[str, Any]]) -> None:
    entries = [
        {
            "resource": {k: v for k, v in r.items() if k != "meta"},
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in resources
    ]
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def longer(proc: dict[str, Any], minutes: int = 15) -> dict[str, Any]:
    """The same Procedure documented ``minutes`` longer (changes the encounter's unit count)."""
    from datetime import datetime, timedelta

    period = dict(proc["performedPeriod"])
    end = datetime.fromisoformat(period["end"]) + timedelta(minutes=minutes)
    period["end"] = end.isoformat()
    return {**proc, "performedPeriod": period}


@pytest.fixture
def push_env(tmp_path, redis_url):
    def make(fhir, port: int, **extra: str) -> dict[str, str]:
        return env_for(
            fhir.base_url,
            redis_url,
            PTBILL_NOTIFY_SECRET=SECRET,
            PTBILL_PUBLIC_URL=f"http://127.0.0.1:{port}",
            PTBILL_SYNC_INTERVAL="3600",
            **extra,
        )

    return make


def subscribe(env: dict[str, str]) -> list[dict[str, Any]]:
    r = ptbill(env, "subscribe")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    return json.loads(r.stdout)["subscriptions"]


def test_procedure_edit_is_pushed_and_written(tmp_path, workers, push_env):
    with notifying_sekmet(tmp_path / "fhir", "put-resource") as fhir:
        seed(fhir.base_url, patients=4, seed_value=21)
        port = free_port()
        env = push_env(fhir, port, PTBILL_SUBSCRIPTIONS="Procedure?")
        workers.start(env, concurrency=2)
        with ServeProcess(env, tmp_path / "serve.log", port=port) as srv:
            (made,) = subscribe(env)
            assert made["action"] == "created" and made["status"] == "active", made
            (again,) = subscribe(env)
            assert again["action"] == "unchanged" and again["id"] == made["id"]
            status = json.loads(ptbill(env, "status", "--json").stdout)
            assert [s["status"] for s in status["push"]["subscriptions"]] == ["active"]
            text = ptbill(env, "status").stdout
            assert f"{made['sid']}: active (Subscription/{made['id']}, Procedure?)" in text
            assert SECRET not in text and SECRET not in json.dumps(status)

            state = state_for(env)
            push = PushState(state)
            with FhirClient(fhir.base_url) as client:
                assert ptbill_total(client) == 0  # nothing synced: what follows is push only
                enc, proc = finished_encounter_with_procedure(client)
                put(client, longer(proc))
                wait_for(
                    lambda: tagged(client, "ChargeItem", enc["id"]), 60, "the pushed encounter's ChargeItems"
                )
                assert ptbill_total(client) == 1  # one Provenance: only the notified encounter

                # a note saved with all its Procedures at once: one notification each, one resolution
                enc2, procs2 = busiest_encounter(client, skip={enc["id"]})
                put_all(client, [longer(p, 8) for p in procs2])
                n = 1 + len(procs2)
                wait_for(lambda: push.stats().get("received", 0) >= n, 30, "all notifications received")
                wait_for(
                    lambda: tagged(client, "ChargeItem", enc2["id"]), 60, "the burst encounter's ChargeItems"
                )
                settle(state)
                stats = push.stats()
                assert stats["coalesced"] >= 1, stats
                assert stats["scheduled"] + stats["coalesced"] == stats["received"]

                # an encounter ptbill does not bill (in progress): notified, resolved, not processed
                enc3, proc3 = finished_encounter_with_procedure(client, skip={enc["id"], enc2["id"]})
                put(client, {**enc3, "status": "in-progress"})
                put(client, longer(proc3))
                wait_for(
                    lambda: push.stats().get("skipped_status", 0) >= 1,
                    60,
                    "the in-progress encounter to be skipped",
                )
                settle(state)
                assert not tagged(client, "ChargeItem", enc3["id"])
                pushed = {e["id"]: provenances(client, e["id"]) for e in (enc, enc2)}

            # push wrote what a sync would: a full sync now changes nothing for those encounters
            synced = ptbill(env, "sync", "--inline", "--quiet", timeout=300)
            assert synced.returncode == 0, synced.stderr[-2000:]
            with FhirClient(fhir.base_url) as client:
                for eid, provs in pushed.items():
                    assert provs and provenances(client, eid) == provs  # no new change recorded
            log = srv.log_text()
            for value in (proc["id"], enc["id"], enc["subject"]["reference"]):
                assert value not in log
            # a rotated secret updates the header; criteria no longer configured are turned off
            rotated = {**env, "PTBILL_NOTIFY_SECRET": SECRET + "-2"}
            (upd,) = subscribe(rotated)
            assert upd["action"] == "updated: header" and upd["id"] == made["id"]
            with FhirClient(fhir.base_url) as client:
                assert client.read("Subscription", made["id"])["channel"]["header"] == [
                    f"Authorization: Bearer {SECRET}-2"
                ]
            first = subscribe({**rotated, "PTBILL_SUBSCRIPTIONS": "Encounter?"})
            assert sorted(r["action"] for r in first) == ["created", "turned off (no longer configured)"]
            report = subscribe({**rotated, "PTBILL_SUBSCRIPTIONS": "Encounter?"})
            assert [r["action"] for r in report] == ["unchanged"]
            with FhirClient(fhir.base_url) as client:
                assert client.read("Subscription", made["id"])["status"] == "off"
            ptbill({**rotated, "PTBILL_SUBSCRIPTIONS": "Encounter?"}, "subscribe", "--delete")
            # the EMR keeps no ptbill Subscription after --delete
            gone = ptbill(rotated, "subscribe", "--delete")
            assert gone.returncode == 0 and json.loads(gone.stdout)["subscriptions"][0]["action"] == "deleted"
            with FhirClient(fhir.base_url) as client:
                assert not list(client.search_entries("Subscription", [("url", made["endpoint"])]))
            assert json.loads(ptbill(env, "status", "--json").stdout)["push"]["subscriptions"] == []


def settle(state) -> None:
    """Scheduled resolutions run and their encounter tasks done (queues empty, no encounter lock held)."""
    wait_for(lambda: not state.r.keys(f"{state.p}:push:pending:*"), 30, "pending resolutions to run")
    wait_for(
        lambda: (
            not any(state.r.llen(q) for q in ("process", "fhir_read"))
            and not state.r.keys(f"{state.p}:lock:enc:*")
        ),
        60,
        "processing to settle",
    )


def test_empty_ping_runs_a_small_sync(tmp_path, workers, push_env):
    with notifying_sekmet(tmp_path / "fhir", "post-endpoint") as fhir:
        seed(fhir.base_url, patients=2, seed_value=22)
        port = free_port()
        env = push_env(fhir, port, PTBILL_SUBSCRIPTIONS="Procedure?", PTBILL_SUBSCRIPTION_PAYLOAD="empty")
        workers.start(env, concurrency=2)
        with ServeProcess(env, tmp_path / "serve.log", port=port):
            (made,) = subscribe(env)
            assert made["status"] == "active"
            with FhirClient(fhir.base_url) as client:
                sub = client.read("Subscription", made["id"])
                assert "payload" not in sub["channel"]  # pings carry no resource
                enc, proc = finished_encounter_with_procedure(client)
                put(client, longer(proc))
                state = state_for(env)
                wait_for(lambda: state.last().get("status") == "ok", 120, "the ping's sync run to finish")
                assert tagged(client, "ChargeItem", enc["id"])
                assert PushState(state).stats().get("syncs", 0) >= 1


def test_backport_topic_subscription_with_id_only_events(tmp_path, workers, push_env):
    with notifying_sekmet(tmp_path / "fhir") as fhir:
        seed(fhir.base_url, patients=2, seed_value=23)
        port = free_port()
        env = push_env(fhir, port, PTBILL_SUBSCRIPTIONS=TOPIC, PTBILL_SUBSCRIPTION_PAYLOAD="id-only")
        with FhirClient(fhir.base_url) as client:
            enc, _ = finished_encounter_with_procedure(client)
            put(client, {**enc, "status": "in-progress"})  # reopened before the subscription exists
        workers.start(env, concurrency=2)
        with ServeProcess(env, tmp_path / "serve.log", port=port):
            (made,) = subscribe(env)
            with FhirClient(fhir.base_url) as client:
                # the backport handshake reaches ptbill serve, then the server activates the Subscription
                wait_for(
                    lambda: client.read("Subscription", made["id"])["status"] == "active", 60, "the handshake"
                )
                assert not tagged(client, "ChargeItem", enc["id"])
                put(
                    client, {**client.read("Encounter", enc["id"]), "status": "finished"}
                )  # the note is signed
                wait_for(lambda: tagged(client, "ChargeItem", enc["id"]), 60, "the encounter's suggestions")
                assert ptbill_total(client) == 1


def test_bad_notifications_are_refused_and_nothing_is_dispatched(tmp_path, redis_url, push_env):
    with notifying_sekmet(tmp_path / "fhir") as fhir:
        port = free_port()
        env = push_env(
            fhir, port, PTBILL_SUBSCRIPTIONS=f"Procedure? {TOPIC}", PTBILL_SERVE_MAX_BODY_BYTES="20000"
        )
        env["PTBILL_BROKER_URL"] = env["PTBILL_REDIS_URL"]
        state = state_for(env)
        broker = redis.Redis.from_url(env["PTBILL_BROKER_URL"])
        for q in ("fhir_read", "process"):
            broker.delete(q)
        with ServeProcess(env, tmp_path / "serve.log", port=port) as srv:
            from integration.cds.subscriptions import sid_for

            proc_url = f"{srv.url}/notify/{sid_for('Procedure?')}"
            topic_url = f"{srv.url}/notify/{sid_for(TOPIC)}"
            auth = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/fhir+json"}
            name = "Qqqprivatename"
            proc = {
                "resourceType": "Procedure",
                "id": "p-1",
                "status": "completed",
                "encounter": {"reference": "Encounter/e-1"},
                "note": [{"text": f"{name} fell off the quokka ladder"}],
            }
            backport = {
                "resourceType": "Bundle",
                "type": "history",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Parameters",
                            "parameter": [
                                {
                                    "name": "subscription",
                                    "valueReference": {"reference": "Subscription/not-ours"},
                                },
                                {"name": "type", "valueCode": "event-notification"},
                                {
                                    "name": "notification-event",
                                    "part": [
                                        {"name": "event-number", "valueString": "1"},
                                        {"name": "focus", "valueReference": {"reference": "Encounter/e-1"}},
                                    ],
                                },
                            ],
                        }
                    }
                ],
            }
            cases = [
                (
                    "no header",
                    proc_url,
                    {"Content-Type": "application/fhir+json"},
                    json.dumps(proc),
                    401,
                    "login",
                ),
                (
                    "wrong secret",
                    proc_url,
                    {**auth, "Authorization": "Bearer nope"},
                    json.dumps(proc),
                    401,
                    "login",
                ),
                (
                    "unknown endpoint",
                    f"{srv.url}/notify/nothing-here",
                    auth,
                    json.dumps(proc),
                    404,
                    "not-found",
                ),
                ("malformed", proc_url, auth, '{"resourceType": "Procedure", ' + name, 400, "structure"),
                ("not json", proc_url, {**auth, "Content-Type": "text/plain"}, name, 415, "not-supported"),
                (
                    "oversized",
                    proc_url,
                    auth,
                    json.dumps({**proc, "note": [{"text": name * 3000}]}),
                    413,
                    "too-costly",
                ),
                (
                    "other type",
                    proc_url,
                    auth,
                    json.dumps({"resourceType": "Patient", "id": "x", "name": [{"family": name}]}),
                    422,
                    "not-supported",
                ),
                (
                    "no id",
                    proc_url,
                    auth,
                    json.dumps({k: v for k, v in proc.items() if k != "id"}),
                    400,
                    "required",
                ),
                ("path mismatch", f"{proc_url}/Procedure/p-2", auth, json.dumps(proc), 400, "invalid"),
                ("unknown subscription", topic_url, auth, json.dumps(backport), 404, "not-found"),
            ]
            for what, url, headers, body, status, code in cases:
                r = httpx.post(url, content=body.encode(), headers=headers, timeout=10)
                assert r.status_code == status, (what, r.status_code, r.text)
                oo = r.json()
                assert oo["resourceType"] == "OperationOutcome" and oo["issue"][0]["code"] == code, what
                assert name not in r.text, what
            assert broker.llen("fhir_read") == 0 and broker.llen("process") == 0  # nothing dispatched
            assert not state.r.keys(f"{state.p}:push:pending:*")
            # the same endpoint accepts a good notification (so the refusals above were not an accident)
            ok = httpx.put(
                f"{proc_url}/Procedure/p-1", content=json.dumps(proc).encode(), headers=auth, timeout=10
            )
            assert ok.status_code == 200 and ok.json()["issue"][0]["severity"] == "information"
            assert broker.llen("fhir_read") == 1
            again = httpx.put(
                f"{proc_url}/Procedure/p-1", content=json.dumps(proc).encode(), headers=auth, timeout=10
            )
            assert (
                again.status_code == 200 and "1 already scheduled" in again.json()["issue"][0]["diagnostics"]
            )
            assert broker.llen("fhir_read") == 1  # a duplicate is coalesced
            metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
            assert (
                'ptbill_requests_rejected_total{reason="unauthenticated",route="/notify/{sid}"} 2.0'
                in metrics
            )
            log = srv.log_text()
            assert name not in log and "quokka" not in log and "p-1" not in log
            lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
            assert any(x.get("http_status") == 413 for x in lines)
