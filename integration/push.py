"""Push mode, the I/O part (no Celery): Subscriptions on the EMR, resolving what a notification names,
and the bookkeeping in Redis that makes notifications idempotent and bursts cheap.

Redis keys (``{p}`` = ``ptbill:{server_key}``, as in ``integration.state``):
  {p}:push:subs              hash sid -> JSON {id, criteria, endpoint, at}: what ``ptbill subscribe`` made
  {p}:push:pending:{what}    a scheduled resolution for an encounter/procedure (or a ping sync), with TTL:
                             later notifications for it are coalesced into the scheduled one
  {p}:push:events:{sub}      last backport event number seen (a gap triggers a catch-up sync)
  {p}:push:stats             hash of lifetime counters (received, dispatched, coalesced, rejected:...)
No key or value holds patient data: ids of Encounters/Procedures and counters only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from integration.cds.notifications import ref_parts
from integration.cds.subscriptions import SubscriptionSpec, describe
from integration.errors import FhirError, FhirFatalError, FhirNotFound
from integration.fhir.client import FhirClient, parse_transaction_response
from integration.state import StateStore, utcnow_iso
from integration.sync import WITHDRAWN_STATUSES

log = logging.getLogger("ptbill.push")

IDS_PER_QUERY = 50


@dataclass
class PushState:
    state: StateStore

    @property
    def _p(self) -> str:
        return f"{self.state.p}:push"

    # -- subscriptions made by `ptbill subscribe` ------------------------------------------------------
    def record_subscription(self, sid: str, sub_id: str, criteria: str, endpoint: str) -> None:
        value = {"id": sub_id, "criteria": criteria, "endpoint": endpoint, "at": utcnow_iso()}
        self.state.r.hset(f"{self._p}:subs", sid, json.dumps(value, sort_keys=True))

    def forget_subscription(self, sid: str) -> None:
        self.state.r.hdel(f"{self._p}:subs", sid)

    def subscriptions(self) -> dict[str, dict[str, Any]]:
        raw: dict[str, str] = self.state.r.hgetall(f"{self._p}:subs")  # type: ignore[assignment]
        return {k: json.loads(v) for k, v in raw.items()}

    # -- coalescing ---------------------------------------------------------------------------------------
    def pending_key(self, what: str) -> str:
        return f"{self._p}:pending:{what}"

    def claim(self, what: str, ttl: float) -> str | None:
        """The pending key when this caller schedules ``what`` (nobody else has it scheduled)."""
        key = self.pending_key(what)
        ok = self.state.r.set(key, utcnow_iso(), nx=True, px=max(1, int(ttl * 1000)))
        return key if ok else None

    def release(self, keys: Iterable[str]) -> None:
        keys = [k for k in keys if k.startswith(f"{self._p}:pending:")]
        if keys:
            self.state.r.delete(*keys)

    # -- backport event numbering ------------------------------------------------------------------------
    def missed_events(self, sub_id: str, numbers: Iterable[int], since: int | None) -> bool:
        """Record the newest backport event number seen for a Subscription; True when events between the
        last one seen and these never arrived (or a heartbeat counts more events than were received)."""
        key = f"{self._p}:events:{sub_id}"
        seen = sorted(set(numbers))
        candidates = [*seen, *([since] if since is not None else [])]
        if not candidates:
            return False
        raw = self.state.r.get(key)
        last = int(raw) if isinstance(raw, str) and raw.isdigit() else None
        newest = max(candidates)
        if last is None or newest > last:
            self.state.r.set(key, newest, ex=30 * 24 * 3600)
        if last is None:
            return False
        if seen:
            return seen[0] > last + 1
        return newest > last

    # -- counters ---------------------------------------------------------------------------------------
    def incr(self, counters: dict[str, int]) -> None:
        pipe = self.state.r.pipeline()
        for k, v in counters.items():
            if v:
                pipe.hincrby(f"{self._p}:stats", k, v)
        pipe.execute()

    def stats(self) -> dict[str, int]:
        raw: dict[str, str] = self.state.r.hgetall(f"{self._p}:stats")  # type: ignore[assignment]
        return {k: int(v) for k, v in sorted(raw.items())}


# --- Subscriptions on the EMR ------------------------------------------------------------------------


def find_subscriptions(client: FhirClient, endpoint: str) -> list[dict[str, Any]]:
    """ptbill's Subscriptions for one endpoint (R4 search parameter ``url`` = ``channel.endpoint``); the
    match is re-checked here, since servers differ in how they compare URIs."""
    found = []
    for e in client.search_entries("Subscription", [("url", endpoint)], max_pages=5):
        res = e.get("resource")
        if (
            isinstance(res, dict)
            and res.get("resourceType") == "Subscription"
            and isinstance(res.get("channel"), dict)
            and res["channel"].get("endpoint") == endpoint
        ):
            found.append(res)
    return found


def _write(client: FhirClient, method: str, url: str, resource: dict[str, Any] | None = None) -> str | None:
    """One create/update/delete through a one-entry transaction (the client's public write path); the
    logical id the server answered with (from ``response.location``)."""
    entry: dict[str, Any] = {"request": {"method": method, "url": url}}
    if resource is not None:
        entry["resource"] = resource
    answer = client.transaction(
        {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, idempotent=method != "POST"
    )
    results = parse_transaction_response(answer)
    ref = results[0].reference if results else None
    return ref.split("/", 1)[1] if ref else None


def ensure_subscriptions(
    client: FhirClient, specs: list[SubscriptionSpec], push: PushState, *, delete: bool = False
) -> list[dict[str, Any]]:
    """Create or update one Subscription per spec (idempotent), turn off the ones ptbill made earlier for
    criteria no longer configured, record what exists. ``delete``: remove them all instead."""
    report: list[dict[str, Any]] = []
    wanted = {s.sid for s in specs}
    for spec in specs:
        existing = find_subscriptions(client, spec.endpoint)
        if delete:
            for sub in existing:
                _write(client, "DELETE", f"Subscription/{sub['id']}")
            push.forget_subscription(spec.sid)
            report.append(
                {"sid": spec.sid, "criteria": spec.criteria, "action": "deleted", "n": len(existing)}
            )
            continue
        action = "unchanged"
        if not existing:
            sub_id = _write(client, "POST", "Subscription", spec.resource())
            action = "created"
        else:
            sub_id = str(existing[0]["id"])
            changes = spec.differs(existing[0])
            if changes:
                _write(client, "PUT", f"Subscription/{sub_id}", {**spec.resource(), "id": sub_id})
                action = "updated: " + ",".join(changes)
            for extra in existing[1:]:  # duplicates of ours (same endpoint): switch them off
                if extra.get("status") != "off":
                    _write(
                        client,
                        "PUT",
                        f"Subscription/{extra['id']}",
                        {**spec.resource("off"), "id": extra["id"]},
                    )
        if not sub_id:
            raise FhirFatalError("the server did not say where it stored the Subscription", method="POST")
        sub = client.read("Subscription", sub_id)
        push.record_subscription(spec.sid, sub_id, spec.criteria, spec.endpoint)
        report.append(
            {
                "sid": spec.sid,
                "criteria": spec.criteria,
                "endpoint": spec.endpoint,
                "action": action,
                **_state(sub),
            }
        )
    if not delete:
        for sid, rec in push.subscriptions().items():
            if sid in wanted:
                continue
            try:
                old = client.read("Subscription", str(rec["id"]))
            except FhirNotFound:
                push.forget_subscription(sid)
                continue
            if old.get("status") != "off":
                body = {k: v for k, v in old.items() if k not in ("meta", "text")}
                _write(client, "PUT", f"Subscription/{old['id']}", {**body, "status": "off"})
            push.forget_subscription(sid)
            report.append(
                {"sid": sid, "criteria": rec.get("criteria"), "action": "turned off (no longer configured)"}
            )
    return report


def _state(sub: dict[str, Any]) -> dict[str, Any]:
    d = describe(sub)
    return {"id": d["id"], "status": d["status"], **({"error": d["error"]} if d["error"] else {})}


def subscription_report(client: FhirClient | None, push: PushState) -> dict[str, Any]:
    """For ``ptbill status``: each recorded Subscription with its state on the EMR, and the counters."""
    subs = []
    for sid, rec in sorted(push.subscriptions().items()):
        row: dict[str, Any] = {
            "sid": sid,
            "id": rec.get("id"),
            "criteria": rec.get("criteria"),
            "since": rec.get("at"),
        }
        if client is not None:
            try:
                row.update(
                    {
                        k: v
                        for k, v in describe(client.read("Subscription", str(rec["id"]))).items()
                        if k != "id"
                    }
                )
            except FhirNotFound:
                row["status"] = "missing on the server"
            except FhirError as e:
                row["status"] = f"unknown (EMR answered {e.status or 'no response'})"
        subs.append(row)
    return {"subscriptions": subs, "counters": push.stats()}


def subscription_status(settings: Any, state: StateStore) -> dict[str, Any]:
    """``subscription_report`` with ptbill's own client from ``settings``, answering fast (a 5 s deadline
    per read, no retries) also when the EMR does not; no read at all when no Subscription is recorded."""
    from integration.runner import make_client

    push = PushState(state)
    if not push.subscriptions():
        return {"subscriptions": [], "counters": push.stats()}
    client = make_client(settings.model_copy(update={"http_timeout": min(settings.http_timeout, 5.0)}))
    client.retries = 0
    with client:
        return subscription_report(client, push)


def is_our_subscription(client: FhirClient, sub_id: str, endpoint: str) -> bool:
    """A backport notification names a Subscription ptbill did not record (e.g. Redis was reset): it is
    ours when the EMR has it with our endpoint for this path."""
    try:
        sub = client.read("Subscription", sub_id)
    except (FhirError, ValueError):
        return False
    ch = sub.get("channel")
    return isinstance(ch, dict) and ch.get("endpoint") == endpoint


# --- what a notification names -> encounters to process -----------------------------------------------


@dataclass
class Resolution:
    dispatch: list[str] = field(default_factory=list)  # encounter ids to process
    not_found: int = 0
    skipped_status: int = 0  # encounters in a status ptbill does not bill (e.g. in-progress by default)


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), IDS_PER_QUERY):
        yield ids[i : i + IDS_PER_QUERY]


def resolve(
    client: FhirClient, encounter_ids: Iterable[str], procedure_ids: Iterable[str], statuses: Iterable[str]
) -> Resolution:
    """The encounters to process now: those named, plus those of the procedures named (read by id), in a
    status the sync bills (``PTBILL_ENCOUNTER_STATUSES``) or withdrawn (so their suggestions are retired).
    Reads the current state, so a late or repeated notification cannot process a stale status."""
    out = Resolution()
    encounters = list(dict.fromkeys(encounter_ids))
    procs = list(dict.fromkeys(procedure_ids))
    for chunk in _chunks(procs):
        found = 0
        for e in client.search_entries(
            "Procedure", [("_id", ",".join(chunk)), ("_elements", "id,encounter")]
        ):
            res = e.get("resource")
            if not isinstance(res, dict) or res.get("resourceType") != "Procedure":
                continue
            found += 1
            ref = ref_parts(res.get("encounter"))
            if ref is not None and ref[0] == "Encounter" and ref[1] not in encounters:
                encounters.append(ref[1])
        out.not_found += max(0, len(chunk) - found)
    wanted = set(statuses) | set(WITHDRAWN_STATUSES)
    for chunk in _chunks(encounters):
        found = 0
        for e in client.search_entries("Encounter", [("_id", ",".join(chunk)), ("_elements", "id,status")]):
            res = e.get("resource")
            if not isinstance(res, dict) or res.get("resourceType") != "Encounter" or not res.get("id"):
                continue
            found += 1
            if res.get("status") in wanted:
                out.dispatch.append(str(res["id"]))
            else:
                out.skipped_status += 1
        out.not_found += max(0, len(chunk) - found)
    return out
