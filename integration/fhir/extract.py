"""FHIR R4 JSON (plain dicts) -> domain facts (``integration.model``). Pure, cheap, never trusting.

Public functions::

    extract_intervention(procedure: dict, *, encounter_group_size: int | None = None) -> Intervention
    extract_encounter(encounter: dict, related: Mapping[str, dict]) -> EncounterFacts
    group_bundle(bundle: dict) -> tuple[list[tuple[dict, dict[str, dict]]], list[str]]

No ``fhir.resources`` model parsing here: this is the hot path and real data is often not valid R4
(see /work/shared/fhir-data/EDGE_CASES.md). Every field is read defensively; whatever cannot be read
is reported as a short reason string in ``EncounterFacts.input_problems`` (resource type/id and the
field name only -- never names, note text, birth dates, identifier values or query strings). The only
exception raised is ``integration.errors.InputError`` for an Encounter that is not a dict, is not an
Encounter, or has no id (``extract_encounter``), a Procedure without id (``extract_intervention``),
and a bundle that is not a Bundle (``group_bundle``).

References understood (``Reference.reference``): relative ``Type/id``; absolute
``http://host/fhir/Type/id``; versioned ``Type/id/_history/v`` (version ignored); ``urn:uuid:``/``urn:oid:``
fullUrls (looked up as keys of ``related``, which ``group_bundle`` fills); contained ``#id``; conditional
``Type?identifier=system|value`` (resolved against resources of that type in ``related``); and
identifier-only references (``Reference.identifier``). Display-only references resolve to nothing.

ptbill extensions read (all ``https://ptbill.dev/fhir/StructureDefinition/...``):

================================  ====================  =============================================
URL (suffix)                      on                    value
================================  ====================  =============================================
``group-size``                    Encounter, Procedure  valueInteger / valuePositiveInt: patients in the
                                                        session (Procedure overrides Encounter)
``total-timed-minutes``           Encounter             valueInteger, or valueQuantity/valueDuration
                                                        (min / h): documented total timed-code minutes
``total-treatment-minutes``       Encounter             same: documented total treatment time
``visit-number``                  Encounter (then       valueInteger / valuePositiveInt: this visit's
                                  EpisodeOfCare)        ordinal within the episode
``last-progress-report-visit``    Encounter (then       valueInteger / valuePositiveInt: visit number of
                                  EpisodeOfCare)        the last progress report before this visit
``poc-certified-date``            Encounter (then       valueDate / valueDateTime: date the current plan
                                  EpisodeOfCare)        of care was certified
================================  ====================  =============================================

A value on the Encounter wins over the same extension on its EpisodeOfCare (the Encounter can say
what held at that visit). ``Encounter.length`` (a Duration in ``min``/``h``/``s``/``d``) is read as the
total treatment minutes when the ``total-treatment-minutes`` extension is absent. The episode start is
``EpisodeOfCare.period.start``.

Minutes of an intervention are ``performedPeriod.end - performedPeriod.start`` in whole minutes (rounded
down, never up), ``None`` when either end is missing, has no time of day, cannot be parsed, mixes
timezone-aware and naive times, or the end is before the start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from integration.classify.cloned import text_hash
from integration.errors import InputError
from integration.model import (
    CPT,
    HCPCS_SYSTEMS,
    Coding,
    CoverageFacts,
    EncounterFacts,
    EpisodeFacts,
    Intervention,
    PerformerRef,
    PractitionerFacts,
    PriorCharge,
    PriorVisit,
)

EXT_BASE = "https://ptbill.dev/fhir/StructureDefinition/"
EXT_GROUP_SIZE = EXT_BASE + "group-size"
EXT_TOTAL_TIMED_MINUTES = EXT_BASE + "total-timed-minutes"
EXT_TOTAL_TREATMENT_MINUTES = EXT_BASE + "total-treatment-minutes"
EXT_VISIT_NUMBER = EXT_BASE + "visit-number"
EXT_LAST_PROGRESS_REPORT_VISIT = EXT_BASE + "last-progress-report-visit"
EXT_POC_CERTIFIED_DATE = EXT_BASE + "poc-certified-date"

# the identifier system of resources ptbill writes (integration.fhir.writeback.IDENTIFIER_SYSTEM)
PTBILL_IDENTIFIER_SYSTEM = "https://ptbill.dev/fhir/identifier"

__all__ = [
    "EXT_BASE",
    "EXT_GROUP_SIZE",
    "EXT_LAST_PROGRESS_REPORT_VISIT",
    "EXT_POC_CERTIFIED_DATE",
    "EXT_TOTAL_TIMED_MINUTES",
    "EXT_TOTAL_TREATMENT_MINUTES",
    "EXT_VISIT_NUMBER",
    "extract_encounter",
    "extract_intervention",
    "group_bundle",
    "iter_groups",
    "reference_key",
]

_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_BILLING_SYSTEMS = (CPT, *HCPCS_SYSTEMS)
# Resources every encounter of a bundle may need (shared), and patient-scoped ones group_bundle routes.
_SHARED_TYPES = frozenset({"Patient", "Practitioner", "PractitionerRole", "Organization", "Location"})
_PATIENT_SCOPED = {"Coverage": "beneficiary", "ChargeItem": "subject", "EpisodeOfCare": "patient"}


# --- small defensive readers ------------------------------------------------------------------


def _s(value: Any) -> str | None:
    """A non-empty stripped string, else None."""
    if isinstance(value, str):
        v = value.strip()
        return v or None
    return None


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(res: Mapping[str, Any], field: str, where: str, problems: list[str] | None) -> list[Any]:
    """A list-valued field. A single object where a list is expected is accepted (and noted)."""
    v = res.get(field)
    if v is None:
        return []
    if isinstance(v, list):
        return v
    if problems is not None:
        problems.append(f"{where}: {field} is not a list")
    return [v] if isinstance(v, dict) else []


def _codings(cc: Any) -> tuple[Coding, ...]:
    if not isinstance(cc, dict):
        return ()
    raw = cc.get("coding")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        return ()
    out = []
    for c in raw:
        if isinstance(c, dict):
            system, code, display = _s(c.get("system")), _s(c.get("code")), _s(c.get("display"))
            if system or code or display:
                out.append(Coding(system, code, display))
    return tuple(out)


def _cc_texts(cc: Any) -> list[str]:
    """CodeableConcept -> [text] if it has text, else the displays of its codings."""
    if not isinstance(cc, dict):
        return [cc.strip()] if isinstance(cc, str) and cc.strip() else []
    text = _s(cc.get("text"))
    if text:
        return [text]
    return [c.display for c in _codings(cc) if c.display]


def _date_of(value: Any) -> date | None:
    """The calendar date of a FHIR date/dateTime as written (no timezone shift). Partial dates -> None."""
    v = _s(value)
    if v is None or len(v) < 10:
        return None
    try:
        return date.fromisoformat(v[:10])
    except ValueError:
        return None


def _datetime_of(value: Any) -> datetime | None:
    """A FHIR dateTime with a time of day -> datetime; anything else (date only, partial, junk) -> None."""
    v = _s(value)
    if v is None or len(v) < 16 or v[10] not in "Tt ":
        return None
    try:
        return datetime.fromisoformat(v)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


_MINUTE_UNITS = {
    "min": 1.0,
    "mins": 1.0,
    "minute": 1.0,
    "minutes": 1.0,
    "h": 60.0,
    "hr": 60.0,
    "hrs": 60.0,
    "hour": 60.0,
    "hours": 60.0,
    "s": 1 / 60,
    "sec": 1 / 60,
    "seconds": 1 / 60,
    "d": 1440.0,
    "day": 1440.0,
    "days": 1440.0,
}


def _duration_minutes(q: Any) -> int | None:
    """A Quantity/Duration in min/h/s -> whole minutes (rounded down); None when unreadable."""
    if not isinstance(q, dict):
        return None
    value = q.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    unit = (_s(q.get("code")) or _s(q.get("unit")) or "").lower()
    factor = _MINUTE_UNITS.get(unit)
    if factor is None:
        return None
    return int(value * factor + 1e-9)


def _extensions(res: Mapping[str, Any], url: str) -> list[dict[str, Any]]:
    ext = res.get("extension")
    if not isinstance(ext, list):
        return []
    return [e for e in ext if isinstance(e, dict) and e.get("url") == url]


def _ext_int(res: Mapping[str, Any], url: str, where: str, problems: list[str]) -> int | None:
    for e in _extensions(res, url):
        for key in ("valueInteger", "valuePositiveInt", "valueUnsignedInt", "valueDecimal"):
            if key in e:
                v = _int(e[key])
                if v is not None and v >= 0:
                    return v
        for key in ("valueQuantity", "valueDuration"):
            if key in e:
                m = _duration_minutes(e[key])
                if m is not None:
                    return m
        problems.append(f"{where}: extension {url.rsplit('/', 1)[-1]} has no readable value")
    return None


def _ext_date(res: Mapping[str, Any], url: str, where: str, problems: list[str]) -> date | None:
    for e in _extensions(res, url):
        v = _date_of(e.get("valueDate")) or _date_of(e.get("valueDateTime"))
        if v is not None:
            return v
        problems.append(f"{where}: extension {url.rsplit('/', 1)[-1]} has no readable date")
    return None


def _where(res: Mapping[str, Any], fallback: str = "resource") -> str:
    rt = res.get("resourceType") if isinstance(res.get("resourceType"), str) else fallback
    rid = _s(res.get("id"))
    return f"{rt}/{rid}" if rid else f"{rt}/?"


# --- references -------------------------------------------------------------------------------


def reference_key(ref: Any) -> str | None:
    """Normalise a reference string to ``Type/id`` where possible.

    ``urn:uuid:...``/``urn:oid:...`` and ``#contained`` are returned unchanged (look them up in the
    related map / contained list). Conditional references (``Type?...``) and junk give None.
    """
    r = _s(ref)
    if r is None:
        return None
    if r.startswith(("urn:", "#")):
        return r
    if "?" in r:
        return None
    r = r.split("/_history/", 1)[0].rstrip("/")
    parts = r.rsplit("/", 2)
    if len(parts) >= 2 and _TYPE_RE.match(parts[-2]) and parts[-1]:
        return f"{parts[-2]}/{parts[-1]}"
    return None


def _key_of(res: Mapping[str, Any]) -> str | None:
    rt, rid = _s(res.get("resourceType")), _s(res.get("id"))
    return f"{rt}/{rid}" if rt and rid else None


def _identifier_pairs(res: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    ids = res.get("identifier")
    if isinstance(ids, dict):
        ids = [ids]
    if not isinstance(ids, list):
        return []
    out = []
    for i in ids:
        if isinstance(i, dict) and _s(i.get("value")):
            out.append((_s(i.get("system")), str(i["value"]).strip()))
    return out


class _Resolver:
    """Resolves Reference objects against the related map (and a resource's contained list)."""

    def __init__(self, related: Mapping[str, Any]):
        self.related = related
        self._by_identifier: dict[tuple[str, str | None, str], dict[str, Any]] | None = None

    def _identifier_index(self) -> dict[tuple[str, str | None, str], dict[str, Any]]:
        if self._by_identifier is None:
            idx: dict[tuple[str, str | None, str], dict[str, Any]] = {}
            for res in self.related.values():
                if not isinstance(res, dict):
                    continue
                rt = _s(res.get("resourceType"))
                if rt is None:
                    continue
                for system, value in _identifier_pairs(res):
                    for t in (rt, "*"):
                        idx.setdefault((t, system, value), res)
                        idx.setdefault((t, None, value), res)
            self._by_identifier = idx
        return self._by_identifier

    def by_identifier(self, rtype: str | None, system: str | None, value: str) -> dict[str, Any] | None:
        # rtype None: an identifier-only reference without Reference.type; any resource type matches
        return self._identifier_index().get((rtype or "*", system, value))

    def resolve(self, ref: Any, owner: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Reference object -> the related resource, or None."""
        if not isinstance(ref, dict):  # a bare string is not a Reference: not read
            return None
        raw = _s(ref.get("reference"))
        if raw is not None:
            hit = self.related.get(raw)
            if isinstance(hit, dict):
                return hit
            if raw.startswith("#"):
                if owner is not None:
                    for c in _list(owner, "contained", "contained", None):
                        if isinstance(c, dict) and _s(c.get("id")) == raw[1:]:
                            return c
                return None
            if "?" in raw:
                return self._conditional(raw)
            key = reference_key(raw)
            if key is not None:
                hit = self.related.get(key)
                return hit if isinstance(hit, dict) else None
            return None
        ident = ref.get("identifier")
        if isinstance(ident, dict) and _s(ident.get("value")):
            return self.by_identifier(
                _s(ref.get("type")), _s(ident.get("system")), str(ident["value"]).strip()
            )
        return None

    def _conditional(self, raw: str) -> dict[str, Any] | None:
        rtype, _, query = raw.partition("?")
        rtype = rtype.rsplit("/", 1)[-1]
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name != "identifier" or not value:
                continue
            system, bar, val = value.rpartition("|")
            if not bar:
                return self.by_identifier(rtype, None, value)
            return self.by_identifier(rtype, system or None, val)
        return None

    def key(self, ref: Any, owner: Mapping[str, Any] | None = None) -> str | None:
        """Canonical ``Type/id`` of what a reference points at (resolved when possible)."""
        res = self.resolve(ref, owner)
        if res is not None:
            k = _key_of(res)
            if k is not None:
                return k
        if isinstance(ref, dict):
            raw = _s(ref.get("reference"))
            if raw and not raw.startswith(("urn:", "#")):
                return reference_key(raw)
        return None


# --- Procedure -> Intervention ----------------------------------------------------------------


def extract_intervention(
    procedure: dict[str, Any], *, encounter_group_size: int | None = None
) -> Intervention:
    """One Procedure -> Intervention. Raises InputError only when it is not a Procedure dict with an id."""
    return _intervention(procedure, encounter_group_size, [])


def _intervention(proc: Any, encounter_group_size: int | None, problems: list[str]) -> Intervention:
    if not isinstance(proc, dict):
        raise InputError("Procedure is not a JSON object", resource_type="Procedure")
    rt = proc.get("resourceType")
    if rt not in (None, "Procedure"):
        raise InputError(
            "resource is not a Procedure", resource_type=_s(rt) or "?", resource_id=_s(proc.get("id"))
        )
    pid = _s(proc.get("id"))
    if pid is None:
        raise InputError("Procedure has no id", resource_type="Procedure")
    where = f"Procedure/{pid}"

    status = _s(proc.get("status"))
    if status is None:
        problems.append(f"{where}: no status")
        status = "unknown"

    # code: text, else the first coding display
    code = proc.get("code")
    codings = _codings(code)
    text = ""
    if isinstance(code, dict):
        text = _s(code.get("text")) or next((c.display for c in codings if c.display), None) or ""
    elif code is not None:
        problems.append(f"{where}: code is not a CodeableConcept")
    if not text and not codings:
        problems.append(f"{where}: no code")

    notes = []
    for n in _list(proc, "note", where, problems):
        t = _s(n.get("text")) if isinstance(n, dict) else None
        if t:
            notes.append(t)

    body_sites = [t for cc in _list(proc, "bodySite", where, problems) for t in _cc_texts(cc)]
    reasons = [t for cc in _list(proc, "reasonCode", where, problems) for t in _cc_texts(cc)]

    cat = proc.get("category")  # 0..1 in R4; some servers send a list
    cats: list[Coding] = []
    for cc in cat if isinstance(cat, list) else [cat]:
        cats.extend(_codings(cc))

    performers = []
    for p in _list(proc, "performer", where, problems):
        if not isinstance(p, dict):
            continue
        actor = _d(p.get("actor"))
        raw = _s(actor.get("reference"))
        key = reference_key(raw) if raw and "?" not in raw else raw
        performers.append(PerformerRef(actor=key, function=_codings(p.get("function"))))

    # performed[x]
    minutes: int | None = None
    start_s = end_s = None
    performed_date: date | None = None
    period = proc.get("performedPeriod")
    pdt = proc.get("performedDateTime")
    if period is not None and pdt is not None:
        problems.append(f"{where}: both performedDateTime and performedPeriod (period used)")
    if isinstance(period, dict):
        start_s, end_s = _s(period.get("start")), _s(period.get("end"))
        performed_date = _date_of(start_s) or _date_of(end_s)
        if start_s and end_s:
            minutes = _minutes(start_s, end_s, where, problems)
        elif start_s:
            if status == "completed":
                problems.append(f"{where}: performedPeriod has no end")
        else:
            problems.append(f"{where}: performedPeriod has no start")
    elif period is not None:
        problems.append(f"{where}: performedPeriod is not a Period")
    if performed_date is None and pdt is not None:
        start_s = start_s or _s(pdt)
        performed_date = _date_of(pdt)
        if performed_date is None:
            problems.append(f"{where}: performedDateTime is not a full date")
    if performed_date is None and period is None and pdt is None and status == "completed":
        problems.append(f"{where}: no performed date")

    group_size = _ext_int(proc, EXT_GROUP_SIZE, where, problems)
    if group_size is None:
        group_size = encounter_group_size

    meta = _d(proc.get("meta"))
    return Intervention(
        id=pid,
        text=text,
        codings=codings,
        notes=tuple(notes),
        body_sites=tuple(body_sites),
        minutes=minutes,
        performed_start=start_s,
        performed_end=end_s,
        performed_date=performed_date,
        status=status,
        version_id=_s(meta.get("versionId")),
        performers=tuple(performers),
        reasons=tuple(reasons),
        categories=tuple(cats),
        group_size=group_size,
    )


def _minutes(start_s: str, end_s: str, where: str, problems: list[str]) -> int | None:
    start, end = _datetime_of(start_s), _datetime_of(end_s)
    if start is None or end is None:
        problems.append(f"{where}: performedPeriod without readable times (no minutes)")
        return None
    if (start.tzinfo is None) != (end.tzinfo is None):
        problems.append(f"{where}: performedPeriod mixes times with and without timezone (no minutes)")
        return None
    seconds = (end - start).total_seconds()
    if seconds < 0:
        problems.append(f"{where}: performedPeriod end before start (no minutes)")
        return None
    if seconds > 12 * 3600:
        problems.append(f"{where}: performedPeriod longer than 12 hours")
    return int(seconds // 60)


# --- Encounter -> EncounterFacts --------------------------------------------------------------


def extract_encounter(encounter: dict[str, Any], related: Mapping[str, dict[str, Any]]) -> EncounterFacts:
    """One Encounter plus everything fetched with it (``"Type/id"`` or fullUrl -> resource) -> facts."""
    if not isinstance(encounter, dict):
        raise InputError("Encounter is not a JSON object", resource_type="Encounter")
    if encounter.get("resourceType") != "Encounter":
        rt = encounter.get("resourceType")
        raise InputError(
            "resource is not an Encounter",
            resource_type=rt if isinstance(rt, str) else "?",
            resource_id=_s(encounter.get("id")),
        )
    eid = _s(encounter.get("id"))
    if eid is None:
        raise InputError("Encounter has no id", resource_type="Encounter")
    if not isinstance(related, Mapping):
        related = {}
    where = f"Encounter/{eid}"
    enc_key = f"Encounter/{eid}"
    problems: list[str] = []
    resolver = _Resolver(related)

    status = _s(encounter.get("status"))
    if status is None:
        problems.append(f"{where}: no status")
        status = "unknown"

    # patient
    subject = encounter.get("subject")
    patient = resolver.resolve(subject, encounter)
    patient_key = resolver.key(subject, encounter)
    if patient_key is not None and not patient_key.startswith("Patient/"):
        problems.append(f"{where}: subject is not a Patient")
        patient_key = None
    patient_id = patient_key.split("/", 1)[1] if patient_key else None
    if patient_id is None:
        problems.append(f"{where}: no readable patient reference")
    elif patient is None:
        problems.append(f"{where}: Patient resource not fetched")

    period = encounter.get("period")
    if period is not None and not isinstance(period, dict):
        problems.append(f"{where}: period is not a Period")
    period = _d(period)
    period_start, period_end = _s(period.get("start")), _s(period.get("end"))

    group_size = _ext_int(encounter, EXT_GROUP_SIZE, where, problems)
    total_timed = _ext_int(encounter, EXT_TOTAL_TIMED_MINUTES, where, problems)
    total_treatment = _ext_int(encounter, EXT_TOTAL_TREATMENT_MINUTES, where, problems)
    if total_treatment is None and encounter.get("length") is not None:
        total_treatment = _duration_minutes(encounter.get("length"))
        if total_treatment is None:
            problems.append(f"{where}: length is not a Duration in min/h/s")

    # resources of the related map, each once: aliases (urn:uuid / absolute fullUrl and Type/id) point
    # at the same dict in memory, but at equal copies after a JSON round trip (the claim check in
    # Redis), so dedupe by Type/id, and by identity only for resources without an id.
    seen: set[object] = set()
    resources: list[dict[str, Any]] = []
    for res in related.values():
        if not isinstance(res, dict):
            continue
        mark: object = _key_of(res) or id(res)
        if mark not in seen:
            seen.add(mark)
            resources.append(res)

    # procedures of this encounter
    interventions: list[Intervention] = []
    unlinked = 0
    for res in resources:
        if res.get("resourceType") != "Procedure":
            continue
        ref = res.get("encounter")
        if not isinstance(ref, dict) or not (_s(ref.get("reference")) or ref.get("identifier")):
            unlinked += 1
            continue
        target = resolver.resolve(ref, res)
        if target is not None:
            if target is not encounter and _key_of(target) != enc_key:
                continue
        elif resolver.key(ref, res) != enc_key:
            continue
        try:
            itv = _intervention(res, group_size, problems)
        except InputError as exc:
            problems.append(f"Procedure/?: skipped ({exc.reason})")
            continue
        interventions.append(_canonical_performers(itv, res, resolver))
    if unlinked:
        problems.append(f"{where}: {unlinked} fetched Procedure(s) without encounter reference ignored")
    interventions.sort(key=lambda i: (i.performed_start or "", i.id))

    dos = _date_of(period_start)
    if dos is None:
        dates = [i.performed_date for i in interventions if i.performed_date]
        dos = min(dates) if dates else None
        if dos is None:
            problems.append(f"{where}: no date of service")

    coverages = [
        _coverage(res, resolver, problems)
        for res in resources
        if res.get("resourceType") == "Coverage"
        and patient_key is not None
        and resolver.key(res.get("beneficiary"), res) == patient_key
    ]
    coverages.sort(key=lambda c: (c.order if c.order is not None else 1 << 30, c.id or ""))

    charges = []
    for res in resources:
        if res.get("resourceType") != "ChargeItem" or patient_key is None:
            continue
        if resolver.key(res.get("subject"), res) != patient_key:
            continue
        charge = _prior_charge(res, resolver, problems)
        if charge is not None:
            charges.append(charge)

    practitioners = _practitioners(encounter, interventions, resources, resolver, problems)
    episode = _episode(encounter, resolver, where, problems)
    prior_visits = _prior_visits(resources, resolver, patient_key, enc_key)
    meta = _d(encounter.get("meta"))

    return EncounterFacts(
        encounter_id=eid,
        status=status,
        patient_id=patient_id,
        date_of_service=dos,
        interventions=tuple(interventions),
        version_id=_s(meta.get("versionId")),
        period_start=period_start,
        period_end=period_end,
        coverages=tuple(coverages),
        practitioners=tuple(practitioners),
        prior_charges=tuple(charges),
        group_size=group_size,
        documented_total_timed_minutes=total_timed,
        documented_total_treatment_minutes=total_treatment,
        episode=episode,
        input_problems=tuple(dict.fromkeys(problems)),
        prior_visits=prior_visits,
    )


# --- the patient's earlier visits (copy-forward check, issue 8 §4) -----------------------------

PRIOR_VISITS_TYPE = "PtbillPriorVisits"  # ptbill's own summary in the claim check (never sent to a server)


def _prior_visits(
    resources: Iterable[dict[str, Any]], resolver: _Resolver, patient_key: str | None, me: str
) -> tuple[PriorVisit, ...]:
    """The patient's other visits: from their Procedures when fetched, and from a summary (the claim
    check keeps hashes and dates only: ``prior_visits_summary``)."""
    if patient_key is None:
        return ()
    visits: dict[str, tuple[date | None, list[str]]] = {}
    for res in resources:
        rt = res.get("resourceType")
        if rt == PRIOR_VISITS_TYPE and _s(res.get("patient")) == patient_key:
            for v in _list(res, "visits", "visits", None):
                if isinstance(v, dict) and _s(v.get("encounter")):
                    enc = str(v["encounter"])
                    hashes = [h for h in _list(v, "hashes", "hashes", None) if isinstance(h, str)]
                    visits.setdefault(enc, (_date_of(v.get("date")), []))[1].extend(hashes)
            continue
        if rt != "Procedure" or _s(res.get("status")) in ("entered-in-error", "not-done"):
            continue
        subject = res.get("subject") if res.get("subject") is not None else res.get("patient")
        if resolver.key(subject, res) != patient_key:
            continue
        other = resolver.key(res.get("encounter"), res)
        if other is None or other == me:
            continue
        try:
            itv = _intervention(res, None, [])
        except InputError:
            continue
        when = itv.performed_date
        if when is None:
            target = resolver.resolve(res.get("encounter"), res)
            when = _date_of(_d(_d(target).get("period")).get("start")) if target is not None else None
        h, _words = text_hash(itv.full_text())
        d, hs = visits.setdefault(other, (when, []))
        if d is None and when is not None:
            visits[other] = (when, hs)
        if h:
            hs.append(h)
    return tuple(PriorVisit(enc, d, tuple(dict.fromkeys(hs))) for enc, (d, hs) in sorted(visits.items()))


def prior_visits_summary(
    related: Mapping[str, Any], patient_key: str | None, me: str
) -> dict[str, Any] | None:
    """The patient's other visits as one small resource for the claim check: dates and text hashes, no
    text (so the stored encounter holds no other visit's documentation). None when there is none."""
    seen: dict[str, dict[str, Any]] = {}
    for res in related.values():
        if isinstance(res, dict):
            seen.setdefault(_key_of(res) or str(id(res)), res)
    visits = _prior_visits(seen.values(), _Resolver(related), patient_key, me)
    if not visits or patient_key is None:
        return None
    return {
        "resourceType": PRIOR_VISITS_TYPE,
        "id": patient_key.split("/", 1)[1],
        "patient": patient_key,
        "visits": [
            {
                "encounter": v.encounter,
                "date": v.date.isoformat() if v.date else None,
                "hashes": list(v.text_hashes),
            }
            for v in visits
        ],
    }


def _canonical_performers(itv: Intervention, proc: dict[str, Any], resolver: _Resolver) -> Intervention:
    """Rewrite performer actors (urn:uuid, conditional, identifier-only) to the resolved ``Type/id``."""
    if not itv.performers:
        return itv
    raw = [p for p in _list(proc, "performer", "", None) if isinstance(p, dict)]
    changed = False
    out = []
    for perf, src in zip(itv.performers, raw, strict=False):
        key = resolver.key(src.get("actor"), proc)
        if key is not None and key != perf.actor:
            perf = replace(perf, actor=key)
            changed = True
        out.append(perf)
    return replace(itv, performers=tuple(out)) if changed else itv


def _coverage(res: dict[str, Any], resolver: _Resolver, problems: list[str]) -> CoverageFacts:
    where = _where(res, "Coverage")
    names: list[str] = []
    idents: list[str] = []
    for p in _list(res, "payor", where, problems):
        if not isinstance(p, dict):
            continue
        target = resolver.resolve(p, res)
        name = _s(p.get("display"))
        if name is None and target is not None and target.get("resourceType") == "Organization":
            name = _s(target.get("name"))
        if name:
            names.append(name)
        ident = p.get("identifier")
        if isinstance(ident, dict) and _s(ident.get("value")):
            idents.append(f"{_s(ident.get('system')) or ''}|{str(ident['value']).strip()}")
    period = _d(res.get("period"))
    order = _int(res.get("order"))
    if not res.get("status"):
        problems.append(f"{where}: no status")
    return CoverageFacts(
        id=_s(res.get("id")),
        status=_s(res.get("status")),
        type_codings=_codings(res.get("type")),
        payor_names=tuple(names),
        payor_identifiers=tuple(idents),
        period_start=_date_of(period.get("start")),
        period_end=_date_of(period.get("end")),
        order=order,
    )


def _prior_charge(res: dict[str, Any], resolver: _Resolver, problems: list[str]) -> PriorCharge | None:
    where = _where(res, "ChargeItem")
    codings = _codings(res.get("code"))
    code = next((c.code for c in codings if c.code and c.system in _BILLING_SYSTEMS), None)
    code = code or next((c.code for c in codings if c.code), None)
    if code is None:
        problems.append(f"{where}: no code (ignored as prior charge)")
        return None
    qty = _d(res.get("quantity")).get("value", 1)
    units = _int(qty)
    if units is None:
        if isinstance(qty, float) and qty >= 0:
            units = int(qty)
        problems.append(f"{where}: quantity is not a whole number")
        if units is None:
            units = 1
    occ = (
        _date_of(res.get("occurrenceDateTime"))
        or _date_of(_d(res.get("occurrencePeriod")).get("start"))
        or _date_of(res.get("enteredDate"))
    )
    if occ is None:
        problems.append(f"{where}: no occurrence date")
    ptbill = any(s == PTBILL_IDENTIFIER_SYSTEM for s, _ in _identifier_pairs(res))
    return PriorCharge(
        code=code,
        units=units,
        date=occ,
        encounter=resolver.key(res.get("context"), res),
        status=_s(res.get("status")) or "unknown",
        written_by_ptbill=ptbill,
    )


def _role_codes(role: Mapping[str, Any]) -> list[Coding]:
    out: list[Coding] = []
    for field in ("code", "specialty"):
        for cc in _list(role, field, "", None):
            out.extend(_codings(cc))
    return out


def _qualification_codes(pract: Mapping[str, Any]) -> list[Coding]:
    out: list[Coding] = []
    for q in _list(pract, "qualification", "", None):
        if isinstance(q, dict):
            out.extend(_codings(q.get("code")))
    return out


def _practitioners(
    encounter: dict[str, Any],
    interventions: Iterable[Intervention],
    resources: list[dict[str, Any]],
    resolver: _Resolver,
    problems: list[str],
) -> list[PractitionerFacts]:
    # (reference object, owner) for every performer and encounter participant, performers first
    refs: list[tuple[Any, dict[str, Any]]] = []
    for itv in interventions:
        for p in itv.performers:
            if p.actor:
                refs.append(({"reference": p.actor}, encounter))
    for part in _list(encounter, "participant", f"Encounter/{encounter.get('id')}", problems):
        if isinstance(part, dict) and isinstance(part.get("individual"), dict):
            refs.append((part["individual"], encounter))

    roles_by_practitioner: dict[str, list[dict[str, Any]]] = {}
    for res in resources:
        if res.get("resourceType") == "PractitionerRole":
            pk = resolver.key(res.get("practitioner"), res)
            if pk:
                roles_by_practitioner.setdefault(pk, []).append(res)

    out: dict[str, PractitionerFacts] = {}
    for ref, owner in refs:
        target = resolver.resolve(ref, owner)
        key = resolver.key(ref, owner)
        if key is None:
            raw = _s(ref.get("reference")) if isinstance(ref, dict) else None
            if raw and ("?" in raw or raw.startswith("urn:")):
                problems.append("performer/participant reference not resolved (conditional or urn)")
            continue
        if not key.startswith(("Practitioner/", "PractitionerRole/")):
            continue  # Patient, RelatedPerson, Organization, Device performers carry no practitioner codes
        if key in out:
            continue
        codes: list[Coding] = []
        practitioner: str | None = None
        if target is None:
            problems.append(f"{key.split('/', 1)[0]} resource of a performer not fetched")
        elif key.startswith("PractitionerRole/"):
            codes.extend(_role_codes(target))
            practitioner = resolver.key(target.get("practitioner"), target)
            pract = resolver.resolve(target.get("practitioner"), target)
            if pract is not None:
                codes.extend(_qualification_codes(pract))
        else:
            practitioner = key
            codes.extend(_qualification_codes(target))
            for role in roles_by_practitioner.get(key, ()):
                codes.extend(_role_codes(role))
        out[key] = PractitionerFacts(
            reference=key, practitioner=practitioner, codes=tuple(dict.fromkeys(codes))
        )
    return list(out.values())


def _episode(
    encounter: dict[str, Any], resolver: _Resolver, where: str, problems: list[str]
) -> EpisodeFacts | None:
    visit = _ext_int(encounter, EXT_VISIT_NUMBER, where, problems)
    last_pr = _ext_int(encounter, EXT_LAST_PROGRESS_REPORT_VISIT, where, problems)
    certified = _ext_date(encounter, EXT_POC_CERTIFIED_DATE, where, problems)
    refs = _list(encounter, "episodeOfCare", where, problems)
    if len(refs) > 1:
        problems.append(f"{where}: {len(refs)} episodeOfCare references (first used)")
    eoc = resolver.resolve(refs[0], encounter) if refs else None
    eoc_id: str | None = None
    start: date | None = None
    if refs:
        key = resolver.key(refs[0], encounter)
        eoc_id = key.split("/", 1)[1] if key and key.startswith("EpisodeOfCare/") else None
        if eoc is None:
            problems.append(f"{where}: EpisodeOfCare not fetched")
    if eoc is not None:
        ewhere = _where(eoc, "EpisodeOfCare")
        eoc_id = _s(eoc.get("id")) or eoc_id
        start = _date_of(_d(eoc.get("period")).get("start"))
        if visit is None:
            visit = _ext_int(eoc, EXT_VISIT_NUMBER, ewhere, problems)
        last_pr = (
            _ext_int(eoc, EXT_LAST_PROGRESS_REPORT_VISIT, ewhere, problems) if last_pr is None else last_pr
        )
        if certified is None:
            certified = _ext_date(eoc, EXT_POC_CERTIFIED_DATE, ewhere, problems)
    if eoc_id is None and start is None and visit is None and last_pr is None and certified is None:
        return None
    return EpisodeFacts(
        id=eoc_id,
        start=start,
        plan_of_care_certified=certified,
        visit_number=visit,
        last_progress_report_visit=last_pr,
    )


# --- Bundle -> per-encounter groups -----------------------------------------------------------


def group_bundle(
    bundle: dict[str, Any],
) -> tuple[list[tuple[dict[str, Any], dict[str, dict[str, Any]]]], list[str]]:
    """Split any Bundle into ``[(encounter, related)]`` for ``extract_encounter``, plus problems.

    ``related`` holds, by ``Type/id`` and by fullUrl (so ``urn:uuid:`` references resolve): the
    encounter itself, its Procedures, the Coverages/ChargeItems/EpisodeOfCares of its patient, and
    all Patients, Practitioners, PractitionerRoles, Organizations and Locations of the bundle.
    A resource without ``id`` under a ``urn:uuid:`` fullUrl gets the uuid as id (a shallow copy;
    the input is never modified). Raises InputError only when ``bundle`` is not a Bundle.
    """
    problems: list[str] = []
    return list(iter_groups(bundle, problems)), problems


def iter_groups(
    bundle: dict[str, Any], problems: list[str]
) -> Iterator[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """:func:`group_bundle` one encounter at a time (``problems`` is complete once it is exhausted).

    Each ``related`` holds every shared resource of the bundle (patients, staff...), so keeping all of
    them costs encounters x shared resources: a consumer that uses each group and lets it go (``ptbill
    process --bundle``) stays linear in the bundle's size. Raises InputError at once when ``bundle`` is
    not a Bundle.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InputError("not a Bundle", resource_type="Bundle")
    return _iter_groups(bundle, problems)


def _iter_groups(
    bundle: dict[str, Any], problems: list[str]
) -> Iterator[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    entries = bundle.get("entry")
    if entries is None:
        entries = []
    elif not isinstance(entries, list):
        problems.append("Bundle.entry is not a list")
        entries = []

    by_key: dict[str, dict[str, Any]] = {}
    aliases: dict[str, dict[str, Any]] = {}
    ordered: list[tuple[str, dict[str, Any], str | None]] = []
    counts: dict[str, int] = {}

    def note(reason: str) -> None:
        counts[reason] = counts.get(reason, 0) + 1

    for entry in entries:
        if not isinstance(entry, dict):
            note("entry is not an object")
            continue
        res = entry.get("resource")
        if res is None:
            note("entry without resource")
            continue
        if not isinstance(res, dict):
            note("entry resource is not an object")
            continue
        rt = _s(res.get("resourceType"))
        if rt is None:
            note("resource without resourceType")
            continue
        full_url = _s(entry.get("fullUrl"))
        rid = _s(res.get("id"))
        if rid is None and full_url:
            if full_url.startswith("urn:uuid:"):
                rid = full_url[len("urn:uuid:") :]
            else:
                k = reference_key(full_url)
                if k and k.startswith(rt + "/"):
                    rid = k.split("/", 1)[1]
            if rid:
                res = {**res, "id": rid}
        if rid is None:
            note(f"{rt} without id")
            continue
        key = f"{rt}/{rid}"
        if key in by_key:
            note(f"duplicate {rt} entry (first kept)")
            continue
        by_key[key] = res
        if full_url and full_url != key:
            aliases[full_url] = res
        ordered.append((key, res, full_url))

    lookup: dict[str, dict[str, Any]] = {**by_key, **aliases}
    resolver = _Resolver(lookup)

    shared: dict[str, dict[str, Any]] = {}
    procs_by_enc: dict[str, list[tuple[str, dict[str, Any], str | None]]] = {}
    by_patient: dict[str, list[tuple[str, dict[str, Any], str | None]]] = {}
    encounters: list[tuple[str, dict[str, Any], str | None]] = []
    for item in ordered:
        key, res, full_url = item
        rt = key.split("/", 1)[0]
        if rt in _SHARED_TYPES:
            shared[key] = res
            if full_url and full_url != key:
                shared[full_url] = res
        elif rt == "Encounter":
            encounters.append(item)
        elif rt == "Procedure":
            ref = res.get("encounter")
            ek = resolver.key(ref, res) if isinstance(ref, dict) else None
            if ek is None:
                note("Procedure without readable encounter reference")
            else:
                procs_by_enc.setdefault(ek, []).append(item)
        elif rt in _PATIENT_SCOPED:
            pk = resolver.key(res.get(_PATIENT_SCOPED[rt]), res)
            if pk is None:
                note(f"{rt} without readable patient reference")
            else:
                by_patient.setdefault(pk, []).append(item)

    enc_keys = {k for k, _, _ in encounters}
    for ek in procs_by_enc:
        if ek not in enc_keys:
            note("Procedure whose Encounter is not in the bundle")

    for key, enc, full_url in encounters:
        related = dict(shared)
        related[key] = enc
        if full_url and full_url != key:
            related[full_url] = enc
        pk = resolver.key(enc.get("subject"), enc)
        for k, res, fu in procs_by_enc.get(key, []) + (by_patient.get(pk, []) if pk else []):
            related[k] = res
            if fu and fu != k:
                related[fu] = res
        yield enc, related

    problems.extend(f"{reason}: {n}" for reason, n in counts.items())
