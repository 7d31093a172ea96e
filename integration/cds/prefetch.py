"""Prefetch templates and prefetched data (CDS Hooks 2.0 "Providing FHIR Resources to a CDS Service").

The templates ask for what the sync reads for one encounter: the Encounter, its Procedures with their
performers, the patient's Coverages (with payor Organizations), EpisodesOfCare and ChargeItems (prior
charges, for the KX estimate). Prefetched data is then turned into the same ``(encounter, related)`` pair
``integration.fhir.extract.extract_encounter`` takes from a sync page or ``ptbill process --bundle``:
``discharge_group`` runs it through ``group_bundle``, so references resolve the same way.

Per the spec a key may be missing (the EHR chose not to satisfy it, or failed: an OperationOutcome), or
``null`` (satisfied, no data). ``missing`` lists the former; the service then fetches with the EHR's
``fhirAuthorization`` or answers 412.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from integration.cds.cards import OPEN_TASK_STATUSES
from integration.errors import InputError
from integration.fhir.extract import group_bundle
from integration.fhir.writeback import PTBILL_TAG, own_suggestion

_TAG = f"{PTBILL_TAG}|ptbill"

DISCHARGE_PREFETCH: Mapping[str, str] = {
    "encounter": "Encounter/{{context.encounterId}}",
    # performers as the sync resolves them: the Practitioner/PractitionerRole, a role's practitioner, a
    # practitioner's roles (discipline and therapist/assistant come from their codes)
    "procedures": "Procedure?encounter={{context.encounterId}}&_include=Procedure:performer"
    "&_include:iterate=PractitionerRole:practitioner&_revinclude:iterate=PractitionerRole:practitioner",
    "coverage": "Coverage?patient={{context.patientId}}&_include=Coverage:payor",
    "episodes": "EpisodeOfCare?patient={{context.patientId}}",
    "charges": "ChargeItem?patient={{context.patientId}}",
    # the patient's other visits, as the sync reads them for the copy-forward check (kept as dates and text
    # hashes only: integration.claim.attach_context)
    "visits": "Procedure?patient={{context.patientId}}",
}
# Without these the decision is not the sync's (no interventions, or the wrong payer rules): fetch or 412.
DISCHARGE_REQUIRED = ("encounter", "procedures", "coverage")
PATIENT_VIEW_PREFETCH: Mapping[str, str] = {
    "flags": "Flag?patient={{context.patientId}}&status=active&_tag=" + _TAG,
    "tasks": "Task?patient={{context.patientId}}&status=" + ",".join(OPEN_TASK_STATUSES) + "&_tag=" + _TAG,
}
PATIENT_VIEW_REQUIRED = ("flags", "tasks")


@dataclass(frozen=True)
class Prefetched:
    """The resources of the satisfied keys (each once, with its fullUrl when given) and what was not."""

    entries: tuple[tuple[str | None, dict[str, Any]], ...]  # (fullUrl, resource)
    missing: tuple[str, ...]  # keys absent, or answered with an OperationOutcome
    provided: tuple[str, ...]

    @property
    def resources(self) -> list[dict[str, Any]]:
        return [r for _, r in self.entries]


def read_prefetch(prefetch: Any, keys: Iterable[str]) -> Prefetched:
    """Collect the resources of ``prefetch`` (the request's object) for the wanted ``keys``.

    A value may be a resource, a searchset Bundle (entries with ``search.mode`` match or include; outcome
    entries are skipped) or ``null``. Anything else under a wanted key counts as missing, and so does a
    paginated searchset (a ``next`` link: the rest was not sent).
    """
    wanted = list(keys)
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        raise InputError("prefetch is not an object", resource_type="prefetch")
    entries: list[tuple[str | None, dict[str, Any]]] = []
    seen: set[str] = set()
    missing: list[str] = []
    provided: list[str] = []
    for key in wanted:
        if key not in prefetch:
            missing.append(key)
            continue
        value = prefetch[key]
        if value is None:
            provided.append(key)
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            missing.append(key)
            continue
        if value["resourceType"] == "OperationOutcome":
            missing.append(key)
            continue
        if value["resourceType"] == "Bundle" and any(
            isinstance(ln, dict) and ln.get("relation") == "next" for ln in value.get("link") or []
        ):
            missing.append(key)
            continue
        provided.append(key)
        if value["resourceType"] == "Bundle":
            for e in value.get("entry") or []:
                if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
                    continue
                mode = (e.get("search") or {}).get("mode") if isinstance(e.get("search"), dict) else None
                res = e["resource"]
                if mode == "outcome" or res.get("resourceType") == "OperationOutcome":
                    continue
                _add(entries, seen, e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None, res)
        else:
            _add(entries, seen, None, value)
    return Prefetched(tuple(entries), tuple(missing), tuple(provided))


def _add(
    entries: list[tuple[str | None, dict[str, Any]]],
    seen: set[str],
    full_url: str | None,
    res: dict[str, Any],
) -> None:
    rtype, rid = res.get("resourceType"), res.get("id")
    key = f"{rtype}/{rid}" if isinstance(rtype, str) and isinstance(rid, str) else None
    if key is not None:
        if key in seen:
            return
        seen.add(key)
    entries.append((full_url, res))



def discharge_group(
    encounter_id: str, resources: Iterable[tuple[str | None, dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]] | None:
    """``(encounter, related)`` for ``extract_encounter`` from prefetched resources, or None when the
    Encounter is not among them. ptbill's own unreviewed ChargeItems are left out, as in the sync."""
    entries = []
    for full_url, res in resources:
        if own_suggestion(res):
            continue
        entry: dict[str, Any] = {"resource": res}
        if full_url:
            entry["fullUrl"] = full_url
        entries.append(entry)
    groups, _ = group_bundle({"resourceType": "Bundle", "type": "collection", "entry": entries})
    for enc, related in groups:
        if enc.get("id") == encounter_id:
            return enc, related
    return None
