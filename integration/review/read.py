"""Read what ptbill wrote back from the FHIR server, for a person.

Resources are found by ptbill's encounter tag (``{ENCOUNTER_TAG}|{encounter id}``), never by how their ids
or identifiers are built. Retired suggestions (ChargeItem/DetectedIssue ``entered-in-error``) are left
out; everything a person has acted on is shown with its status. Alongside: the encounter's date and
status, the therapists' names (Practitioner/PractitionerRole), the payer (the patient's Coverage on the
date of service) and, for one encounter, what the therapist documented (the Procedures' text).

Searches go in batches (OR lists of up to ``BATCH`` values), so a month of a clinic costs a few dozen
requests, not one per encounter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import Any

from integration.fhir.client import FhirClient
from integration.fhir.writeback import (
    ENCOUNTER_TAG,
    EXT_EVIDENCE,
    EXT_MINUTES,
    EXT_MODIFIER,
    EXT_UNIT_RULE,
    PTBILL_TAG,
)
from integration.review.lookup import code_description, estimated_amount
from integration.review.model import EncounterView, FindingView, FlagView, LineView, TaskView
from mappings.loader import Tables

BATCH = 40
RETIRED = {"ChargeItem": "entered-in-error", "DetectedIssue": "entered-in-error"}
UNKNOWN_PAYER = "(no coverage on file)"


def _chunks(items: Sequence[str], n: int = BATCH) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield list(items[i : i + n])


def _first_code(cc: Any) -> str:
    if not isinstance(cc, dict):
        return "?"
    for c in cc.get("coding") or []:
        if isinstance(c, dict) and c.get("code"):
            return str(c["code"])
    return str(cc.get("text") or "?")


def _exts(res: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [x for x in res.get("extension") or [] if isinstance(x, dict) and x.get("url") == url]


def _ref(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) and ref else None


def encounter_of(res: dict[str, Any]) -> str | None:
    for t in (res.get("meta") or {}).get("tag") or []:
        if isinstance(t, dict) and t.get("system") == ENCOUNTER_TAG and t.get("code"):
            return str(t["code"])
    return None


def person_name(res: dict[str, Any]) -> str | None:
    for n in res.get("name") or []:
        if not isinstance(n, dict):
            continue
        if n.get("text"):
            return str(n["text"])
        parts = [*(n.get("prefix") or []), *(n.get("given") or []), n.get("family"), *(n.get("suffix") or [])]
        text = " ".join(str(p) for p in parts if p)
        if text:
            return text
    return None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def payer_name(coverages: Iterable[dict[str, Any]], on: str | None) -> str:
    """The payer of the primary Coverage active on the date of service (lowest ``order``)."""
    when = _date(on)
    usable: list[tuple[int, str]] = []
    for c in coverages:
        if c.get("status") not in (None, "active"):
            continue
        period = c.get("period") or {}
        start, end = _date(period.get("start")), _date(period.get("end"))
        if when and ((start and when < start) or (end and when > end)):
            continue
        names = [p.get("display") for p in c.get("payor") or [] if isinstance(p, dict) and p.get("display")]
        kind = c.get("type") or {}
        label = names[0] if names else kind.get("text") or (kind.get("coding") or [{}])[0].get("display")
        order_value = c.get("order")
        order = order_value if isinstance(order_value, int) else 99
        usable.append((order, str(label or "(unnamed payer)")))
    return min(usable)[1] if usable else UNKNOWN_PAYER


def procedure_text(res: dict[str, Any]) -> str | None:
    code = res.get("code") or {}
    text = code.get("text") or next(
        (c.get("display") for c in code.get("coding") or [] if isinstance(c, dict) and c.get("display")), None
    )
    notes = [n.get("text") for n in res.get("note") or [] if isinstance(n, dict) and n.get("text")]
    parts = [str(p) for p in [text, *notes] if p]
    return " — ".join(parts) if parts else None


class Reader:
    """Reads ptbill's output for encounters through one FhirClient; amounts from ``tables``."""

    def __init__(self, client: FhirClient, tables: Tables):
        self.client = client
        self.tables = tables

    # -- searches --------------------------------------------------------------------------------

    def _search(self, rtype: str, params: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[Any]]:
        matches: list[dict[str, Any]] = []
        included: list[dict[str, Any]] = []
        for e in self.client.search_entries(rtype, params):
            res = e.get("resource")
            if not isinstance(res, dict):
                continue
            mode = (e.get("search") or {}).get("mode", "match")
            if mode == "outcome" or res.get("resourceType") == "OperationOutcome":
                continue
            (included if mode == "include" else matches).append(res)
        return matches, included

    def _tagged(self, rtype: str, encounter_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for batch in _chunks(list(dict.fromkeys(encounter_ids))):
            tags = ",".join(f"{ENCOUNTER_TAG}|{e}" for e in batch)
            found, _ = self._search(rtype, [("_tag", tags)])
            for res in found:
                enc = encounter_of(res)
                if enc in batch:
                    out[enc].append(res)
        return out

    def _by_id(self, rtype: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for batch in _chunks(sorted(set(ids))):
            found, _ = self._search(rtype, [("_id", ",".join(batch))])
            out.update({f"{rtype}/{r.get('id')}": r for r in found})
        return out

    def people(self, refs: Iterable[str]) -> dict[str, str]:
        """Practitioner / PractitionerRole reference -> the person's name (the reference when unknown)."""
        refs = set(refs)
        names: dict[str, str] = {}
        roles = sorted(r.split("/", 1)[1] for r in refs if r.startswith("PractitionerRole/"))
        role_person: dict[str, str] = {}
        practitioners: dict[str, dict[str, Any]] = {}
        for batch in _chunks(roles):
            found, included = self._search(
                "PractitionerRole", [("_id", ",".join(batch)), ("_include", "PractitionerRole:practitioner")]
            )
            for role in found:
                p = _ref(role.get("practitioner"))
                if p:
                    role_person[f"PractitionerRole/{role.get('id')}"] = p
            practitioners.update({f"Practitioner/{r.get('id')}": r for r in included})
        wanted = {
            r.split("/", 1)[1] for r in refs | set(role_person.values()) if r.startswith("Practitioner/")
        }
        missing = [w for w in wanted if f"Practitioner/{w}" not in practitioners]
        practitioners.update(self._by_id("Practitioner", missing))
        for ref in refs:
            person = practitioners.get(role_person.get(ref, ref))
            names[ref] = (person_name(person) if person else None) or ref
        return names

    def coverages(self, patients: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for batch in _chunks(sorted(set(patients))):
            found, _ = self._search("Coverage", [("beneficiary", ",".join(batch))])
            for c in found:
                ben = _ref(c.get("beneficiary"))
                if ben:
                    out[ben].append(c)
        return out

    # -- views -----------------------------------------------------------------------------------

    def _views(
        self, encounters: dict[str, dict[str, Any]], *, documented: bool, flags: bool
    ) -> list[EncounterView]:
        ids = sorted(encounters)
        charges = self._tagged("ChargeItem", ids)
        issues = self._tagged("DetectedIssue", ids)
        tasks = self._tagged("Task", ids)
        provenance = self._tagged("Provenance", ids) if documented else {}
        wrote = [e for e in ids if charges.get(e) or issues.get(e) or tasks.get(e) or provenance.get(e)]
        performers = {
            a
            for e in wrote
            for ci in charges.get(e, [])
            for p in ci.get("performer") or []
            if (a := _ref((p or {}).get("actor")))
        }
        names = self.people(performers) if performers else {}
        patients = {
            p
            for e in wrote
            if (p := _ref(encounters[e].get("subject")) or _first_subject(charges.get(e, [])))
        }
        cover = self.coverages(patients) if patients else {}
        procs: dict[str, dict[str, Any]] = {}
        if documented:
            refs = {
                _ref(s) or "" for e in wrote for ci in charges.get(e, []) for s in ci.get("service") or []
            }
            procs = self._by_id("Procedure", [r.split("/", 1)[1] for r in refs if r.startswith("Procedure/")])
        patient_flags: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if flags and patients:
            for batch in _chunks(sorted(patients)):
                found, _ = self._search(
                    "Flag", [("_tag", f"{PTBILL_TAG}|ptbill"), ("subject", ",".join(batch))]
                )
                for f in found:
                    if s := _ref(f.get("subject")):
                        patient_flags[s].append(f)
        out: list[EncounterView] = []
        for e in wrote:
            enc = encounters[e]
            patient = _ref(enc.get("subject")) or _first_subject(charges.get(e, []))
            when = str((enc.get("period") or {}).get("start") or "")[:10] or None
            covers = cover.get(patient or "", [])
            lines, retired = [], 0
            for ci in charges.get(e, []):
                if ci.get("status") == RETIRED["ChargeItem"]:
                    retired += 1
                    continue
                lines.append(self._line(e, ci, names, procs, covers, when))
            findings = []
            for di in issues.get(e, []):
                if di.get("status") == RETIRED["DetectedIssue"]:
                    retired += 1
                    continue
                findings.append(
                    FindingView(
                        e,
                        _first_code(di.get("code")),
                        str(di.get("severity") or "moderate"),
                        str(di.get("detail") or ""),
                        str(di.get("status") or "?"),
                    )
                )
            task_views = [
                TaskView(
                    e,
                    _first_code(t.get("code")),
                    str(t.get("description") or ""),
                    str(t.get("status") or "?"),
                    str(t.get("priority") or "routine"),
                )
                for t in tasks.get(e, [])
            ]
            prov = sorted(provenance.get(e, []), key=lambda p: str(p.get("recorded") or ""))
            out.append(
                EncounterView(
                    encounter_id=e,
                    date=when or (lines[0].date if lines else None),
                    status=enc.get("status") if isinstance(enc.get("status"), str) else None,
                    patient=patient,
                    payer=payer_name(covers, when),
                    lines=tuple(sorted(lines, key=lambda ln: (ln.date or "", ln.code))),
                    findings=tuple(sorted(findings, key=lambda f: (f.code, f.detail))),
                    tasks=tuple(sorted(task_views, key=lambda t: (not t.open, t.code))),
                    flags=tuple(
                        FlagView(
                            _first_code(f.get("code")),
                            str((f.get("code") or {}).get("text") or ""),
                            str(f.get("status") or "?"),
                        )
                        for f in patient_flags.get(patient or "", [])
                        if f.get("status") == "active"
                    ),
                    written_at=str(prov[-1].get("recorded")) if prov else None,
                    written_by=_agent(prov[-1]) if prov else None,
                    retired=retired,
                )
            )
        return sorted(out, key=lambda v: (v.date or "", v.encounter_id))

    def _line(
        self,
        encounter_id: str,
        ci: dict[str, Any],
        names: dict[str, str],
        procs: dict[str, dict[str, Any]],
        coverages: list[dict[str, Any]],
        encounter_date: str | None,
    ) -> LineView:
        code = _first_code(ci.get("code"))
        units = (ci.get("quantity") or {}).get("value")
        n_units = int(units) if isinstance(units, int | float) else 0
        day = ci.get("occurrenceDateTime") or (ci.get("occurrencePeriod") or {}).get("start")
        day = str(day)[:10] if day else None
        mods = tuple(_first_code(x.get("valueCodeableConcept")) for x in _exts(ci, EXT_MODIFIER))
        minutes = next((x.get("valueInteger") for x in _exts(ci, EXT_MINUTES)), None)
        actors = [a for p in ci.get("performer") or [] if (a := _ref((p or {}).get("actor")))]
        documented = tuple(
            t for s in ci.get("service") or [] if (t := procedure_text(procs.get(_ref(s) or "", {})))
        )
        return LineView(
            encounter_id=encounter_id,
            date=day,
            code=code,
            description=code_description(self.tables, code, day),
            units=n_units,
            modifiers=mods,
            minutes=minutes if isinstance(minutes, int) else None,
            unit_rule=next((str(x.get("valueCode")) for x in _exts(ci, EXT_UNIT_RULE)), None),
            status=str(ci.get("status") or "?"),
            evidence=tuple(
                str(x.get("valueString")) for x in _exts(ci, EXT_EVIDENCE) if x.get("valueString")
            ),
            documented=documented,
            therapist=", ".join(dict.fromkeys(names.get(a, a) for a in actors)) or "(no performer)",
            payer=payer_name(coverages, day or encounter_date),
            amount=estimated_amount(self.tables, code, n_units, day),
        )

    def encounter(self, encounter_id: str) -> EncounterView | None:
        """One encounter as ptbill left it (None when ptbill wrote nothing for it)."""
        found, _ = self._search("Encounter", [("_id", encounter_id)])
        enc = found[0] if found else {"resourceType": "Encounter", "id": encounter_id}
        views = self._views({encounter_id: enc}, documented=True, flags=True)
        return views[0] if views else None

    def window(self, since: date, until: date) -> list[EncounterView]:
        """Every encounter with a date of service in [since, until] that ptbill wrote for."""
        found, _ = self._search(
            "Encounter", [("date", f"ge{since.isoformat()}"), ("date", f"le{until.isoformat()}")]
        )
        encounters: dict[str, dict[str, Any]] = {}
        for enc in found:
            start = _date((enc.get("period") or {}).get("start"))
            if enc.get("id") and (start is None or since <= start <= until):
                encounters[str(enc["id"])] = enc
        return self._views(encounters, documented=False, flags=False) if encounters else []

    def active_flags(self) -> list[FlagView]:
        found, _ = self._search("Flag", [("_tag", f"{PTBILL_TAG}|ptbill"), ("status", "active")])
        return [
            FlagView(_first_code(f.get("code")), str((f.get("code") or {}).get("text") or ""), "active")
            for f in found
        ]


def _first_subject(resources: list[dict[str, Any]]) -> str | None:
    return next((s for r in resources if (s := _ref(r.get("subject")))), None)


def _agent(prov: dict[str, Any]) -> str | None:
    for a in prov.get("agent") or []:
        who = (a or {}).get("who") or {}
        if who.get("display"):
            return str(who["display"])
    return None
