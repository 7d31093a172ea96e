"""One sync run and one encounter, with the state bookkeeping, independent of Celery.

``tasks/`` wraps these in Celery tasks (routing, retries, acks); ``ptbill sync --inline`` calls them
in-process. Both take the same path, so they make the same decisions and the same writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from integration.budget import budget_from_settings
from integration.budget import install as install_budget
from integration.errors import InputError, LockBusy
from integration.fhir.auth import auth_from_settings
from integration.fhir.client import FhirClient
from integration.fhir.write_strategy import WriteStrategy
from integration.fhir.writeback import PTBILL_TAG
from integration.pipeline import Outcome, process_group, strategy_for_server
from integration.settings import Settings
from integration.state import RunInfo, StateStore
from integration.sync import (
    STAFF_TYPES,
    Group,
    ReadStats,
    Validator,
    attach_context,
    context_requests,
    fetch_context,
    fetch_encounter,
    iso,
    iter_window,
    iter_withdrawn,
    performer_context,
    r4b_validator,
    server_now,
    slim,
)
from mappings.loader import Tables, default_tables, load_tables

log = logging.getLogger("ptbill.runner")

ENCOUNTER_LOCK_TTL = 30  # seconds; renewed while the encounter is processed


def make_client(s: Settings) -> FhirClient:
    auth = None
    if s.auth_type == "basic":
        auth = auth_from_settings("basic", user=s.auth_user, password=s.auth_password)
    elif s.auth_type == "bearer":
        auth = auth_from_settings("bearer", token=s.auth_token)
    elif s.auth_type == "smart":
        auth = auth_from_settings(
            "smart",
            client_id=s.smart_client_id,
            private_key_pem=(s.smart_private_key or "").encode(),
            kid=s.smart_kid,
            alg=s.smart_alg,
            scope=s.smart_scope,
            token_url=s.smart_token_url,
        )
    client = FhirClient(
        s.fhir_base_url,
        auth=auth,
        timeout=s.http_timeout,
        verify=(s.ca_bundle or True) if s.tls_verify else False,
        page_size=s.page_size,
        max_response_bytes=s.max_response_bytes,
    )
    budget = budget_from_settings(s)  # PTBILL_FHIR_REQUEST_BUDGET: one budget for all processes
    if budget is not None:
        install_budget(client._session, client.base_url, budget)
    return client


def load_settings_tables(s: Settings) -> Tables:
    return load_tables(s.mappings_dir) if s.mappings_dir else default_tables()


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def client(self) -> FhirClient:
        return make_client(self.settings)

    @cached_property
    def state(self) -> StateStore:
        return StateStore.from_url(self.settings.redis_url, self.settings.server_key)

    @cached_property
    def tables(self) -> Tables:
        return load_settings_tables(self.settings)

    @cached_property
    def validate(self) -> Validator:
        return r4b_validator()

    @cached_property
    def write_strategy(self) -> WriteStrategy:
        """How this server is written to (PTBILL_WRITE_MODE and its CapabilityStatement), once per process."""
        return strategy_for_server(self.client, self.settings)


Dispatch = Callable[[str, str], None]  # (encounter_id, run_id)


def begin_run(
    rt: Runtime, run_id: str | None, since: str | None, until: str | None, backfill: bool
) -> RunInfo | None:
    """Fix the window and take the server's sync lock. None when another run holds it."""
    st = rt.state
    if run_id:
        info = st.run(run_id)
        if info and st.sync_lock_holder() == run_id:  # a retry of the same run
            return RunInfo(run_id, info["since"], info["until"])
    if since is None:
        since = st.watermark() or rt.settings.initial_since
    if until is None:
        until = iso(server_now(rt.client) - timedelta(seconds=rt.settings.clock_lag_seconds))
    st_run = st.start_run(since, until) if run_id is None else _start_named(st, run_id, since, until)
    if not st.acquire_sync_lock(st_run.run_id, rt.settings.lock_timeout):
        log.warning(
            "sync already running for this server; not starting another", extra={"run_id": st_run.run_id}
        )
        st.r.hset(f"{st.p}:run:{st_run.run_id}", "status", "skipped-locked")
        return None
    if backfill:
        st.r.hset(f"{st.p}:run:{st_run.run_id}", "backfill", 1)
    elif since <= rt.settings.initial_since:
        st.r.hset(f"{st.p}:run:{st_run.run_id}", "full", 1)
    if not st.has_epoch() and st.watermark() is None and not _server_has_ptbill_output(rt.client):
        # a clean server: nothing written before, so a missing ledger entry means "never written"
        st.set_epoch()
    return st_run


def _server_has_ptbill_output(client: FhirClient) -> bool:
    b = client.get("Provenance", [("_tag", f"{PTBILL_TAG}|ptbill"), ("_summary", "count")])
    total = b.get("total")
    return not (isinstance(total, int) and total == 0)


def _start_named(st: StateStore, run_id: str, since: str, until: str) -> RunInfo:
    st.r.hset(
        f"{st.p}:run:{run_id}",
        mapping={
            "since": since,
            "until": until,
            "started": iso(datetime.now().astimezone()),
            "paging_done": 0,
        },
    )
    st.r.expire(f"{st.p}:run:{run_id}", 7 * 24 * 3600)
    return RunInfo(run_id, since, until)


