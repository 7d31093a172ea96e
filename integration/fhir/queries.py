"""Every FHIR search ptbill's sync makes, in one place, each bounded by the run's limits.

A sync run reads the window ``(since, until]`` on the server's ``_lastUpdated`` (``until`` fixed at the
start, never past the server's clock):

  1. Encounters in the window with the wanted statuses, each page with its Procedures (``by-encounter``:
     ``Procedure?encounter=...`` per page; ``revinclude``: ``_revinclude=Procedure:encounter``), Patient
     and EpisodeOfCare (``_include``);
  2. Procedures updated in the window whose Encounter was not in (1) -> those Encounters by ``_id``;
  3. offset paging can skip an item when another one leaves the window while we page: the window's count
     is re-checked at the end (``_summary=count``; a server that gives no count at all gets the ids listed
     again) and, when it shrank, the ids are listed again to catch up;
  4. EMR changes that touch no Encounter (:func:`emr_changes`): Procedures deleted in the window
     (``Procedure/_history?_since``) or moved to another Encounter (each updated Procedure's own
     ``_history``), and patient context (Coverage, EpisodeOfCare) updated in the window -> the encounters
     concerned are re-run;
  5. per page, one batch for the context not yet cached in this run: the patients' Coverages and prior
     ChargeItems, the performers' Practitioner and PractitionerRole resources (``PractitionerRole?_id=
     ...&_include=PractitionerRole:practitioner``: a search, since ``_include`` on a read means nothing).

Every page counts against the run's :class:`ReadStats` limits (``PTBILL_MAX_PAGES``,
``PTBILL_SYNC_DEADLINE``): past either the run fails with :class:`RunLimitExceeded`. Paging follows
``next`` links and never stops on ``total``; a search whose ``total`` promises more matches than its pages
held, with no ``next`` link and a re-count that still says so, fails with :class:`TruncatedSearch`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from integration.claim import Group, ref_of
from integration.errors import FhirError, FhirFatalError, InputError, PtbillError
from integration.fhir.client import FhirClient, parse_transaction_response
from integration.fhir.extract import group_bundle
from integration.fhir.writeback import (
    own_suggestion,
)

log = logging.getLogger("ptbill.queries")

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
BATCH_ENTRIES = 100
HISTORY_VERSIONS = 5  # versions of one changed Procedure read back to find the encounters it was in
# An Encounter moved to one of these after ptbill suggested charges did not happen as billed: everything
# ptbill wrote for it is retired (resources a person already acted on are kept, as always).
WITHDRAWN_STATUSES = ("entered-in-error", "cancelled")


# --- limits and counters of one run ------------------------------------------------------------------


class RunLimitExceeded(PtbillError):
    """A sync run read more pages than ``PTBILL_MAX_PAGES`` or ran past ``PTBILL_SYNC_DEADLINE``.

    ``kind`` is ``page-cap`` or ``deadline``. The run is failed (never retried as is: a server sending
    endless ``next`` links does so again), its lock released, and ``ptbill status`` shows the reason.
    """

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class TruncatedSearch(FhirFatalError):
    """The server's ``total`` says more entries match than its pages held, and paging ended."""


@dataclass
class ReadStats:
    """Pages read and problems met in one run; ``max_pages`` and ``deadline`` (a ``time.monotonic()``
    instant) bound it: :meth:`page` raises :class:`RunLimitExceeded` past either."""

    pages: int = 0
    encounters: int = 0
    problems: list[str] = field(default_factory=list)
    max_pages: int | None = None
    deadline: float | None = None
    changes: dict[str, int] = field(default_factory=dict)  # EMR changes found: reason -> encounters

    def page(self) -> None:
        self.pages += 1
        if self.max_pages is not None and self.pages > self.max_pages:
            raise RunLimitExceeded(
                "page-cap",
                f"sync run stopped after {self.max_pages} pages (PTBILL_MAX_PAGES); the server may be "
                "sending endless next links, or the window is larger than the cap allows",
            )
        self.check_deadline()

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RunLimitExceeded(
                "deadline", "sync run passed its deadline (PTBILL_SYNC_DEADLINE) while reading the EMR"
            )


