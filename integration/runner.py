"""One sync run and one encounter, with the state bookkeeping, independent of Celery.

``tasks/`` wraps these in Celery tasks (routing, retries, acks); ``ptbill sync --inline`` calls them
in-process. Both take the same path, so they make the same decisions and the same writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from integration.budget import budget_from_settings
from integration.budget import install as install_budget
from integration.claim import STAFF_TYPES, Group, attach_context, performer_context, slim
from integration.errors import ConfigError, InputError, LockBusy, PtbillError, reason
from integration.fhir.auth import auth_from_settings
from integration.fhir.capabilities import (
    ServerCapabilities,
    change_detection,
    read_capabilities,
    read_problems,
    refusal,
    warnings,
)
from integration.fhir.client import FhirClient
from integration.fhir.queries import (
    ChangeReads,
    ReadStats,
    changed_procedures,
    context_requests,
    emr_changes,
    fetch_context,
    fetch_encounter,
    fix_window,
    iter_window,
    iter_withdrawn,
    server_now,
)
from integration.fhir.write_strategy import WriteStrategy, choose_strategy, documented_limits
from integration.fhir.writeback import PTBILL_TAG
from integration.pipeline import Outcome, process_group
from integration.settings import Settings
from integration.state import RunInfo, StateStore
from integration.sync import Validator, r4b_validator
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


class ServerUnsupported(PtbillError):
    """The FHIR server's CapabilityStatement lacks what ptbill needs: one message naming all of it."""


CAPABILITIES_TTL = 600.0  # seconds a worker keeps the server's CapabilityStatement


@dataclass(frozen=True)
class ServerCheck:
    """What ``/metadata`` said, read once per ``CAPABILITIES_TTL``: the write strategy chosen, what is
    missing (empty: ptbill can run), what ptbill does without, and the EMR changes it can follow."""

    capabilities: ServerCapabilities
    strategy: str
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    changes: ChangeReads
    write: WriteStrategy = field(default_factory=WriteStrategy)


def assess(caps: ServerCapabilities, s: Settings, statement: dict[str, Any] | None = None) -> ServerCheck:
    """Reads (``check_server``: searches, paging, change detection) and writes (``choose_strategy``: how
    this server is written to) judged on one CapabilityStatement; the write strategy is the writers'."""
    problems = list(read_problems(caps, s.procedure_fetch))
    write = WriteStrategy()
    try:
        write = choose_strategy(
            caps,
            s.write_mode,
            max_entries=s.transaction_max_entries,
            documented=documented_limits(statement or {}),
        )
    except ConfigError as e:
        problems.append(str(e))
    found = change_detection(caps)
    reads = ChangeReads(found["deletions"], found["moves"], s.context_lookback_days)
    return ServerCheck(caps, write.mode, tuple(problems), tuple(warnings(caps)), reads, write)


def server_verdict(statement: dict[str, Any], s: Settings) -> tuple[bool, str, str]:
    """``(ok, detail, fix)`` of a CapabilityStatement for ``ptbill doctor``: the strategy and what ptbill
    does without, or the one refusal message."""
    check = assess(read_capabilities(statement), s, statement)
    if check.problems:
        return (
            False,
            refusal(s.fhir_base_url, check.strategy, list(check.problems)),
            "use an EMR endpoint that supports these (README: What an EMR must support), or another "
            "PTBILL_WRITE_MODE",
        )
    notes = f"; {'; '.join(check.warnings)}" if check.warnings else ""
    return True, f"ptbill's reads and {check.strategy!r} writes are supported{notes}", ""


@dataclass
class Runtime:
    settings: Settings
    _checked: tuple[float, ServerCheck] | None = None

    @cached_property
    def client(self) -> FhirClient:
        return make_client(self.settings)

    @cached_property
    def state(self) -> StateStore:
        return StateStore.from_url(
            self.settings.redis_url,
            self.settings.server_key,
            dead_letter_ttl=self.settings.dead_letter_days * 86400,
        )

    @cached_property
    def tables(self) -> Tables:
        return load_settings_tables(self.settings)

    @cached_property
    def validate(self) -> Validator:
        return r4b_validator()

    def server_check(self, *, fresh: bool = False) -> ServerCheck:
        """The server's capabilities against ptbill's needs (``GET [base]/metadata``, cached a while)."""
        now = time.monotonic()
        if fresh or self._checked is None or now - self._checked[0] > CAPABILITIES_TTL:
            statement = self.client.capabilities()
            check = assess(read_capabilities(statement), self.settings, statement)
            self._checked = (now, check)
        return self._checked[1]

    def require_server(self) -> ServerCheck:
        """:meth:`server_check`, refusing (ServerUnsupported, one message) when something is missing."""
        check = self.server_check()
        if check.problems:
            raise ServerUnsupported(refusal(self.client.base_url, check.strategy, list(check.problems)))
        return check

    @property
    def write_strategy(self) -> WriteStrategy:
        """How this server is written to (PTBILL_WRITE_MODE and its CapabilityStatement)."""
        return self.require_server().write


Dispatch = Callable[[str, str], None]  # (encounter_id, run_id)


