"""The Subscription resources ``ptbill subscribe`` keeps on the EMR (pure: build, compare, describe).

One Subscription per configured entry of ``PTBILL_SUBSCRIPTIONS``:

* an R4 criteria string (``Procedure?``, ``Encounter?status=finished``): a classic R4 rest-hook
  Subscription; payload ``application/fhir+json`` (``full-resource``) or none (``empty``: pings);
* a topic canonical URL (``http://.../SubscriptionTopic/encounter-complete``): a Subscriptions-backport
  (topic-based) Subscription, content ``id-only`` / ``full-resource`` / ``empty``.

Each gets its own endpoint ``{public_url}/notify/{sid}``, where ``sid`` is derived from the criteria, so
the service knows which Subscription a notification belongs to and ``ptbill subscribe`` finds its
Subscriptions again by ``url`` (R4 search parameter on ``channel.endpoint``): re-running it changes
nothing unless the criteria, payload, endpoint or secret header changed, or the server turned the
Subscription off or to error. The header line holds the secret: it is never logged or shown.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
BACKPORT_PROFILE = f"{BACKPORT}/backport-subscription"
EXT_PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
FHIR_JSON = "application/fhir+json"
REASON = "ptbill: billing feedback while documentation is open"
NOTIFY_PATH = "/notify"

Payload = Literal["full-resource", "id-only", "empty"]


def is_topic(criteria: str) -> bool:
    """A backport topic canonical (a URL without a query), not an R4 ``Type?params`` criteria."""
    return criteria.startswith(("http://", "https://", "urn:")) and "?" not in criteria


def sid_for(criteria: str) -> str:
    """A stable, readable path segment for one subscription: ``procedure-1a2b3c4d``."""
    if is_topic(criteria):
        name = criteria.rstrip("/").rsplit("/", 1)[-1]
    else:
        name = criteria.split("?", 1)[0]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32] or "sub"
    return f"{slug}-{hashlib.sha256(criteria.encode()).hexdigest()[:8]}"


def header_line(name: str, secret: str) -> str:
    return f"{name}: Bearer {secret}" if name.lower() == "authorization" else f"{name}: {secret}"


def expected_header_value(name: str, secret: str) -> str:
    return header_line(name, secret).split(": ", 1)[1]


@dataclass(frozen=True)
class SubscriptionSpec:
    sid: str
    criteria: str
    endpoint: str
    payload: Payload
    header: str = field(repr=False)  # "Name: value" with the secret

    @property
    def backport(self) -> bool:
        return is_topic(self.criteria)

    def resource(self, status: str = "requested") -> dict[str, Any]:
        channel: dict[str, Any] = {"type": "rest-hook", "endpoint": self.endpoint, "header": [self.header]}
        sub: dict[str, Any] = {
            "resourceType": "Subscription",
            "status": status,
            "reason": REASON,
            "criteria": self.criteria,
            "channel": channel,
        }
        if self.backport:
            sub["meta"] = {"profile": [BACKPORT_PROFILE]}
            channel["payload"] = FHIR_JSON
            channel["_payload"] = {"extension": [{"url": EXT_PAYLOAD_CONTENT, "valueCode": self.payload}]}
        elif self.payload == "full-resource":
            channel["payload"] = FHIR_JSON
        return sub

    def differs(self, existing: Mapping[str, Any]) -> list[str]:
        """What must change on an existing Subscription (empty: nothing)."""
        want = self.resource()
        out = []
        if existing.get("criteria") != want["criteria"]:
            out.append("criteria")
        raw = existing.get("channel")
        ch: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        wch = want["channel"]
        if ch.get("type") != "rest-hook" or ch.get("endpoint") != wch["endpoint"]:
            out.append("endpoint")
        if (ch.get("payload") or None) != wch.get("payload"):
            out.append("payload")
        if self.backport and _content(ch) != self.payload:
            out.append("payload")
        if list(ch.get("header") or []) != wch["header"]:
            out.append("header")
        if existing.get("status") in ("off", "error"):
            out.append("status")
        return list(dict.fromkeys(out))


def _content(channel: Mapping[str, Any]) -> str | None:
    ext = (
        (channel.get("_payload") or {}).get("extension")
        if isinstance(channel.get("_payload"), dict)
        else None
    )
    for e in ext or []:
        if isinstance(e, dict) and e.get("url") == EXT_PAYLOAD_CONTENT:
            v = e.get("valueCode")
            return v if isinstance(v, str) else None
    return None


def build_specs(
    criteria: tuple[str, ...], public_url: str, payload: Payload, header_name: str, secret: str
) -> list[SubscriptionSpec]:
    """One spec per criteria; R4 criteria cannot carry ``id-only`` (that is a backport content type)."""
    out = []
    for c in dict.fromkeys(criteria):
        if not is_topic(c) and "?" not in c:
            raise ValueError(f"subscription criteria must be Type?params or a topic URL: {c!r}")
        if not is_topic(c) and payload == "id-only":
            raise ValueError("id-only payloads need topic-based (backport) subscriptions; use full-resource")
        sid = sid_for(c)
        out.append(
            SubscriptionSpec(
                sid=sid,
                criteria=c,
                endpoint=f"{public_url.rstrip('/')}{NOTIFY_PATH}/{sid}",
                payload=payload,
                header=header_line(header_name, secret),
            )
        )
    return out


def describe(existing: Mapping[str, Any]) -> dict[str, Any]:
    """What ``ptbill status`` shows of a Subscription on the EMR (never its header)."""
    err = existing.get("error")
    return {
        "id": existing.get("id"),
        "status": existing.get("status"),
        "criteria": existing.get("criteria"),
        "endpoint": (existing.get("channel") or {}).get("endpoint")
        if isinstance(existing.get("channel"), dict)
        else None,
        "error": " ".join(err.split())[:200] if isinstance(err, str) else None,
    }