def _matches(page: dict[str, Any], rtype: str) -> int:
    """Entries of a searchset page that are matches (``search.mode``; without it, the searched type)."""
    n = 0
    for e in page.get("entry") or []:
        if not isinstance(e, dict):
            continue
        mode = (e.get("search") or {}).get("mode") if isinstance(e.get("search"), dict) else None
        res = e.get("resource")
        if mode == "match" or (mode is None and isinstance(res, dict) and res.get("resourceType") == rtype):
            n += 1
    return n


def pages(
    client: FhirClient, rtype: str, params: list[tuple[str, str]], stats: ReadStats
) -> Iterator[dict[str, Any]]:
    """Each page of a search, counted against the run's limits; paging follows ``next`` only.

    When the first page's ``total`` is larger than the matches seen once paging ends, the search is
    counted again (``_summary=count``): entries that left the query meanwhile explain a smaller count; a
    count still larger means the server dropped pages, and the search fails (:class:`TruncatedSearch`).
    """
    total: int | None = None
    matched = 0
    for page in client.search(rtype, params):
        stats.page()
        if total is None and isinstance(page.get("total"), int):
            total = page["total"]
        matched += _matches(page, rtype)
        yield page
    if total is not None and matched < total:
        filters = [(k, v) for k, v in params if not k.startswith(("_include", "_revinclude", "_elements"))]
        recount = count(client, rtype, filters, stats)
        if recount is None or recount > matched:
            raise TruncatedSearch(
                f"{rtype} search: the server's total says {total} match(es), its pages held {matched} and "
                f"had no next link ({'no re-count' if recount is None else f'a re-count says {recount}'})",
                method="GET",
                url=f"{client.base_url}/{rtype}",
            )


def count(client: FhirClient, rtype: str, params: list[tuple[str, str]], stats: ReadStats) -> int | None:
    """The server's count of a search (``_summary=count``), None when it gives none."""
    try:
        b = client.get(rtype, [*params, ("_summary", "count")])
    except FhirError:
        return None
    finally:
        stats.check_deadline()
    t = b.get("total")
    return t if isinstance(t, int) else None


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


