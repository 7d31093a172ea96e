"""Decide one encounter and write the difference: the decide-and-write pipeline of a sync.

``process_group`` is idempotent and safe to run again at any point (the task, ``sync --inline`` and
``retry-failed`` all call it through ``integration.runner.process_one``):

1. decide (``integration.sync.decide_group``) and build the resources that should exist;
2. unchanged since the last write (ledger digest in Redis): nothing is read or written;
3. read what ptbill has on the server for the encounter (one batch), unless the ledger is known complete
   and has no entry for it (nothing was ever written) and the server honours If-Match;
4. plan (``integration.fhir.writeback.plan_writes``): what to create, update (If-Match), retire, and
   what a person changed (left alone; a DetectedIssue where ptbill's suggestion now differs);
5. write in the Bundles the server accepts (``integration.fhir.write_strategy``), one Provenance (POST)
   per change;
6. on a version conflict (412), a partly processed batch, or a write whose outcome is unknown (a 5xx or a
   timeout after sending): read back, decide again, write what is still missing. Nothing is ever written
   twice (conditional creates, If-Match, a tagged Provenance with If-None-Exist) and nothing is written
   blind;
7. remember the digest. The ledger is marked "writing" before the first write, so a retry after a crash
   or an unknown outcome always reads back first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from integration.errors import FhirConflict, FhirFatalError, FhirTemporaryError, OutputValidationError
from integration.fhir.capabilities import read_capabilities
from integration.fhir.client import EntryResult, FhirClient, parse_transaction_response
from integration.fhir.write_strategy import WriteStrategy, choose_strategy, documented_limits, fits, steps
from integration.fhir.writeback import (
    ENCOUNTER_TAG,
    IDENTIFIER_SYSTEM,
    Existing,
    Output,
    Plan,
    Write,
    WriteMode,
    build_outputs,
    build_transaction,
    existing_from_bundle,
    plan_writes,
    provenance_entry,
    resolve_refs,
    write_entry,
)
from integration.model import Decision, EncounterFacts
from integration.settings import Settings
from integration.state import StateStore
from integration.sync import Group, decide_group
from mappings.loader import Tables

log = logging.getLogger("ptbill.pipeline")

OUTPUT_TYPES = ("ChargeItem", "DetectedIssue", "Task")
MAX_ROUNDS = 4  # write, then at most three read-back-and-decide-again rounds
Validator = Callable[[dict[str, Any]], None]


@dataclass
class Outcome:
    encounter_id: str
    status: str = "processed"  # processed | unchanged | dry-run
    created: int = 0
    updated: int = 0
    retired: int = 0
    unchanged: int = 0
    kept_reviewed: int = 0
    review_differs: int = 0
    conflicts: int = 0
    lines: int = 0
    units: int = 0
    findings: int = 0
    actions: int = 0
    flags: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    input_problems: int = 0
    requests: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    modifiers: dict[str, int] = field(default_factory=dict)

    def counters(self) -> dict[str, int]:
        c = {
            "encounters": 1,
            "created": self.created,
            "updated": self.updated,
            "retired": self.retired,
            "unchanged_resources": self.unchanged,
            "kept_reviewed": self.kept_reviewed,
            "review_differs": self.review_differs,
            "write_conflicts": self.conflicts,
            "lines": self.lines,
            "units": self.units,
            "findings": self.findings,
            "actions": self.actions,
            "flags": self.flags,
            "input_problems": self.input_problems,
            "fhir_write_requests": self.requests,
        }
        for k, v in self.skipped.items():
            c[f"skipped:{k}"] = v
        for k, v in self.codes.items():
            c[f"units:{k}"] = v
        for k, v in self.modifiers.items():
            c[f"modifier:{k}"] = v
        return c


def summarize(outcome: Outcome, facts: EncounterFacts, decision: Decision) -> None:
    outcome.lines = len(decision.lines)
    outcome.units = sum(ln.units for ln in decision.lines)
    outcome.findings = len(decision.findings)
    outcome.actions = len(decision.actions)
    outcome.flags = len(decision.flags)
    outcome.input_problems = len(facts.input_problems)
    for s in decision.skipped:
        outcome.skipped[s.reason] = outcome.skipped.get(s.reason, 0) + 1
    for ln in decision.lines:
        outcome.codes[ln.code] = outcome.codes.get(ln.code, 0) + ln.units
        for m in ln.modifiers:
            outcome.modifiers[m.code] = outcome.modifiers.get(m.code, 0) + 1


def digest(outputs: list[Output]) -> str:
    h = hashlib.sha256()
    for o in sorted(outputs, key=lambda o: (o.resource_type, o.identifier)):
        h.update(f"{o.resource_type}|{o.identifier}|{o.content_hash};".encode())
    return h.hexdigest()[:24]


def read_existing(
    client: FhirClient, encounter_id: str, flags: list[Output], mode: WriteMode = "id"
) -> dict[tuple[str, str], Existing]:
    """One batch: every ptbill resource tagged with this encounter, and the patient Flags we may write."""
    tag = quote(f"{ENCOUNTER_TAG}|{encounter_id}", safe="")
    entries = [{"request": {"method": "GET", "url": f"{t}?_tag={tag}&_count=500"}} for t in OUTPUT_TYPES]
    for f in flags:
        url = f"Flag?_id={f.resource_id}" if mode == "id" else f.conditional_url
        entries.append({"request": {"method": "GET", "url": url}})
    answer = client.batch({"resourceType": "Bundle", "type": "batch", "entry": entries}, idempotent=True)
    found: list[dict[str, Any]] = []
    for entry, result in zip(answer.get("entry") or [], parse_transaction_response(answer), strict=False):
        if not result.ok:
            raise OutputValidationError(f"could not read existing ptbill resources (status {result.status})")
        res = entry.get("resource") or {}
        for e in res.get("entry") or []:
            r = e.get("resource") if isinstance(e, dict) else None
            if isinstance(r, dict):
                found.append(r)
    return existing_from_bundle(found)


def strategy_for_server(client: FhirClient, settings: Settings) -> WriteStrategy:
    """Read the server's CapabilityStatement and choose how to write to it (ConfigError when it cannot
    take ptbill's writes, naming what is missing)."""
    statement = client.capabilities()
    strategy = choose_strategy(
        read_capabilities(statement),
        settings.write_mode,
        max_entries=settings.transaction_max_entries,
        documented=documented_limits(statement),
    )
    log.info("write strategy: %s", strategy.describe())
    return strategy


