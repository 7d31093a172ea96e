"""Sync orchestration without Celery: what to fetch, how to process one encounter, what to write.

The Celery tasks in ``tasks/`` are thin wrappers around these functions (serialization, routing,
retries); ``ptbill process --bundle`` and the tests call them directly.

Reading (per run, window ``(since, until]`` on the server's ``_lastUpdated``, ``until`` fixed at start):
  1. Encounters in the window with the wanted statuses, each page with its Procedures
     (``_revinclude=Procedure:encounter``), Patient and EpisodeOfCare (``_include``);
  2. Procedures updated in the window whose Encounter was not in (1) -> those Encounters by ``_id``;
  3. per page, one batch for the context not yet cached in this run: the patients' Coverages and
     prior ChargeItems, the performers' Practitioner and PractitionerRole resources;
  4. offset paging can skip an item when another one leaves the window while we page; the window's
     count is re-checked at the end and, when it shrank, the ids are listed again to catch up.

Writing (per encounter): one transaction holding only what changed (conditional PUT by business
identifier), retirements of what is no longer suggested, and one Provenance. A ledger in Redis
remembers the digest of what was last written so an unchanged encounter costs no request at all.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from integration import __version__
from integration.decide import decide
from integration.errors import InputError, OutputValidationError
from integration.fhir import extract as fhir_extract  # the patient's earlier visits (issue 8 §4)
from integration.fhir.client import FhirClient, parse_transaction_response
from integration.fhir.extract import extract_encounter, group_bundle, reference_key
from integration.fhir.writeback import (
    ENCOUNTER_TAG,
    IDENTIFIER_SYSTEM,
    OWN_STATUS,
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

ENCOUNTER_INCLUDES: list[tuple[str, str]] = [
    ("_revinclude", "Procedure:encounter"),
    ("_include", "Encounter:patient"),
    ("_include", "Encounter:episode-of-care"),
]
# Paging large windows: many servers evaluate _revinclude slowly on big pages (sekmet-fhir took 10-47 s per
# page at 20,000 Procedures, against 0.3 s for the same Procedures by encounter ids). "by-encounter" pages
# Encounters with their _includes only and fetches each page's Procedures with `Procedure?encounter=...`.
PAGE_INCLUDES: list[tuple[str, str]] = [p for p in ENCOUNTER_INCLUDES if p[0] != "_revinclude"]
ProcedureFetch = Literal["by-encounter", "revinclude"]
ENCOUNTER_IDS_PER_QUERY = 50
OUTPUT_TYPES = ("ChargeItem", "DetectedIssue", "Task")


# --- time window ------------------------------------------------------------------------------


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def server_now(client: FhirClient) -> datetime:
    """The FHIR server's clock (Bundle.meta.lastUpdated of a tiny search), else ours."""
    try:
        b = client.get("Encounter", [("_summary", "count")])
        raw = (b.get("meta") or {}).get("lastUpdated")
        if isinstance(raw, str):
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except Exception as e:
        log.warning("server clock probe failed; using local clock", extra={"error": type(e).__name__})
    return datetime.now(UTC)


def window_params(since: str, until: str) -> list[tuple[str, str]]:
    return [("_lastUpdated", f"gt{since}"), ("_lastUpdated", f"le{until}")]


# --- reading ----------------------------------------------------------------------------------


@dataclass
class Group:
    """One encounter and everything fetched with it (``related``: "Type/id" -> resource)."""

    encounter: dict[str, Any]
    related: dict[str, dict[str, Any]]

    @property
    def encounter_id(self) -> str:
        return str(self.encounter.get("id"))

    def to_json(self) -> dict[str, Any]:
        return {"encounter": self.encounter, "related": self.related}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Group:
        return cls(d["encounter"], d["related"])


@dataclass
class ReadStats:
    pages: int = 0
    encounters: int = 0
    problems: list[str] = field(default_factory=list)


def ref_of(value: Any) -> str | None:
    """``Type/id`` of a Reference object (dict) or reference string, else None."""
    if isinstance(value, dict):
        value = value.get("reference")
    return reference_key(value) if isinstance(value, str) else None