# --- time window ------------------------------------------------------------------------------


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_instant(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def window_params(since: str, until: str) -> list[tuple[str, str]]:
    return [("_lastUpdated", f"gt{since}"), ("_lastUpdated", f"le{until}")]


CLOCK_WARN_SECONDS = 60.0


class ServerClockUnknown(FhirFatalError):
    """No answer of the server carried its clock (an HTTP ``Date`` header or ``Bundle.meta.lastUpdated``)."""


def server_now(client: FhirClient) -> datetime:
    """The FHIR server's clock, never ours.

    A tiny search (``Encounter?_summary=count``): its ``Bundle.meta.lastUpdated`` (millisecond precision)
    when it agrees with the answer's HTTP ``Date`` header (second precision) within a few seconds, else
    the ``Date`` header of that answer or of any earlier one (plus the time since). Logs a warning when the
    server's clock and the local one differ by more than a minute; raises :class:`ServerClockUnknown`
    when the server never said what time it is.
    """
    stamp: datetime | None = None
    try:
        b = client.get("Encounter", [("_summary", "count")])
        raw = (b.get("meta") or {}).get("lastUpdated")
        if isinstance(raw, str):
            try:
                stamp = parse_instant(raw)
            except ValueError:
                stamp = None
    except FhirError as e:  # an error answer still carries a Date header
        log.warning("server clock probe failed", extra={"error": type(e).__name__})
    dated = client.server_clock()
    if stamp is not None and (dated is None or abs((stamp - dated).total_seconds()) <= 5):
        now = stamp
    elif dated is not None:
        now = dated
    else:
        raise ServerClockUnknown(
            "the FHIR server did not say what time it is (no HTTP Date header, no Bundle.meta.lastUpdated): "
            "ptbill will not guess the end of the sync window from its own clock",
            url=client.base_url,
        )
    skew = (datetime.now(UTC) - now).total_seconds()
    if abs(skew) > CLOCK_WARN_SECONDS:
        log.warning(
            "the FHIR server's clock and this machine's disagree; the sync window follows the server's",
            extra={"skew_seconds": round(skew, 1)},
        )
    return now


def fix_window(since: str, until: str | None, server: datetime, lag_seconds: float) -> tuple[str, str]:
    """``(since, until)`` of a run: ``until`` at most the server's clock minus the lag (a requested
    ``until`` later than that is clamped). ``since`` after ``until`` is refused (InputError): a
    watermark in the server's future would skip every edit made before the server's clock reaches it."""
    limit = server - timedelta(seconds=lag_seconds)
    end = limit if until is None else min(parse_instant(until), limit)
    try:
        start = parse_instant(since)
    except ValueError:
        raise InputError(f"since {since!r} is not an ISO instant", resource_type="window") from None
    if start > end:
        raise InputError(
            f"since {iso(start)} is after until {iso(end)} (the FHIR server's clock minus "
            "PTBILL_CLOCK_LAG_SECONDS, or the requested until): a watermark in the server's future would "
            "skip edits; check the server's clock, or reset the watermark with a backfill",
            resource_type="window",
        )
    return since, iso(end)


# --- the window's encounters -----------------------------------------------------------------------


def groups_from_page(page: dict[str, Any], stats: ReadStats) -> list[Group]:
    try:
        grouped, problems = group_bundle(page)
    except InputError as e:
        stats.problems.append(e.reason)
        return []
    stats.problems.extend(problems)
    return [Group(enc, dict(rel)) for enc, rel in grouped]


def _resources(page: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for e in page.get("entry") or []:
        res = e.get("resource") if isinstance(e, dict) else None
        if isinstance(res, dict):
            yield res


def with_procedures(client: FhirClient, page: dict[str, Any], stats: ReadStats) -> dict[str, Any]:
    """The page plus the Procedures of its Encounters, fetched by encounter ids (few ids per query)."""
    ids = [str(r["id"]) for r in _resources(page) if r.get("resourceType") == "Encounter" and r.get("id")]
    extra: list[dict[str, Any]] = []
    for chunk in _chunks(ids, ENCOUNTER_IDS_PER_QUERY):
        refs = ",".join(f"Encounter/{i}" for i in chunk)
        for proc_page in pages(client, "Procedure", [("encounter", refs)], stats):
            extra.extend(e for e in proc_page.get("entry") or [] if isinstance(e, dict))
    return {**page, "entry": [*(page.get("entry") or []), *extra]}


def _encounter_id(ref: Any) -> str | None:
    key = ref_of(ref)
    return key.split("/", 1)[1] if key and key.startswith("Encounter/") else None


def iter_window(
    client: FhirClient,
    since: str,
    until: str,
    statuses: Iterable[str],
    stats: ReadStats,
    procedure_fetch: ProcedureFetch = "by-encounter",
    *,
    procedures: list[ProcedureChange] | None = None,
    also: Iterable[str] = (),
) -> Iterator[list[Group]]:
    """Yield pages of encounter groups updated in the window, then encounters whose Procedures were
    (``procedures``: :func:`changed_procedures`, listed here when not given), then the encounters in
    ``also`` (EMR changes found by :func:`emr_changes`) not yet seen."""
    seen: set[str] = set()
    statuses = list(statuses)
    base = [*window_params(since, until), ("status", ",".join(statuses)), ("_sort", "_lastUpdated")]
    first_total: int | None = None
    includes = ENCOUNTER_INCLUDES if procedure_fetch == "revinclude" else PAGE_INCLUDES
    first = True
    for page in pages(client, "Encounter", base + includes, stats):
        if first:
            first = False
            first_total = page["total"] if isinstance(page.get("total"), int) else None
            if first_total is None and page.get("entry"):  # total omitted: count now, to re-check later
                first_total = count(client, "Encounter", base, stats)
        if procedure_fetch == "by-encounter":
            page = with_procedures(client, page, stats)
        groups = [g for g in groups_from_page(page, stats) if g.encounter_id not in seen]
        seen.update(g.encounter_id for g in groups)
        stats.encounters += len(groups)
        if groups:
            yield groups
    # Encounters whose Procedures changed in the window although the Encounter did not.
    missing: list[str] = []
    if procedures is None:
        procedures = list(changed_procedures(client, since, until, stats))
    for change in procedures:
        if change.encounter and change.encounter not in seen and change.encounter not in missing:
            missing.append(change.encounter)
    # Offset paging may have skipped encounters that moved when others left the window meanwhile. Without
    # any count from the server, the ids are listed again (ids only) to be sure.
    now_total = count(client, "Encounter", base, stats) if first_total is not None else None
    if first_total is None or now_total is None or now_total < first_total:
        for page in pages(client, "Encounter", [*base, ("_elements", "id")], stats):
            for res in _resources(page):
                eid = str(res.get("id"))
                if res.get("resourceType") == "Encounter" and eid not in seen and eid not in missing:
                    missing.append(eid)
    for eid in also:
        if eid not in seen and eid not in missing:
            missing.append(eid)
    statuses_set = set(statuses)
    for chunk in _chunks(missing, ENCOUNTER_IDS_PER_QUERY):
        for page in pages(client, "Encounter", [("_id", ",".join(chunk)), *ENCOUNTER_INCLUDES], stats):
            groups = [
                g
                for g in groups_from_page(page, stats)
                if g.encounter_id not in seen and g.encounter.get("status") in statuses_set
            ]
            seen.update(g.encounter_id for g in groups)
            stats.encounters += len(groups)
            if groups:
                yield groups


def iter_withdrawn(client: FhirClient, since: str, until: str, stats: ReadStats) -> Iterator[str]:
    """Ids of Encounters withdrawn (entered-in-error, cancelled) in the window: one light paged search."""
    params = [*window_params(since, until), ("status", ",".join(WITHDRAWN_STATUSES)), ("_elements", "id")]
    for page in pages(client, "Encounter", params, stats):
        for res in _resources(page):
            if res.get("resourceType") == "Encounter" and res.get("id"):
                yield str(res["id"])


def fetch_encounter(client: FhirClient, encounter_id: str, stats: ReadStats | None = None) -> Group | None:
    """Re-fetch one encounter with its Procedures (used when the claim check has expired)."""
    stats = stats or ReadStats()
    for page in pages(client, "Encounter", [("_id", encounter_id), *ENCOUNTER_INCLUDES], stats):
        for g in groups_from_page(page, stats):
            if g.encounter_id == encounter_id:
                return g
    return None


# --- EMR changes that touch no Encounter ------------------------------------------------------------


@dataclass(frozen=True)
class ProcedureChange:
    id: str
    version: int | None  # meta.versionId when numeric
    encounter: str | None  # the encounter it points at now (None when deleted)
    deleted: bool = False


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _version(res: dict[str, Any]) -> int | None:
    v = (res.get("meta") or {}).get("versionId") if isinstance(res.get("meta"), dict) else None
    return int(v) if isinstance(v, str) and v.isdigit() else None


def changed_procedures(
    client: FhirClient, since: str, until: str, stats: ReadStats
) -> Iterator[ProcedureChange]:
    """Procedures updated in the window (ids, versions and encounters only)."""
    params = [*window_params(since, until), ("_sort", "_lastUpdated"), ("_elements", "id,encounter")]
    for page in pages(client, "Procedure", params, stats):
        for res in _resources(page):
            if res.get("resourceType") == "Procedure" and res.get("id"):
                yield ProcedureChange(str(res["id"]), _version(res), _encounter_id(res.get("encounter")))


def deleted_procedures(client: FhirClient, since: str, until: str, stats: ReadStats) -> list[str]:
    """Ids of Procedures deleted in the window: the DELETE entries of ``Procedure/_history?_since``."""
    out: list[str] = []
    url_params = [("_since", since)]
    for page in _history_pages(client, "Procedure/_history", url_params, stats):
        for e in page.get("entry") or []:
            if not isinstance(e, dict):
                continue
            req = _d(e.get("request"))
            if str(req.get("method", "")).upper() != "DELETE":
                continue
            modified = _d(e.get("response")).get("lastModified")
            if isinstance(modified, str):
                try:
                    if parse_instant(modified) > parse_instant(until):
                        continue  # the next window's
                except ValueError:
                    pass
            key = ref_of(str(req.get("url") or ""))
            if key and key.startswith("Procedure/") and key.split("/", 1)[1] not in out:
                out.append(key.split("/", 1)[1])
    return out


def _history_pages(
    client: FhirClient, path: str, params: list[tuple[str, str]], stats: ReadStats
) -> Iterator[dict[str, Any]]:
    """Pages of a history interaction (``next`` links followed like a search's), counted as pages."""
    page: dict[str, Any] | None = client.get(path, [*params, ("_count", str(client.page_size))])
    seen: set[str] = set()
    while page is not None:
        stats.page()
        yield page
        nxt = next(
            (
                str(link["url"])
                for link in page.get("link") or []
                if isinstance(link, dict) and link.get("relation") == "next" and link.get("url")
            ),
            None,
        )
        if nxt is None or nxt in seen:
            return
        seen.add(nxt)
        page = client.get(nxt)


def encounters_in_history(
    client: FhirClient, procedure_ids: list[str], stats: ReadStats
) -> dict[str, set[str]]:
    """Per Procedure, every Encounter its last versions pointed at (its own ``_history``, one batch per
    100 Procedures): where a deleted or moved Procedure was billed before."""
    found: dict[str, set[str]] = {}
    for chunk in _chunks(procedure_ids, BATCH_ENTRIES):
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": f"Procedure/{pid}/_history?_count={HISTORY_VERSIONS}"}}
                for pid in chunk
            ],
        }
        answer = client.batch(bundle, idempotent=True)
        stats.page()
        results = parse_transaction_response(answer)
        for pid, entry, result in zip(chunk, answer.get("entry") or [], results, strict=False):
            if not result.ok:
                stats.problems.append(f"Procedure history read failed (HTTP {result.status})")
                continue
            res = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(res, dict):
                for version in _resources(res):
                    eid = _encounter_id(version.get("encounter"))
                    if eid:
                        found.setdefault(pid, set()).add(eid)
    return found


