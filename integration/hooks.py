"""CDS Hooks service calls: read the request, get the data (prefetch, else the EHR's FHIR server with the
``fhirAuthorization`` token), decide with the sync's own path, return cards. No Celery, no writes.

``encounter-discharge`` decides exactly as a sync would: ``integration.sync.decide_group`` (extraction,
withdrawn encounters, ``integration.decide.decide``) on the same ``(encounter, related)`` shape, with
ptbill's own unreviewed ChargeItems left out of the context. ``patient-view`` presents the patient's
active ptbill Flags and open Tasks. ``cards_for_encounter`` is the same for a demo or a script, reading
with ptbill's own client.

Every call into the sync's read and decide path (``integration.sync``) is in the three functions at the
end of this module (``group_of``, ``fetch_group``, ``decide``), so that a change of that API touches them
only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from integration.cds.cards import (
    OPEN_TASK_STATUSES,
    Card,
    RuleCatalog,
    card_uuid,
    decision_cards,
    patient_view_cards,
)
from integration.cds.discovery import REQUIRED_CONTEXT
from integration.cds.prefetch import (
    DISCHARGE_PREFETCH,
    DISCHARGE_REQUIRED,
    PATIENT_VIEW_PREFETCH,
    PATIENT_VIEW_REQUIRED,
    discharge_group,
    read_prefetch,
)
from integration.errors import FhirError, InputError, PtbillError
from integration.fhir.auth import BearerAuth
from integration.fhir.client import FhirClient
from integration.fhir.writeback import PTBILL_TAG
from integration.model import Decision, EncounterFacts
from integration.sync import (
    Group,
    attach_context,
    context_requests,
    decide_group,
    fetch_context,
    fetch_encounter,
)
from mappings.loader import Tables

log = logging.getLogger("ptbill.hooks")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class HookRequestError(PtbillError):
    """A hook call ptbill cannot answer: ``status`` 400 (bad request) or 412 (data unavailable)."""

    def __init__(self, status: int, reason: str, message: str):
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any] | None
    fhir_server: str | None
    access_token: str | None

    @property
    def patient_id(self) -> str:
        return str(self.context["patientId"])

    @property
    def encounter_id(self) -> str:
        return str(self.context["encounterId"])


def parse_hook_request(body: Any, hook: str) -> HookRequest:
    """Validate a CDS Hooks request body for ``hook`` (HookRequestError 400 on anything malformed)."""
    if not isinstance(body, dict):
        raise HookRequestError(400, "invalid-request", "the request body is not a JSON object")
    if body.get("hook") != hook:
        raise HookRequestError(400, "wrong-hook", f"this service answers the {hook} hook")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not _UUID.match(instance):
        raise HookRequestError(400, "invalid-request", "hookInstance must be a UUID")
    context = body.get("context")
    if not isinstance(context, dict):
        raise HookRequestError(400, "missing-context", "the request has no context object")
    for name in REQUIRED_CONTEXT[hook]:
        value = context.get(name)
        if not isinstance(value, str) or not _ID.match(value):
            raise HookRequestError(400, "missing-context", f"context.{name} is missing or not a FHIR id")
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise HookRequestError(400, "invalid-request", "prefetch must be an object")
    server = body.get("fhirServer")
    auth = body.get("fhirAuthorization")
    token: str | None = None
    if auth is not None:
        if (
            not isinstance(auth, dict)
            or not isinstance(auth.get("access_token"), str)
            or not auth["access_token"]
        ):
            raise HookRequestError(400, "invalid-request", "fhirAuthorization has no access_token")
        if str(auth.get("token_type", "Bearer")).lower() != "bearer":
            raise HookRequestError(400, "invalid-request", "fhirAuthorization.token_type must be Bearer")
        token = auth["access_token"]
        if not isinstance(server, str):
            raise HookRequestError(400, "invalid-request", "fhirAuthorization needs fhirServer")
    if server is not None and (not isinstance(server, str) or not server.startswith(("http://", "https://"))):
        raise HookRequestError(400, "invalid-request", "fhirServer must be an http(s) URL")
    return HookRequest(hook, instance, context, prefetch, server.rstrip("/") if server else None, token)


@dataclass
class HookService:
    """Answers the two hooks. ``allowed_servers``: the fhirServer URLs a token may be used against."""

    tables: Tables
    allowed_servers: tuple[str, ...]
    fetch_timeout: float = 5.0
    verify: bool | str = True

    def __post_init__(self) -> None:
        self.catalog = RuleCatalog.from_tables(self.tables)

    # -- FHIR access with the EHR's token ----------------------------------------------------------
    def _client(self, req: HookRequest, missing: Iterable[str]) -> FhirClient:
        keys = ", ".join(missing)
        if req.access_token is None or req.fhir_server is None:
            raise HookRequestError(
                412, "prefetch-missing", f"prefetch lacks {keys} and the call has no fhirAuthorization"
            )
        if req.fhir_server not in self.allowed_servers:
            raise HookRequestError(
                412,
                "fhir-server-not-allowed",
                "fhirServer is not one ptbill may read (PTBILL_CDS_FHIR_SERVERS)",
            )
        return FhirClient(
            req.fhir_server,
            auth=BearerAuth(req.access_token),
            timeout=self.fetch_timeout,
            retries=0,
            verify=self.verify,
            pool_size=2,
        )

    # -- encounter-discharge ---------------------------------------------------------------------------
    def discharge(self, req: HookRequest) -> tuple[list[Card], dict[str, Any]]:
        """Cards for the encounter, and facts about how they were made (for logs and metrics)."""
        got = read_prefetch(req.prefetch, DISCHARGE_PREFETCH)
        info: dict[str, Any] = {"source": "prefetch", "missing": list(got.missing)}
        need = [k for k in DISCHARGE_REQUIRED if k in got.missing]
        group: Group | None = None
        if need or (got.missing and req.access_token is not None):
            with self._client(req, got.missing) as client:
                try:
                    group = fetch_group(client, req.encounter_id)
                except FhirError as e:
                    raise HookRequestError(
                        412, "fhir-unavailable", f"reading the encounter failed (HTTP {e.status or '-'})"
                    ) from None
            info["source"] = "fhir"
            info["missing"] = []
            if group is None:
                raise HookRequestError(
                    412, "encounter-not-found", "the encounter was not found on fhirServer"
                )
        else:
            pair = discharge_group(req.encounter_id, got.entries)
            if pair is None:
                raise HookRequestError(
                    412, "encounter-not-found", "prefetch.encounter is not context.encounterId"
                )
            group = group_of(pair[0], pair[1])
            # the patient's other visits (prefetch "visits"): dates and text hashes only, as in the sync
            visits = {
                f"Procedure/{r['id']}": r
                for _, r in got.entries
                if r.get("resourceType") == "Procedure" and r.get("id")
            }
            group = attach_context(group, visits)
        facts, decision = decide(group, self.tables)
        if facts.patient_id is not None and facts.patient_id != req.patient_id:
            raise HookRequestError(400, "context-mismatch", "the encounter belongs to another patient")
        cards = decision_cards(facts, decision, self.catalog)
        if info["missing"]:
            cards.append(_partial_card(req, info["missing"], self.catalog))
        info["lines"] = len(decision.lines)
        info["findings"] = len(decision.findings)
        return cards, info

    # -- patient-view -----------------------------------------------------------------------------------
    def patient_view(self, req: HookRequest) -> tuple[list[Card], dict[str, Any]]:
        got = read_prefetch(req.prefetch, PATIENT_VIEW_PREFETCH)
        info: dict[str, Any] = {"source": "prefetch"}
        resources = got.resources
        need = [k for k in PATIENT_VIEW_REQUIRED if k in got.missing]
        if need:
            with self._client(req, need) as client:
                try:
                    resources = resources + patient_items(client, req.patient_id)
                except FhirError as e:
                    raise HookRequestError(
                        412,
                        "fhir-unavailable",
                        f"reading the patient's alerts failed (HTTP {e.status or '-'})",
                    ) from None
            info["source"] = "fhir"
        return patient_view_cards(resources, self.catalog, req.patient_id), info


def _partial_card(req: HookRequest, missing: list[str], catalog: RuleCatalog) -> Card:
    what = {"episodes": "episode of care (progress report, recertification)", "charges": "prior charges (KX)"}
    parts = ", ".join(what.get(m, m) for m in missing)
    return Card(
        uuid=card_uuid(req.hook, req.encounter_id, "partial", ",".join(missing)),
        summary=f"Partial check: the EHR did not provide {parts}",
        indicator="info",
        detail=(
            f"The call's prefetch lacked: {', '.join(missing)}, and no fhirAuthorization was passed, so "
            "the checks that depend on them were made without that data. The background sync checks the "
            "encounter again with all of it."
        ),
        kind="finding",
        topic=("https://ptbill.dev/fhir/CodeSystem/cds", "PARTIAL-DATA", "Partial data"),
        rule_ids=(),
        tables=(),
        fingerprint=catalog.fingerprint,
    )


def patient_items(client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
    """The patient's active ptbill Flags and open ptbill Tasks."""
    tag = f"{PTBILL_TAG}|ptbill"
    out: list[dict[str, Any]] = []
    for rtype, params in (
        ("Flag", [("patient", patient_id), ("status", "active"), ("_tag", tag)]),
        ("Task", [("patient", patient_id), ("status", ",".join(OPEN_TASK_STATUSES)), ("_tag", tag)]),
    ):
        for e in client.search_entries(rtype, params, max_pages=10):
            res = e.get("resource")
            if isinstance(res, dict) and res.get("resourceType") == rtype:
                out.append(res)
    return out