def groups_from_page(page: dict[str, Any], stats: ReadStats) -> list[Group]:
    try:
        grouped, problems = group_bundle(page)
    except InputError as e:
        stats.problems.append(e.reason)
        return []
    stats.problems.extend(problems)
    return [Group(enc, dict(rel)) for enc, rel in grouped]


def with_procedures(client: FhirClient, page: dict[str, Any], stats: ReadStats) -> dict[str, Any]:
    """The page plus the Procedures of its Encounters, fetched by encounter ids (few ids per query)."""
    ids = [
        str(e["resource"]["id"])
        for e in page.get("entry") or []
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "Encounter"
        and e["resource"].get("id")
    ]
    extra: list[dict[str, Any]] = []
    for chunk in _chunks(ids, ENCOUNTER_IDS_PER_QUERY):
        refs = ",".join(f"Encounter/{i}" for i in chunk)
        for proc_page in client.search("Procedure", [("encounter", refs)]):
            stats.pages += 1
            extra.extend(e for e in proc_page.get("entry") or [] if isinstance(e, dict))
    return {**page, "entry": [*(page.get("entry") or []), *extra]}


def iter_window(
    client: FhirClient,
    since: str,
    until: str,
    statuses: Iterable[str],
    stats: ReadStats,
    procedure_fetch: ProcedureFetch = "by-encounter",
) -> Iterator[list[Group]]:
    """Yield pages of encounter groups updated in the window, then encounters whose Procedures were."""
    seen: set[str] = set()
    base = [*window_params(since, until), ("status", ",".join(statuses)), ("_sort", "_lastUpdated")]
    first_total: int | None = None
    includes = ENCOUNTER_INCLUDES if procedure_fetch == "revinclude" else PAGE_INCLUDES
    for page in client.search("Encounter", base + includes):
        stats.pages += 1
        if procedure_fetch == "by-encounter":
            page = with_procedures(client, page, stats)
        if first_total is None and isinstance(page.get("total"), int):
            first_total = page["total"]
        groups = [g for g in groups_from_page(page, stats) if g.encounter_id not in seen]
        seen.update(g.encounter_id for g in groups)
        stats.encounters += len(groups)
        if groups:
            yield groups
    # Encounters whose Procedures changed in the window although the Encounter did not.
    missing: list[str] = []
    for page in client.search(
        "Procedure", [*window_params(since, until), ("_sort", "_lastUpdated"), ("_elements", "id,encounter")]
    ):
        stats.pages += 1
        for entry in page.get("entry") or []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            ref = ref_of(res.get("encounter")) if isinstance(res, dict) else None
            if ref and ref.startswith("Encounter/"):
                eid = ref.split("/", 1)[1]
                if eid not in seen and eid not in missing:
                    missing.append(eid)
    # Offset paging may have skipped encounters that moved when others left the window meanwhile.
    if first_total is not None:
        now_total = _count(client, "Encounter", base)
        if now_total is not None and now_total < first_total:
            for page in client.search("Encounter", [*base, ("_elements", "id")]):
                stats.pages += 1
                for entry in page.get("entry") or []:
                    eid = str((entry.get("resource") or {}).get("id"))
                    if eid not in seen and eid not in missing:
                        missing.append(eid)
    statuses_set = set(statuses)
    for chunk in _chunks(missing, 50):
        for page in client.search("Encounter", [("_id", ",".join(chunk)), *ENCOUNTER_INCLUDES]):
            stats.pages += 1
            groups = [
                g
                for g in groups_from_page(page, stats)
                if g.encounter_id not in seen and g.encounter.get("status") in statuses_set
            ]
            seen.update(g.encounter_id for g in groups)
            stats.encounters += len(groups)
            if groups:
                yield groups


def _count(client: FhirClient, rtype: str, params: list[tuple[str, str]]) -> int | None:
    try:
        b = client.get(rtype, [*params, ("_summary", "count")])
    except Exception:
        return None
    t = b.get("total")
    return t if isinstance(t, int) else None


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def fetch_encounter(client: FhirClient, encounter_id: str) -> Group | None:
    """Re-fetch one encounter with its Procedures (used when the claim check has expired)."""
    stats = ReadStats()
    for page in client.search("Encounter", [("_id", encounter_id), *ENCOUNTER_INCLUDES]):
        for g in groups_from_page(page, stats):
            if g.encounter_id == encounter_id:
                return g
    return None