def context_patients(client: FhirClient, since: str, until: str, stats: ReadStats) -> set[str]:
    """Patients (``Patient/id``) whose Coverage or EpisodeOfCare was updated in the window."""
    found: set[str] = set()
    for rtype, element in (("Coverage", "beneficiary"), ("EpisodeOfCare", "patient")):
        params = [*window_params(since, until), ("_elements", element)]
        for page in pages(client, rtype, params, stats):
            for res in _resources(page):
                key = ref_of(res.get(element)) if res.get("resourceType") == rtype else None
                if key and key.startswith("Patient/"):
                    found.add(key)
    return found


def open_encounters_of(
    client: FhirClient, patients: Iterable[str], statuses: Iterable[str], not_before: str, stats: ReadStats
) -> list[str]:
    """Ids of these patients' encounters in a billed status dated on or after ``not_before`` (a day)."""
    out: list[str] = []
    for chunk in _chunks(sorted(patients), ENCOUNTER_IDS_PER_QUERY):
        params = [
            ("subject", ",".join(chunk)),
            ("status", ",".join(statuses)),
            ("date", f"ge{not_before}"),
            ("_elements", "id"),
        ]
        for page in pages(client, "Encounter", params, stats):
            for res in _resources(page):
                if res.get("resourceType") == "Encounter" and res.get("id") and str(res["id"]) not in out:
                    out.append(str(res["id"]))
    return out