def cards_for_encounter(client: FhirClient, encounter_id: str, tables: Tables) -> list[dict[str, Any]]:
    """The ``encounter-discharge`` cards of one encounter, read with ``client`` (e.g. ptbill's own, for
    ``ptbill demo``), as CDS Hooks JSON. Raises InputError when the encounter is not on the server."""
    group = fetch_group(client, encounter_id)
    if group is None:
        raise InputError(
            "encounter not found on the server", resource_type="Encounter", resource_id=encounter_id
        )
    facts, decision = decide(group, tables)
    return [c.to_json() for c in decision_cards(facts, decision, RuleCatalog.from_tables(tables))]


# --- the sync's read and decide path: the only calls into integration.sync ------------------------------


def group_of(encounter: dict[str, Any], related: dict[str, dict[str, Any]]) -> Group:
    """An encounter and its related resources (from a prefetch) in the shape the sync decides on."""
    return Group(encounter, related)


def fetch_group(client: FhirClient, encounter_id: str) -> Group | None:
    """One encounter with everything the sync reads for it (the runner's ``load_group`` without a claim
    check): the Encounter with Procedures, Patient and EpisodeOfCare, then Coverages, prior ChargeItems and
    performers in one batch."""
    group = fetch_encounter(client, encounter_id)
    if group is None:
        return None
    reqs = context_requests([group], set())
    return attach_context(group, fetch_context(client, reqs)) if reqs else group


def decide(group: Group, tables: Tables) -> tuple[EncounterFacts, Decision]:
    """The sync's own decision for one encounter group (extraction, withdrawn encounters, ``decide()``)."""
    return decide_group(group, tables)