def begin_run(
    rt: Runtime, run_id: str | None, since: str | None, until: str | None, backfill: bool
) -> RunInfo | None:
    """Check the server, fix the window and take the server's sync lock. None when another run holds it.

    The window ends at the server's clock (minus the lag), never ours, and a requested ``until`` past it
    is clamped; a window whose ``since`` is after its ``until`` is refused (InputError).
    """
    st = rt.state
    if run_id:
        info = st.run(run_id)
        if info and st.sync_lock_holder() == run_id:  # a retry of the same run
            return RunInfo(run_id, info["since"], info["until"])
    check = rt.require_server()
    since = since if since is not None else st.watermark() or rt.settings.initial_since
    since, until = fix_window(since, until, server_now(rt.client), rt.settings.clock_lag_seconds)
    st_run = st.start_run(since, until) if run_id is None else st.start_named_run(run_id, since, until)
    if not st.acquire_sync_lock(st_run.run_id, rt.settings.lock_timeout):
        log.warning(
            "sync already running for this server; not starting another", extra={"run_id": st_run.run_id}
        )
        st.set_run_fields(st_run.run_id, {"status": "skipped-locked"})
        return None
    marks: dict[str, str | int] = {"write_strategy": check.strategy, "write_detail": check.write.describe()}
    if backfill:
        marks["backfill"] = 1
    elif since <= rt.settings.initial_since:
        marks["full"] = 1
    st.set_run_fields(st_run.run_id, marks)
    if not st.has_epoch() and st.watermark() is None and not _server_has_ptbill_output(rt.client):
        # a clean server: nothing written before, so a missing ledger entry means "never written"
        st.set_epoch()
    return st_run


def _server_has_ptbill_output(client: FhirClient) -> bool:
    b = client.get("Provenance", [("_tag", f"{PTBILL_TAG}|ptbill"), ("_summary", "count")])
    total = b.get("total")
    return not (isinstance(total, int) and total == 0)


def run_limits(s: Settings) -> ReadStats:
    """Counters of one run's reads, bounded by PTBILL_MAX_PAGES and PTBILL_SYNC_DEADLINE."""
    return ReadStats(max_pages=s.max_pages, deadline=time.monotonic() + s.sync_deadline_seconds)


def page_run(rt: Runtime, run: RunInfo, dispatch: Dispatch) -> ReadStats:
    """Page the window; stash each encounter (claim check), mark it pending, dispatch it.

    On an incremental run, encounters touched by EMR changes the window's Encounters do not show (a
    Procedure deleted or moved away, the patient's Coverage or EpisodeOfCare updated) are re-run too.
    Past the run's page cap or deadline this raises ``RunLimitExceeded``: the caller fails the run.
    """
    st, client, s = rt.state, rt.client, rt.settings
    stats = run_limits(s)
    known: set[str] = set()
    before = client.stats.snapshot().get("requests", 0)
    t0 = time.perf_counter()
    staff: dict[str, dict[str, Any]] = {}  # performers' Practitioner/PractitionerRole fetched in this run
    procedures = list(changed_procedures(client, run.since, run.until, stats))
    also: list[str] = []
    if run.since > s.initial_since:  # a first (full) run reads every encounter anyway
        also = emr_changes(
            client, run.since, run.until, s.encounter_statuses, stats, rt.server_check().changes, procedures
        )
    for groups in iter_window(
        client,
        run.since,
        run.until,
        s.encounter_statuses,
        stats,
        s.procedure_fetch,
        procedures=procedures,
        also=also,
    ):
        # Patient context (Coverages, prior ChargeItems) is fetched per page: one patient's encounters
        # may sit on several pages and every group must carry its own. Performers are fetched once per
        # run and reused on later pages (without them discipline and PT/PTA roles are unknown).
        known = {k for k in known if k.startswith("perf:")}
        reqs = context_requests(groups, known)
        context = fetch_context(client, reqs, stats) if reqs else {}
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
        found = fetch_encounter(client, eid, stats)
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
    st.incr_many(
        run.run_id,
        {
            "fhir_read_requests": reads,
            "pages": stats.pages,
            "bundle_problems": len(stats.problems),
            **{f"rerun:{k}": v for k, v in stats.changes.items()},
        },
    )
    st.set_run_fields(run.run_id, {"paging_ms": int((time.perf_counter() - t0) * 1000)})
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


def run_encounter(
    rt: Runtime,
    encounter_id: str,
    run_id: str | None,
    *,
    attempt: int = 1,
    will_retry: Callable[[BaseException], bool] = lambda exc: False,
) -> tuple[Outcome | None, BaseException | None]:
    """Process one encounter, then book it: the one sequence the Celery task, ``ptbill sync --inline``
    and ``ptbill retry-failed`` share.

    Done: ``(outcome, None)`` after :func:`finish_ok`. Failed: the error is re-raised when
    ``will_retry(error)`` says the caller retries it (nothing booked), else the encounter is dead-lettered
    (:func:`finish_failed`, never stopping the batch) and ``(None, error)`` returned.
    """
    try:
        outcome = process_one(rt, encounter_id, run_id)
    except Exception as exc:
        if will_retry(exc):
            raise
        finish_failed(rt, run_id, encounter_id, failure_reason(exc), attempt)
        return None, exc
    finish_ok(rt, run_id, encounter_id, outcome)
    return outcome, None


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
    """A PHI-free reason (``integration.errors.reason``): method, URL without query, HTTP status, kind."""
    return reason(exc)