@dataclass(frozen=True)
class ChangeReads:
    """Which EMR-change reads the server allows (from its CapabilityStatement) and the look-back."""

    deletions: bool = True  # Procedure history-type
    moves: bool = True  # Procedure history-instance
    context_lookback_days: int = 30  # 0: context changes re-run nothing


def emr_changes(
    client: FhirClient,
    since: str,
    until: str,
    statuses: Iterable[str],
    stats: ReadStats,
    reads: ChangeReads,
    procedures: list[ProcedureChange],
) -> list[str]:
    """Encounters to re-run for changes that did not touch them: their Procedure deleted or moved away,
    or their patient's Coverage/EpisodeOfCare updated (encounters dated within the look-back);
    ``procedures``: the window's :func:`changed_procedures`. Counted in
    ``stats.changes``. Request cost: one history page per incremental run plus, only when Procedures were
    deleted or edited, one batch per 100 of them; two searches for context plus one per 50 patients."""
    out: list[str] = []

    def add(reason: str, ids: Iterable[str]) -> None:
        n = 0
        for eid in ids:
            if eid not in out:
                out.append(eid)
                n += 1
        if n:
            stats.changes[reason] = stats.changes.get(reason, 0) + n

    statuses = list(statuses)
    deleted = deleted_procedures(client, since, until, stats) if reads.deletions else []
    if deleted:
        history = encounters_in_history(client, deleted, stats)
        add("procedure_deleted", sorted(set().union(*history.values())))
    if reads.moves:
        # edited ones (versionId > 1; every one when the server leaves meta out of _elements)
        now = {c.id: c.encounter for c in procedures if c.version is None or c.version > 1}
        if now:
            history = encounters_in_history(client, list(now), stats)
            add("procedure_moved", sorted({e for pid, es in history.items() for e in es if e != now[pid]}))
    if reads.context_lookback_days > 0:
        patients = context_patients(client, since, until, stats)
        if patients:
            day = (parse_instant(until) - timedelta(days=reads.context_lookback_days)).date().isoformat()
            add("context_changed", open_encounters_of(client, patients, statuses, day, stats))
    return out


