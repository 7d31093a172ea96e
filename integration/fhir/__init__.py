"""FHIR I/O: the REST client and its authentication schemes."""

from integration.fhir.auth import (
    DEFAULT_SCOPE,
    Auth,
    BasicAuth,
    BearerAuth,
    NoAuth,
    SmartBackendAuth,
    auth_from_settings,
)
from integration.fhir.client import (
    ClientStats,
    EntryResult,
    FhirClient,
    outcome_text,
    parse_retry_after,
    parse_transaction_response,
)

__all__ = [
    "DEFAULT_SCOPE",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "ClientStats",
    "EntryResult",
    "FhirClient",
    "NoAuth",
    "SmartBackendAuth",
    "auth_from_settings",
    "outcome_text",
    "parse_retry_after",
    "parse_transaction_response",
]
