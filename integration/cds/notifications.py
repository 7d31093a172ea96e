"""Subscription notifications -> what to process: encounters, procedures to resolve, or a small sync.

Accepted shapes (after the caller has authenticated the request and bounded its size):

* R4 rest-hook with a payload: the resource itself, POSTed to the endpoint or PUT to
  ``{endpoint}/{type}/{id}`` (``path_type``/``path_id``, which must then match the body). A Procedure
  names its encounter; an Encounter is its own; a Procedure without a readable encounter reference is
  resolved later by id;
* R4 rest-hook without payload: an empty body (a "ping": something matching the criteria changed);
* Subscriptions backport (R4 ``Parameters`` or R4B/R5 ``SubscriptionStatus`` as the first entry of a
  ``history`` Bundle): ``handshake``, ``heartbeat`` and ``query-status`` carry no work;
  ``event-notification`` events name their ``focus`` (id-only or full-resource content), or nothing
  (empty content: a ping). ``events-since-subscription-start`` and event numbers let the caller notice
  missed events.

Anything else raises ``NotificationError`` with an HTTP status and an OperationOutcome issue code; the
message names no resource content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["resource", "ping", "handshake", "heartbeat", "event", "query-status"]
HANDLED_TYPES = ("Procedure", "Encounter")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


class NotificationError(Exception):
    """A notification that cannot be used: ``status`` (4xx), ``code`` (OperationOutcome issue code)."""

    def __init__(self, status: int, code: str, message: str):
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Notification:
    kind: Kind
    encounters: tuple[str, ...] = ()  # Encounter ids to process
    procedures: tuple[str, ...] = ()  # Procedure ids whose encounter must be looked up
    subscription: str | None = None  # Subscription id named by a backport notification
    topic: str | None = None
    events_since: int | None = None  # events-since-subscription-start (backport)
    event_numbers: tuple[int, ...] = ()
    ignored: int = 0  # events about resource types ptbill does not process

    @property
    def needs_sync(self) -> bool:
        """No resource named: a small incremental sync finds what changed."""
        return self.kind == "ping" or (
            self.kind == "event" and not self.encounters and not self.procedures and not self.ignored
        )


def ref_parts(ref: Any) -> tuple[str, str] | None:
    """(type, id) of a literal reference: relative, absolute, with or without ``_history``."""
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str) or not ref or ref.startswith(("#", "urn:")) or "?" in ref:
        return None
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not _TYPE.match(parts[-2]) or not _ID.match(parts[-1]):
        return None
    return parts[-2], parts[-1]


def _valid_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _ID.match(value) else None


def parse_notification(
    body: Any, *, path_type: str | None = None, path_id: str | None = None
) -> Notification:
    """Interpret a parsed JSON body (``None`` for an empty body)."""
    if path_type is not None or path_id is not None:
        if not (path_type and _TYPE.match(path_type) and _valid_id(path_id)):
            raise NotificationError(400, "invalid", "the notification path is not {type}/{id}")
        if body is None:
            return _from_resource({"resourceType": path_type, "id": path_id})
        if not isinstance(body, dict) or body.get("resourceType") != path_type or body.get("id") != path_id:
            raise NotificationError(400, "invalid", "the body is not the resource the path names")
    if body is None:
        return Notification("ping")
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise NotificationError(400, "structure", "the body is not a FHIR resource")
    if body["resourceType"] == "Bundle":
        return _from_bundle(body)
    return _from_resource(body)


def _from_resource(res: Mapping[str, Any]) -> Notification:
    rtype = res.get("resourceType")
    rid = _valid_id(res.get("id"))
    if rtype not in HANDLED_TYPES:
        raise NotificationError(
            422, "not-supported", f"ptbill processes Procedure and Encounter notifications, not {rtype}"
        )
    if rid is None:
        raise NotificationError(400, "required", f"the {rtype} has no valid id")
    if rtype == "Encounter":
        return Notification("resource", encounters=(rid,))
    enc = ref_parts(res.get("encounter"))
    if enc is not None and enc[0] == "Encounter":
        return Notification("resource", encounters=(enc[1],))
    return Notification("resource", procedures=(rid,))


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _value(part: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if n in part:
            return part[n]
    return None


_PARAM_NAMES = {
    "notificationEvent": "notification-event",
    "eventsSinceSubscriptionStart": "events-since-subscription-start",
    "eventNumber": "event-number",
}


def _norm(name: Any) -> str:
    return _PARAM_NAMES.get(name, name) if isinstance(name, str) else ""


def _from_bundle(bundle: Mapping[str, Any]) -> Notification:
    entries = bundle.get("entry")
    if bundle.get("type") != "history" or not isinstance(entries, list) or not entries:
        raise NotificationError(
            422, "not-supported", "a notification Bundle must be a backport history Bundle with a status"
        )
    first = entries[0].get("resource") if isinstance(entries[0], dict) else None
    if not isinstance(first, dict):
        raise NotificationError(400, "structure", "the notification Bundle has no status entry")
    status: dict[str, Any]
    if first.get("resourceType") == "Parameters":
        status = _from_parameters(first)
    elif first.get("resourceType") == "SubscriptionStatus":
        status = {
            "type": first.get("type"),
            "subscription": first.get("subscription"),
            "topic": first.get("topic"),
            "since": _int(first.get("eventsSinceSubscriptionStart")),
            "events": [
                {"number": _int(e.get("eventNumber")), "focus": e.get("focus")}
                for e in first.get("notificationEvent") or []
                if isinstance(e, dict)
            ],
        }
    else:
        raise NotificationError(
            422, "not-supported", "the first entry is neither Parameters nor SubscriptionStatus"
        )
    ntype = status.get("type")
    if ntype not in ("handshake", "heartbeat", "event-notification", "query-status", "query-event"):
        raise NotificationError(400, "value", "unknown notification type")
    sub = ref_parts(status.get("subscription"))
    if sub is None or sub[0] != "Subscription":
        raise NotificationError(400, "required", "the notification names no Subscription")
    topic = status.get("topic") if isinstance(status.get("topic"), str) else None
    since = status.get("since")
    if ntype in ("handshake", "heartbeat", "query-status", "query-event"):
        kind: Kind = (
            "handshake" if ntype == "handshake" else "heartbeat" if ntype == "heartbeat" else "query-status"
        )
        return Notification(kind, subscription=sub[1], topic=topic, events_since=since)
    # full-resource content: the resources follow the status entry
    included: dict[tuple[str, str], Mapping[str, Any]] = {}
    for e in entries[1:]:
        res = e.get("resource") if isinstance(e, dict) else None
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str) and _valid_id(res.get("id")):
            included[(res["resourceType"], res["id"])] = res
    encounters: list[str] = []
    procedures: list[str] = []
    numbers: list[int] = []
    ignored = 0
    for ev in status.get("events") or []:
        n = ev.get("number")
        if isinstance(n, int):
            numbers.append(n)
        focus = ref_parts(ev.get("focus"))
        if focus is None:
            continue
        if focus[0] not in HANDLED_TYPES:
            ignored += 1
            continue
        res = included.get(focus) or {"resourceType": focus[0], "id": focus[1]}
        one = _from_resource(res)
        encounters.extend(one.encounters)
        procedures.extend(one.procedures)
    return Notification(
        "event",
        encounters=tuple(dict.fromkeys(encounters)),
        procedures=tuple(dict.fromkeys(procedures)),
        subscription=sub[1],
        topic=topic,
        events_since=since,
        event_numbers=tuple(numbers),
        ignored=ignored,
    )


def _from_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"events": []}
    for p in params.get("parameter") or []:
        if not isinstance(p, dict):
            continue
        name = _norm(p.get("name"))
        if name == "type":
            out["type"] = _value(p, "valueCode", "valueString")
        elif name == "subscription":
            out["subscription"] = p.get("valueReference")
        elif name == "topic":
            out["topic"] = _value(p, "valueCanonical", "valueUri", "valueString")
        elif name == "events-since-subscription-start":
            out["since"] = _int(
                _value(p, "valueString", "valueInteger", "valueInteger64", "valueUnsignedInt")
            )
        elif name == "notification-event":
            ev: dict[str, Any] = {}
            for part in p.get("part") or []:
                if not isinstance(part, dict):
                    continue
                pname = _norm(part.get("name"))
                if pname == "event-number":
                    ev["number"] = _int(_value(part, "valueString", "valueInteger", "valueInteger64"))
                elif pname == "focus":
                    ev["focus"] = part.get("valueReference")
            out["events"].append(ev)
    return out
