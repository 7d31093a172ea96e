"""Deciding and writing one encounter: the claim check in, the difference written back.

The reads of a sync run are in ``integration.fhir.queries`` (all FHIR searches), the claim-check shape in
``integration.claim``, the run and encounter orchestration in ``integration.runner``; their names are
re-exported here for the callers that imported them from this module.

Writing (per encounter) is ``integration.pipeline`` (decide and write, versioned, portable); this module
keeps what both sides share: deciding one encounter's claim check and validating what is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

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
from integration.model import Decision, EncounterFacts
from mappings.loader import Tables

log = logging.getLogger("ptbill.sync")

OUTPUT_TYPES = ("ChargeItem", "DetectedIssue", "Task")


# --- deciding one encounter (writing it: integration.pipeline) ----------------------------------


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