def context_requests(groups: Iterable[Group], known: set[str]) -> list[tuple[str, str]]:
    """(key, GET url) for the context of these groups not yet in ``known`` (keys added to it)."""
    reqs: list[tuple[str, str]] = []
    for g in groups:
        pref = ref_of(g.encounter.get("subject"))
        if pref and pref.startswith("Patient/") and f"ctx:{pref}" not in known:
            known.add(f"ctx:{pref}")
            q = quote(pref, safe="/")
            reqs.append((f"ctx:{pref}", f"Coverage?beneficiary={q}&_count=50"))
            reqs.append((f"ctx:{pref}", f"ChargeItem?subject={q}&_count=500"))
            reqs.append((f"ctx:{pref}", f"Procedure?patient={q}&_count=500"))  # earlier visits (DOC-CLONED)
        for res in g.related.values():
            if res.get("resourceType") != "Procedure":
                continue
            for perf in res.get("performer") or []:
                actor = ref_of(perf.get("actor")) if isinstance(perf, dict) else None
                if not actor or f"perf:{actor}" in known or actor in g.related:
                    continue
                known.add(f"perf:{actor}")
                if actor.startswith("Practitioner/"):
                    reqs.append((f"perf:{actor}", actor))
                    reqs.append((f"perf:{actor}", f"PractitionerRole?practitioner={quote(actor, safe='/')}"))
                elif actor.startswith("PractitionerRole/"):
                    reqs.append((f"perf:{actor}", f"{actor}?_include=PractitionerRole:practitioner"))
    return reqs


def fetch_context(client: FhirClient, reqs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """One batch request for all context searches; failed entries are logged and skipped."""
    out: dict[str, dict[str, Any]] = {}
    for chunk_start in range(0, len(reqs), 100):
        chunk = reqs[chunk_start : chunk_start + 100]
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": url}} for _, url in chunk],
        }
        answer = client.batch(bundle, idempotent=True)
        results = parse_transaction_response(answer)
        for entry, result in zip(answer.get("entry") or [], results, strict=False):
            if not result.ok:
                log.warning("context read failed", extra={"status": result.status})
                continue
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            found = (
                [e.get("resource") for e in res.get("entry") or [] if isinstance(e, dict)]
                if res.get("resourceType") == "Bundle"
                else [res]
            )
            for r in found:
                if isinstance(r, dict) and r.get("resourceType") and r.get("id") and not own_suggestion(r):
                    out[f"{r['resourceType']}/{r['id']}"] = r
    return out


def own_suggestion(resource: dict[str, Any]) -> bool:
    """A ChargeItem ptbill suggested that nobody has reviewed yet (still in ptbill's own status).

    It is not a charge on file, so it is left out of the context (prior charges for KX and visit caps):
    otherwise an encounter's decision would depend on whether the run had already written the other
    encounters' suggestions - on processing order and timing, retries and faults - and re-runs would keep
    rewriting it. Charges a person has acted on (billable, billed...) and the EMR's own charges count.
    """
    return (
        resource.get("resourceType") == "ChargeItem"
        and resource.get("status") == OWN_STATUS["ChargeItem"]
        and any(
            isinstance(i, dict) and i.get("system") == IDENTIFIER_SYSTEM
            for i in resource.get("identifier") or []
        )
    )


STAFF_TYPES = ("Practitioner", "PractitionerRole")


