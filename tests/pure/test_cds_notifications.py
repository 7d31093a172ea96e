"""Subscription notifications -> targets: R4 rest-hook payloads (POST and PUT {type}/{id}), empty pings,
backport R4 Parameters and R4B SubscriptionStatus bundles (handshake, heartbeat, id-only and
full-resource events); malformed and unsupported input refused with a status and an issue code."""

from __future__ import annotations

from typing import Any

import pytest

from integration.cds.notifications import Notification, NotificationError, parse_notification, ref_parts

BASE = "https://emr.example/fhir"


def params_bundle(ntype: str, events: list[dict[str, Any]] | None = None, since: int = 3, resources=()):
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{BASE}/Subscription/sub-1"}},
        {"name": "topic", "valueCanonical": "http://example.org/topic/encounter-complete"},
        {"name": "status", "valueCode": "active"},
        {"name": "type", "valueCode": ntype},
        {"name": "events-since-subscription-start", "valueString": str(since)},
    ]
    for ev in events or []:
        parts = [{"name": "event-number", "valueString": str(ev["n"])}]
        if ev.get("focus"):
            parts.append({"name": "focus", "valueReference": {"reference": f"{BASE}/{ev['focus']}"}})
        params.append({"name": "notification-event", "part": parts})
    entries = [{"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Parameters", "parameter": params}}]
    entries += [{"fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "history", "entry": entries}


def r4b_bundle(ntype: str, focus: list[str], since: int = 1) -> dict[str, Any]:
    status = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": ntype,
        "eventsSinceSubscriptionStart": since,
        "subscription": {"reference": "Subscription/sub-9"},
        "topic": "http://example.org/topic/x",
        "notificationEvent": [{"eventNumber": since, "focus": {"reference": f}} for f in focus],
    }
    return {"resourceType": "Bundle", "type": "history", "entry": [{"resource": status}]}


PROC = {
    "resourceType": "Procedure",
    "id": "p1",
    "status": "completed",
    "encounter": {"reference": "Encounter/e1"},
}


@pytest.mark.parametrize(
    ("body", "kw", "expected"),
    [
        (None, {}, Notification("ping")),
        (PROC, {}, Notification("resource", encounters=("e1",))),
        (PROC, {"path_type": "Procedure", "path_id": "p1"}, Notification("resource", encounters=("e1",))),
        (
            {**PROC, "encounter": {"reference": f"{BASE}/Encounter/e7/_history/3"}},
            {},
            Notification("resource", encounters=("e7",)),
        ),
        (
            {**PROC, "encounter": {"reference": "urn:uuid:abc"}},
            {},
            Notification("resource", procedures=("p1",)),
        ),
        (
            {k: v for k, v in PROC.items() if k != "encounter"},
            {},
            Notification("resource", procedures=("p1",)),
        ),
        (None, {"path_type": "Procedure", "path_id": "p1"}, Notification("resource", procedures=("p1",))),
        (
            {"resourceType": "Encounter", "id": "e2", "status": "finished"},
            {},
            Notification("resource", encounters=("e2",)),
        ),
    ],
)
def test_r4_rest_hook(body, kw, expected):
    assert parse_notification(body, **kw) == expected


def test_backport_handshake_and_heartbeat_carry_no_work():
    hs = parse_notification(params_bundle("handshake", since=0))
    assert hs.kind == "handshake" and hs.subscription == "sub-1" and not hs.needs_sync
    hb = parse_notification(params_bundle("heartbeat", since=5))
    assert hb.kind == "heartbeat" and hb.events_since == 5 and not hb.encounters and not hb.needs_sync


def test_backport_id_only_events():
    n = parse_notification(
        params_bundle(
            "event-notification",
            [
                {"n": 4, "focus": "Encounter/e1"},
                {"n": 5, "focus": "Procedure/p9"},
                {"n": 6, "focus": "Patient/x"},
            ],
            since=6,
        )
    )
    assert n.kind == "event" and n.subscription == "sub-1"
    assert n.encounters == ("e1",) and n.procedures == ("p9",) and n.ignored == 1
    assert n.event_numbers == (4, 5, 6) and n.events_since == 6 and not n.needs_sync


def test_backport_full_resource_event_takes_the_encounter_from_the_included_procedure():
    n = parse_notification(
        params_bundle("event-notification", [{"n": 1, "focus": "Procedure/p1"}], since=1, resources=[PROC])
    )
    assert n.encounters == ("e1",) and n.procedures == ()


def test_backport_empty_content_event_is_a_ping():
    n = parse_notification(params_bundle("event-notification", [{"n": 2}], since=2))
    assert n.kind == "event" and n.needs_sync


def test_r4b_subscription_status():
    n = parse_notification(r4b_bundle("event-notification", ["Encounter/e3"], since=8))
    assert n.subscription == "sub-9" and n.encounters == ("e3",) and n.event_numbers == (8,)
    assert parse_notification(r4b_bundle("heartbeat", [], since=8)).kind == "heartbeat"


@pytest.mark.parametrize(
    ("body", "kw", "status", "code"),
    [
        ([1, 2], {}, 400, "structure"),
        ("text", {}, 400, "structure"),
        ({"id": "x"}, {}, 400, "structure"),
        ({"resourceType": "Observation", "id": "o1"}, {}, 422, "not-supported"),
        ({"resourceType": "Procedure"}, {}, 400, "required"),
        ({"resourceType": "Procedure", "id": "bad id!"}, {}, 400, "required"),
        (PROC, {"path_type": "Procedure", "path_id": "other"}, 400, "invalid"),
        (PROC, {"path_type": "Encounter", "path_id": "p1"}, 400, "invalid"),
        (None, {"path_type": "procedure", "path_id": "p1"}, 400, "invalid"),
        ({"resourceType": "Bundle", "type": "transaction", "entry": []}, {}, 422, "not-supported"),
        ({"resourceType": "Bundle", "type": "history", "entry": []}, {}, 422, "not-supported"),
        (
            {"resourceType": "Bundle", "type": "history", "entry": [{"resource": PROC}]},
            {},
            422,
            "not-supported",
        ),
        ({"resourceType": "Bundle", "type": "history", "entry": ["x"]}, {}, 400, "structure"),
    ],
)
def test_malformed_or_unsupported(body, kw, status, code):
    with pytest.raises(NotificationError) as e:
        parse_notification(body, **kw)
    assert (e.value.status, e.value.code) == (status, code)
    assert "p1" not in e.value.message and "e1" not in e.value.message  # no resource content echoed


def test_backport_without_subscription_or_type_is_refused():
    b = params_bundle("event-notification", [{"n": 1, "focus": "Encounter/e1"}])
    b["entry"][0]["resource"]["parameter"] = [
        p for p in b["entry"][0]["resource"]["parameter"] if p["name"] != "subscription"
    ]
    with pytest.raises(NotificationError) as e:
        parse_notification(b)
    assert e.value.status == 400
    b = params_bundle("something-else")
    with pytest.raises(NotificationError):
        parse_notification(b)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("Encounter/1", ("Encounter", "1")),
        ({"reference": "https://h/fhir/Encounter/1/_history/2"}, ("Encounter", "1")),
        ("urn:uuid:1", None),
        ("Encounter?identifier=x", None),
        ("#contained", None),
        ("1", None),
        (None, None),
    ],
)
def test_ref_parts(ref, expected):
    assert ref_parts(ref) == expected
