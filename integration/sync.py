"""Deciding and writing one encounter: the claim check in, the difference written back.

The reads of a sync run are in ``integration.fhir.queries`` (all FHIR searches), the claim-check shape in
``integration.claim``, the run and encounter orchestration in ``integration.runner``; their names are
re-exported here for the callers that imported them from this module.

Writing (per encounter): one transaction holding only what changed (conditional PUT by business
identifier), retirements of what is no longer suggested, and one Provenance. A ledger in Redis
remembers the digest of what was last written so an unchanged encounter costs no request at all.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from integration import __version__
from integration.claim import (  # noqa: F401  (re-exported)
    STAFF_TYPES,
    Group,
    attach_context,
    performer_context,
    ref_of,
    slim,
)
from integration.decide import decide
from integration.errors import OutputValidationError
from integration.fhir.client import FhirClient, parse_transaction_response
from integration.fhir.extract import extract_encounter
from integration.fhir.queries import (  # noqa: F401  (re-exported)
    ENCOUNTER_IDS_PER_QUERY,
    ENCOUNTER_INCLUDES,
    PAGE_INCLUDES,
    WITHDRAWN_STATUSES,
    ProcedureFetch,
    ReadStats,
    context_requests,
    fetch_context,
    fetch_encounter,
    groups_from_page,
    iso,
    iter_window,
    iter_withdrawn,
    own_suggestion,
    server_now,
    window_params,
    with_procedures,
)
from integration.fhir.writeback import (
    ENCOUNTER_TAG,
    IDENTIFIER_SYSTEM,
    Existing,
    Output,
    WriteMode,
    build_outputs,
    existing_from_bundle,
    plan_writes,
)
from integration.model import Decision, EncounterFacts
from integration.state import StateStore
from mappings.loader import Tables

log = logging.getLogger("ptbill.sync")

OUTPUT_TYPES = ("ChargeItem", "DetectedIssue", "Task")


# --- processing one encounter ------------------------------------------------------------------


@dataclass
class Outcome:
    encounter_id: str
    status: str = "processed"  # processed | unchanged | dry-run
    created: int = 0
    updated: int = 0
    retired: int = 0
    unchanged: int = 0
    kept_reviewed: int = 0
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


Validator = Callable[[dict[str, Any]], None]


def r4b_validator() -> Validator:
    """Validate what we write with fhir.resources R4B (structure and cardinality)."""
    from fhir.resources.R4B import get_fhir_model_class

    def validate(resource: dict[str, Any]) -> None:
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception as e:  # pydantic.ValidationError and friends
            raise OutputValidationError(
                f"{resource.get('resourceType')} built by ptbill is not valid R4: {str(e)[:400]}"
            ) from None

    return validate


def decide_group(group: Group, tables: Tables) -> tuple[EncounterFacts, Decision]:
    facts = extract_encounter(group.encounter, group.related)
    if facts.status in WITHDRAWN_STATUSES:
        return facts, Decision(
            facts.encounter_id, table_versions=tables.versions(), engine_version=__version__
        )
    return facts, decide(facts, tables)


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


def process_group(
    client: FhirClient,
    state: StateStore,
    tables: Tables,
    group: Group,
    *,
    validate: Validator | None = None,
    mode: WriteMode = "id",
) -> Outcome:
    """Decide one encounter and write the difference. Idempotent: safe to run again at any point."""
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
    if ledger is None and state.has_epoch():
        existing: dict[tuple[str, str], Existing] = {}
    else:
        existing = read_existing(
            client, facts.encounter_id, [o for o in desired if not o.encounter_owned], mode
        )
        outcome.requests += 1
    plan = plan_writes(facts, decision, desired, existing, mode=mode)
    outcome.unchanged = plan.unchanged
    outcome.kept_reviewed = len(plan.kept_reviewed)
    if plan.bundle is not None:
        if validate is not None:
            for e in plan.bundle["entry"]:
                validate(e["resource"])
        answer = client.transaction(plan.bundle, idempotent=True)
        outcome.requests += 1
        results = parse_transaction_response(answer)
        # entries: outputs..., retirements..., Provenance
        for r in results[: len(plan.written)]:
            if r.status == 201:
                outcome.created += 1
            else:
                outcome.updated += 1
        outcome.retired = len(plan.retired)
    state.set_ledger(
        facts.encounter_id,
        {"digest": dig, "at": iso(datetime.now(UTC)), "n": len(desired), "version": facts.version_id},
    )
    return outcome


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
        plan = plan_writes(facts, decision, desired, existing, recorded=recorded)
        if plan.bundle is None:
            continue
        entries.extend(plan.bundle["entry"])
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