# --- context of a page: Coverages, prior ChargeItems, performers -------------------------------------


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
                rid = quote(actor.split("/", 1)[1], safe="")
                if actor.startswith("Practitioner/"):
                    reqs.append((f"perf:{actor}", actor))
                    reqs.append((f"perf:{actor}", f"PractitionerRole?practitioner={quote(actor, safe='/')}"))
                elif actor.startswith("PractitionerRole/"):
                    # a search: `_include` on a read (PractitionerRole/x?_include=...) means nothing
                    reqs.append(
                        (
                            f"perf:{actor}",
                            f"PractitionerRole?_id={rid}&_include=PractitionerRole:practitioner",
                        )
                    )
    return reqs



def fetch_context(
    client: FhirClient, reqs: list[tuple[str, str]], stats: ReadStats | None = None
) -> dict[str, dict[str, Any]]:
    """One batch request for all context searches; failed entries are logged and skipped."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in [reqs[i : i + BATCH_ENTRIES] for i in range(0, len(reqs), BATCH_ENTRIES)]:
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": url}} for _, url in chunk],
        }
        answer = client.batch(bundle, idempotent=True)
        if stats is not None:
            stats.page()
        results = parse_transaction_response(answer)
        for entry, result in zip(answer.get("entry") or [], results, strict=False):
            if not result.ok:
                log.warning("context read failed", extra={"status": result.status})
                continue
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            found = list(_resources(res)) if res.get("resourceType") == "Bundle" else [res]
            for r in found:
                if r.get("resourceType") and r.get("id") and not own_suggestion(r):
                    out[f"{r['resourceType']}/{r['id']}"] = r
    return out
