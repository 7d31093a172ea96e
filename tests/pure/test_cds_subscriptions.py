"""The Subscriptions ptbill keeps on the EMR: R4 rest-hook and backport shapes, stable endpoints, what
counts as a change (so re-running `ptbill subscribe` writes nothing), the secret never described."""

from __future__ import annotations

import pytest

from integration.cds.subscriptions import (
    BACKPORT_PROFILE,
    EXT_PAYLOAD_CONTENT,
    build_specs,
    describe,
    expected_header_value,
    header_line,
    is_topic,
    sid_for,
)

TOPIC = "http://sekmet.dev/fhir/SubscriptionTopic/encounter-complete"


def specs(payload="full-resource", criteria=("Procedure?", "Encounter?status=finished")):
    return build_specs(criteria, "https://ptbill.clinic.example/", payload, "Authorization", "s3cret")


def test_r4_rest_hook_subscription():
    proc, enc = specs()
    r = proc.resource()
    assert (
        r["resourceType"] == "Subscription" and r["status"] == "requested" and r["criteria"] == "Procedure?"
    )
    assert r["channel"] == {
        "type": "rest-hook",
        "endpoint": f"https://ptbill.clinic.example/notify/{proc.sid}",
        "header": ["Authorization: Bearer s3cret"],
        "payload": "application/fhir+json",
    }
    assert "meta" not in r
    assert proc.sid.startswith("procedure-") and enc.sid.startswith("encounter-") and proc.sid != enc.sid
    (ping,) = specs("empty", ("Procedure?",))
    assert "payload" not in ping.resource()["channel"]


def test_backport_subscription():
    (sp,) = specs("id-only", (TOPIC,))
    r = sp.resource()
    assert sp.backport and is_topic(TOPIC) and not is_topic("Procedure?")
    assert r["meta"]["profile"] == [BACKPORT_PROFILE] and r["criteria"] == TOPIC
    assert r["channel"]["_payload"] == {"extension": [{"url": EXT_PAYLOAD_CONTENT, "valueCode": "id-only"}]}
    assert sp.sid.startswith("encounter-complete-")


def test_sids_are_stable_and_path_safe():
    assert sid_for("Procedure?") == sid_for("Procedure?")
    assert sid_for("Procedure?status=completed") != sid_for("Procedure?")
    for c in ("Procedure?", TOPIC, "Encounter?status=finished,cancelled"):
        assert all(ch.isalnum() or ch == "-" for ch in sid_for(c))


def test_unchanged_subscription_is_left_alone_and_changes_are_named():
    (sp,) = specs(criteria=("Procedure?",))
    stored = {**sp.resource(), "id": "7", "status": "active", "meta": {"versionId": "2"}}
    assert sp.differs(stored) == []
    assert sp.differs({**stored, "status": "error"}) == ["status"]
    assert sp.differs({**stored, "criteria": "Procedure?status=completed"}) == ["criteria"]
    assert sp.differs(
        {**stored, "channel": {**stored["channel"], "header": ["Authorization: Bearer old"]}}
    ) == ["header"]
    assert sp.differs({**stored, "channel": {**stored["channel"], "payload": None}}) == ["payload"]
    (bp,) = specs("id-only", (TOPIC,))
    stored = {**bp.resource(), "id": "8", "status": "active"}
    assert bp.differs(stored) == []
    full = {
        **stored,
        "channel": {
            **stored["channel"],
            "_payload": {"extension": [{"url": EXT_PAYLOAD_CONTENT, "valueCode": "full-resource"}]},
        },
    }
    assert bp.differs(full) == ["payload"]


def test_invalid_criteria_and_payloads():
    with pytest.raises(ValueError, match="criteria"):
        specs(criteria=("Procedure",))
    with pytest.raises(ValueError, match="backport"):
        specs("id-only", ("Procedure?",))


def test_headers_and_description_never_show_the_secret():
    assert header_line("X-Ptbill-Secret", "abc") == "X-Ptbill-Secret: abc"
    assert expected_header_value("Authorization", "abc") == "Bearer abc"
    (sp,) = specs(criteria=("Procedure?",))
    assert "s3cret" not in repr(sp)
    d = describe({**sp.resource(), "id": "1", "status": "error", "error": "delivery\nfailed"})
    assert d == {
        "id": "1",
        "status": "error",
        "criteria": "Procedure?",
        "endpoint": sp.endpoint,
        "error": "delivery failed",
    }
