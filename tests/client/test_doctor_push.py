"""ptbill doctor's ``push`` check: the Subscriptions ``ptbill subscribe`` recorded (real Redis), read from a
scripted FHIR server: active, in error (the server's reason is not repeated), gone; none made yet; and no
check at all where push is not configured or during the ``--wait`` start-up wait."""

from __future__ import annotations

import io
import json

import pytest

from integration.push import PushState
from integration.settings import Settings
from integration.state import StateStore
from tasks.doctor import main as doctor_main
from tasks.doctor import run_checks
from tests.capability_statements import complete
from tests.redis_db import TEST_REDIS_URL as REDIS_URL

CAPABILITY = complete()  # a server declaring all ptbill needs
SID = "procedure-0a1b2c3d"


def env(fhir, **extra: str) -> dict[str, str]:
    return {
        "PTBILL_FHIR_BASE_URL": fhir.base_url,
        "PTBILL_REDIS_URL": REDIS_URL,
        "PTBILL_BROKER_URL": REDIS_URL,
        **extra,
    }


def push_checks(fhir, e: dict[str, str], **kw):
    fhir.on("GET", "/fhir/metadata", fhir.json(200, CAPABILITY))
    _, checks = run_checks(e, workers=False, **kw)
    return [c for c in checks if c.name == "push"]


@pytest.fixture
def recorded(fhir):
    """One Subscription recorded as ``ptbill subscribe`` leaves it (this server's keys only)."""
    s = Settings.from_env(env(fhir))
    push = PushState(StateStore.from_url(REDIS_URL, s.server_key))
    push.record_subscription(SID, "sub-1", "Procedure?", "http://127.0.0.1:8095/notify/" + SID)
    yield push
    push.forget_subscription(SID)


def subscription(status: str, **extra: object) -> dict[str, object]:
    return {
        "resourceType": "Subscription",
        "id": "sub-1",
        "status": status,
        "criteria": "Procedure?",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:8095/notify/" + SID},
        **extra,
    }


def test_no_push_check_without_push(fhir):
    assert push_checks(fhir, env(fhir)) == []  # no secret, nothing recorded: push is not in use


def test_none_made_yet_is_ok(fhir):
    (c,) = push_checks(fhir, env(fhir, PTBILL_NOTIFY_SECRET="n0tify"))
    assert c.level == "OK" and "ptbill subscribe" in c.detail


def test_active_subscriptions_are_ok(fhir, recorded):
    fhir.on("GET", "/fhir/Subscription/sub-1", fhir.json(200, subscription("active")))
    (c,) = push_checks(fhir, env(fhir))
    assert c.level == "OK" and SID in c.detail and "1 Subscription(s) active" in c.detail


@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        (("json", 200, subscription("error", error="rest-hook to Jane Doe's chart failed")), "is error"),
        (("json", 200, subscription("off")), "is off"),
        (("outcome", 404, "gone"), "is missing on the server"),
        (("outcome", 500, "Jane Doe"), "is unknown (EMR answered 500)"),
    ],
)
def test_a_subscription_that_is_not_active_fails_with_a_fix(fhir, recorded, reply, shown):
    kind, status, body = reply
    fhir.on(
        "GET",
        "/fhir/Subscription/sub-1",
        fhir.json(status, body) if kind == "json" else fhir.outcome(status, body),
    )
    (c,) = push_checks(fhir, env(fhir))
    assert c.level == "FAIL" and f"{SID} {shown}" in c.detail
    assert "ptbill subscribe" in c.fix
    assert "Jane Doe" not in c.detail + c.fix  # the server's text is not repeated


def test_not_part_of_the_start_up_wait(fhir, recorded):
    assert push_checks(fhir, env(fhir), subscriptions=False) == []
    fhir.on("GET", "/fhir/metadata", fhir.json(200, CAPABILITY))
    out = io.StringIO()
    # --wait: a Subscription the EMR turned off does not hold back the worker's start (no read of it)
    assert doctor_main(env(fhir), as_json=True, workers=False, wait=0.5, out=out) == 0
    assert "push" not in {c["name"] for c in json.loads(out.getvalue())["checks"]}
    assert not fhir.to("/fhir/Subscription/sub-1")