def page_run(rt: Runtime, run: RunInfo, dispatch: Dispatch) -> ReadStats:
    """Page the window; stash each encounter (claim check), mark it pending, dispatch it."""
    st, client = rt.state, rt.client
    stats = ReadStats()
    known: set[str] = set()
    before = client.stats.snapshot().get("requests", 0)
    t0 = time.perf_counter()
    staff: dict[str, dict[str, Any]] = {}  # performers' Practitioner/PractitionerRole fetched in this run
    for groups in iter_window(
        client, run.since, run.until, rt.settings.encounter_statuses, stats, rt.settings.procedure_fetch
    ):
        # Patient context (Coverages, prior ChargeItems) is fetched per page: one patient's encounters
        # may sit on several pages and every group must carry its own. Performers are fetched once per
        # run and reused on later pages (without them discipline and PT/PTA roles are unknown).
        known = {k for k in known if k.startswith("perf:")}
        reqs = context_requests(groups, known)
        context = fetch_context(client, reqs) if reqs else {}
        if context:
            st.r.set(f"{st.p}:run:{run.run_id}:ctxpage:{len(known)}", "1", ex=60)  # liveness breadcrumb
        staff.update({k: r for k, r in context.items() if r.get("resourceType") in STAFF_TYPES})
        ready = [slim(attach_context(g, {**performer_context(g, staff), **context})) for g in groups]
        for g in ready:
            st.put_group(run.run_id, g.encounter_id, g.to_json())
        st.add_pending(run.run_id, [g.encounter_id for g in ready])
        st.incr(run.run_id, "dispatched", len(ready))
        for g in ready:
            dispatch(g.encounter_id, run.run_id)
    # Encounters withdrawn since ptbill wrote for them: fetch each (rare) so its suggestions are retired.
    withdrawn: list[str] = []
    for eid in iter_withdrawn(client, run.since, run.until, stats):
        if eid in withdrawn or (st.has_epoch() and st.ledger(eid) is None):
            continue  # ptbill never wrote anything for it
        found = fetch_encounter(client, eid)
        if found is None:
            continue
        withdrawn.append(eid)
        st.put_group(run.run_id, eid, slim(found).to_json())
    if withdrawn:
        st.add_pending(run.run_id, withdrawn)
        st.incr_many(run.run_id, {"withdrawn": len(withdrawn), "dispatched": len(withdrawn)})
        for eid in withdrawn:
            dispatch(eid, run.run_id)
    reads = client.stats.snapshot().get("requests", 0) - before
    st.incr(run.run_id, "fhir_read_requests", reads)
    st.incr(run.run_id, "pages", stats.pages)
    if stats.problems:
        st.incr(run.run_id, "bundle_problems", len(stats.problems))
    st.r.hset(f"{st.p}:run:{run.run_id}", "paging_ms", int((time.perf_counter() - t0) * 1000))
    st.set_paging_done(run.run_id)
    log.info(
        "paging done",
        extra={"run_id": run.run_id, "pages": stats.pages, "encounters": stats.encounters},
    )
    finalize(rt, run.run_id)
    return stats


def finalize(rt: Runtime, run_id: str) -> dict[str, str] | None:
    summary = rt.state.try_finalize(run_id)
    if summary is not None:
        rt.state.release_sync_lock(run_id)
        log.info("sync run finished", extra={"run_id": run_id, "status": summary.get("status")})
    return summary


def load_group(rt: Runtime, encounter_id: str, run_id: str | None) -> Group | None:
    raw = rt.state.get_group(run_id, encounter_id) if run_id else None
    if raw is not None:
        return Group.from_json(raw)
    g = fetch_encounter(rt.client, encounter_id)
    if g is None:
        return None
    reqs = context_requests([g], set())
    return attach_context(g, fetch_context(rt.client, reqs)) if reqs else g


def process_one(rt: Runtime, encounter_id: str, run_id: str | None) -> Outcome:
    """Decide and write one encounter under its lock. Raises on failure (the caller sorts retries)."""
    # kept alive while we work; a dead holder's lock lapses by the time its message is redelivered
    ttl = max(3, min(ENCOUNTER_LOCK_TTL, rt.settings.visibility_timeout))
    with rt.state.lock(f"enc:{encounter_id}", timeout=ttl, blocking_timeout=10, keepalive=True) as got:
        if not got:
            raise LockBusy(f"encounter {encounter_id} is being processed by another worker")
        group = load_group(rt, encounter_id, run_id)
        if group is None:
            raise InputError(
                "encounter not found on the server", resource_type="Encounter", resource_id=encounter_id
            )
        return process_group(
            rt.client, rt.state, rt.tables, group, validate=rt.validate, strategy=rt.write_strategy
        )


def finish_ok(rt: Runtime, run_id: str | None, encounter_id: str, outcome: Outcome) -> None:
    counters = outcome.counters()
    counters["processed" if outcome.status == "processed" else "unchanged"] = 1
    if rt.state.finish_encounter(run_id, encounter_id, counters, clear_dead_letter=True) and run_id:
        finalize(rt, run_id)


def finish_failed(rt: Runtime, run_id: str | None, encounter_id: str, reason: str, attempts: int) -> None:
    rt.state.dead_letter(encounter_id, reason, attempts, run_id)
    may_be_final = rt.state.finish_encounter(
        run_id, encounter_id, {"dead_lettered": 1}, clear_dead_letter=False
    )
    if may_be_final and run_id:
        finalize(rt, run_id)


def failure_reason(exc: BaseException) -> str:
    """A PHI-free reason: the class and ptbill's own message (never raw server bodies beyond outcome)."""
    summary = getattr(exc, "summary", None)
    if callable(summary):
        d: dict[str, Any] = summary()
        parts = [str(d.get("error")), f"status={d.get('status')}" if d.get("status") else ""]
        if d.get("outcome"):
            parts.append(str(d["outcome"])[:200])
        return " ".join(p for p in parts if p)
    if isinstance(exc, InputError):
        return f"InputError {exc.reason}"
    return type(exc).__name__ + (f": {exc}"[:200] if type(exc).__module__.startswith("integration") else "")