# --- writing a plan ---------------------------------------------------------------------------------


@dataclass
class Written:
    """What one round of writing achieved."""

    done: list[Write] = field(default_factory=list)
    complete: bool = True  # every write of the plan landed as planned
    conflict: bool = False  # a version conflict (412/409): someone wrote in between
    requests: int = 0


def _post(client: FhirClient, bundle: dict[str, Any], strategy: WriteStrategy) -> dict[str, Any]:
    """A transaction (atomic servers) or a batch. Never retried blindly by the client: a write whose
    outcome is unknown comes back as FhirTemporaryError and the pipeline reads back first."""
    if strategy.atomic:
        return client.transaction(bundle, idempotent=False)
    return client.batch({**bundle, "type": "batch"}, idempotent=False)


def _landed(w: Write, r: EntryResult, strategy: WriteStrategy) -> bool:
    """The entry wrote ``w``: a 2xx, except a conditional create that found an existing match (200)."""
    if not r.ok:
        return False
    return not (w.kind == "create" and strategy.mode == "conditional" and r.status == 200)


def write_plan(
    client: FhirClient,
    facts: EncounterFacts,
    decision: Decision,
    plan: Plan,
    strategy: WriteStrategy,
    validate: Validator | None = None,
) -> Written:
    """Write ``plan`` in the Bundles the server accepts, then (if not already in the one transaction) one
    Provenance for what landed. Stops at the first Bundle that did not fully land."""
    out = Written()
    known = dict(plan.charge_refs or {})
    landed_refs: dict[str, str] = {}
    batches = steps(plan.writes, strategy, known)
    provenance_done = False
    failure: FhirFatalError | None = None
    for step in batches:
        same = [w.identifier for w in step if w.kind == "create"] if strategy.atomic else []
        entries = [
            write_entry(
                w,
                resolve_refs(w, known, same),
                mode=strategy.mode,
                versioned=strategy.versioned,
                conditional_create=strategy.conditional_create,
            )
            for w in step
        ]
        with_provenance = strategy.atomic and len(batches) == 1 and fits(step, strategy, extra_conditional=1)
        if with_provenance:
            entries.append(
                provenance_entry(facts, decision, step, same, conditional_create=strategy.conditional_create)
            )
        if validate is not None:
            for e in entries:
                validate(e["resource"])
        try:
            out.requests += 1
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            answer = _post(client, bundle, strategy)
        except FhirConflict:
            out.complete, out.conflict = False, True  # atomic: nothing of this Bundle was kept
            break
        except FhirTemporaryError:
            out.complete = False  # outcome unknown: the caller reads back before anything else
            raise
        results = parse_transaction_response(answer)
        for w, r in zip(step, results, strict=False):
            ref = r.reference or (f"{w.resource_type}/{w.id}" if w.id else None)
            if _landed(w, r, strategy):
                out.done.append(w)
                if ref:
                    landed_refs[w.identifier] = ref
                    if w.resource_type == "ChargeItem":
                        known[w.identifier] = ref
                continue
            out.complete = False
            if r.status in (409, 412):
                out.conflict = True
            elif not r.ok and failure is None:
                failure = FhirFatalError(
                    f"{w.resource_type} write failed: HTTP {r.status or '?'}"
                    + (f": {r.outcome}" if r.outcome else ""),
                    status=r.status or None,
                    method="POST",
                    url=client.base_url,
                    outcome=r.outcome,
                )
        if len(results) < len(step):
            out.complete = False
        provenance_done = with_provenance
        if not out.complete:
            break
    if out.done and not provenance_done:
        entry = provenance_entry(
            facts, decision, out.done, conditional_create=strategy.conditional_create, results=landed_refs
        )
        if validate is not None:
            validate(entry["resource"])
        out.requests += 1
        _post(client, {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, strategy)
    if failure is not None:
        raise failure
    return out


# --- one encounter ------------------------------------------------------------------------------------


def process_group(
    client: FhirClient,
    state: StateStore,
    tables: Tables,
    group: Group,
    *,
    validate: Validator | None = None,
    mode: WriteMode | None = None,
    strategy: WriteStrategy | None = None,
) -> Outcome:
    """Decide one encounter and write the difference. Idempotent: safe to run again at any point."""
    strategy = strategy or WriteStrategy(mode=mode or "id")
    facts, decision = decide_group(group, tables)
    outcome = Outcome(facts.encounter_id)
    summarize(outcome, facts, decision)
    desired = build_outputs(facts, decision)
    dig = digest(desired)
    ledger = state.ledger(facts.encounter_id)
    if ledger is not None and ledger.get("digest") == dig:
        outcome.status = "unchanged"
        outcome.unchanged = len(desired)
        return outcome
    flags = [o for o in desired if not o.encounter_owned]

    def read() -> dict[tuple[str, str], Existing]:
        outcome.requests += 1
        return read_existing(client, facts.encounter_id, flags, strategy.mode)

    # Skipping the read is safe only when the ledger is complete (nothing written for this encounter,
    # ever) and every write is guarded by the server (If-Match); otherwise read back right before writing.
    existing = {} if ledger is None and state.has_epoch() and strategy.versioned else read()
    marked = False
    for attempt in range(MAX_ROUNDS):
        plan = plan_writes(facts, decision, desired, existing, mode=strategy.mode)
        if attempt == 0:
            outcome.unchanged = plan.unchanged
        outcome.kept_reviewed = len(plan.kept_reviewed)
        outcome.review_differs = len(plan.differs)
        if plan.empty:
            break
        if not marked:
            state.mark_writing(facts.encounter_id)
            marked = True
        try:
            written = write_plan(client, facts, decision, plan, strategy, validate)
        except FhirTemporaryError:
            if attempt == MAX_ROUNDS - 1:
                raise
            log.warning(
                "write outcome unknown; reading back before writing again",
                extra={"encounter_id": facts.encounter_id},
            )
            existing = read()
            continue
        outcome.requests += written.requests
        for w in written.done:
            if w.kind == "create":
                outcome.created += 1
            elif w.kind == "update":
                outcome.updated += 1
            else:
                outcome.retired += 1
        if written.complete:
            break
        if written.conflict:
            outcome.conflicts += 1
            log.info(
                "version conflict: someone changed a resource meanwhile; reading back and deciding again",
                extra={"encounter_id": facts.encounter_id},
            )
        existing = read()
    else:
        raise FhirConflict(
            f"encounter {facts.encounter_id}: writes still conflicting after {MAX_ROUNDS} rounds",
            status=412,
        )
    if outcome.kept_reviewed:
        log.info(
            "left resources a person changed as they are",
            extra={
                "encounter_id": facts.encounter_id,
                "kept": outcome.kept_reviewed,
                "differs": outcome.review_differs,
            },
        )
    state.set_ledger(
        facts.encounter_id,
        {"digest": dig, "at": _iso_now(), "n": len(desired), "version": facts.version_id},
    )
    return outcome


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dry_run_bundle(groups: list[Group], tables: Tables, recorded: datetime | None = None) -> dict[str, Any]:
    """The transaction Bundle(s) ``process --bundle`` would write, merged into one, touching no server.

    ptbill resources already present in the input (e.g. exported from the EMR) count as existing, so the
    plan shows updates and retirements exactly as the live pipeline would.
    """
    entries: list[dict[str, Any]] = []
    for g in groups:
        facts, decision = decide_group(g, tables)
        desired = build_outputs(facts, decision)
        existing = existing_from_bundle(
            r
            for r in g.related.values()
            if any(
                isinstance(i, dict) and i.get("system") == IDENTIFIER_SYSTEM
                for i in (r.get("identifier") or [])
            )
            and any(
                isinstance(t, dict)
                and t.get("system") == ENCOUNTER_TAG
                and t.get("code") == facts.encounter_id
                for t in ((r.get("meta") or {}).get("tag") or [])
            )
        )
        plan = plan_writes(facts, decision, desired, existing)
        bundle = build_transaction(facts, decision, plan, recorded=recorded)
        if bundle is not None:
            entries.extend(bundle["entry"])
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
