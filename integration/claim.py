"""The claim check: one encounter and what deciding it needs, in the shape a sync run leaves in Redis.

A page read from the EMR holds many encounters and their context; :func:`slim` keeps what one encounter
needs, :func:`attach_context` adds the patient context and performers fetched per page, and
:class:`Group` is what ``ptbill.encounter.process`` reads back (``StateStore.put_group``/``get_group``).
Pure: plain JSON in and out, no HTTP, Redis or settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integration.fhir import extract as fhir_extract  # the patient's earlier visits (issue 8 §4)
from integration.fhir.extract import reference_key


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


def ref_of(value: Any) -> str | None:
    """``Type/id`` of a Reference object (dict) or reference string, else None."""
    if isinstance(value, dict):
        value = value.get("reference")
    return reference_key(value) if isinstance(value, str) else None


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