def performer_context(group: Group, staff: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Practitioner/PractitionerRole resources in ``staff`` (``Type/id`` -> resource, fetched on an
    earlier page of the run) that this group's Procedure performers need: the actor, its roles (for a
    Practitioner) or its practitioner (for a PractitionerRole). ``context_requests`` fetches each
    performer only once per run, so later pages must reuse what was fetched before."""
    out: dict[str, dict[str, Any]] = {}
    for res in group.related.values():
        if res.get("resourceType") != "Procedure":
            continue
        for perf in res.get("performer") or []:
            actor = ref_of(perf.get("actor")) if isinstance(perf, dict) else None
            if not actor or actor not in staff or actor in group.related:
                continue
            out[actor] = staff[actor]
            if actor.startswith("PractitionerRole/"):
                pract = ref_of(staff[actor].get("practitioner"))
                if pract and pract in staff:
                    out[pract] = staff[pract]
            else:
                for key, r in staff.items():
                    if r.get("resourceType") == "PractitionerRole" and ref_of(r.get("practitioner")) == actor:
                        out[key] = r
    return out


def slim(group: Group) -> Group:
    """Only what this encounter needs, each resource once under its ``Type/id`` key (the claim check).

    A page's related map holds the whole page (every Encounter's Procedures, every patient's context) and
    alias keys (fullUrls); storing it per encounter cost 40-50 kB of JSON each. Kept: whatever references
    this encounter (its Procedures), its patient and episodes of care, that patient's Coverages and
    ChargeItems with their payor Organizations, and the clinic's staff (Practitioner, PractitionerRole:
    few, and needed to resolve performers however they are referenced).
    """
    enc = group.encounter
    canon: dict[str, str] = {}  # every key of the related map (Type/id, fullUrl aliases) -> Type/id
    unique: dict[str, dict[str, Any]] = {}
    for k, res in group.related.items():
        if isinstance(res, dict) and res.get("resourceType") and res.get("id"):
            key = f"{res['resourceType']}/{res['id']}"
            canon[k] = key
            unique.setdefault(key, res)

    def to_key(value: Any) -> str | None:
        if isinstance(value, dict):
            value = value.get("reference")
        if not isinstance(value, str):
            return None
        return canon.get(value) or ref_of(value)

    me = f"Encounter/{enc.get('id')}"
    patient = to_key(enc.get("subject"))
    wanted = {patient} | {to_key(x) for x in enc.get("episodeOfCare") or []}
    keep: dict[str, dict[str, Any]] = {}
    for key, res in unique.items():
        rtype = res["resourceType"]
        if (
            key in wanted
            or rtype in STAFF_TYPES
            or (rtype == fhir_extract.PRIOR_VISITS_TYPE and res.get("patient") == patient)  # hashes only
            or to_key(res.get("encounter")) == me
            or (rtype == "Coverage" and patient is not None and to_key(res.get("beneficiary")) == patient)
            or (rtype == "ChargeItem" and patient is not None and to_key(res.get("subject")) == patient)
        ):
            keep[key] = res
    for res in list(keep.values()):
        if res["resourceType"] == "Coverage":
            for payor in res.get("payor") or []:
                ref = to_key(payor)
                if ref in unique:
                    keep[ref] = unique[ref]
    return Group(enc, keep)


def attach_context(group: Group, context: dict[str, dict[str, Any]]) -> Group:
    rel = dict(group.related)
    me = f"Encounter/{group.encounter.get('id')}"
    for k, v in context.items():
        if v.get("resourceType") == "Procedure" and ref_of(v.get("encounter")) != me:
            continue  # another visit's documentation: kept as hashes and dates only (issue 8 §4)
        rel.setdefault(k, v)
    prior = fhir_extract.prior_visits_summary(context, ref_of(group.encounter.get("subject")), me)
    if prior is not None:
        rel[f"{fhir_extract.PRIOR_VISITS_TYPE}/{prior['id']}"] = prior
    return Group(group.encounter, rel)


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


# An Encounter moved to one of these after ptbill suggested charges did not happen as billed: everything
# ptbill wrote for it is retired (resources a person already acted on are kept, as always).
WITHDRAWN_STATUSES = ("entered-in-error", "cancelled")


def decide_group(group: Group, tables: Tables) -> tuple[EncounterFacts, Decision]:
    facts = extract_encounter(group.encounter, group.related)
    if facts.status in WITHDRAWN_STATUSES:
        return facts, Decision(
            facts.encounter_id, table_versions=tables.versions(), engine_version=__version__
        )
    return facts, decide(facts, tables)


def iter_withdrawn(client: FhirClient, since: str, until: str, stats: ReadStats) -> Iterator[str]:
    """Ids of Encounters withdrawn (entered-in-error, cancelled) in the window: one light paged search."""
    params = [*window_params(since, until), ("status", ",".join(WITHDRAWN_STATUSES)), ("_elements", "id")]
    for page in client.search("Encounter", params):
        stats.pages += 1
        for e in page.get("entry") or []:
            res = e.get("resource") if isinstance(e, dict) else None
            if isinstance(res, dict) and res.get("resourceType") == "Encounter" and res.get("id"):
                yield str(res["id"])


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
