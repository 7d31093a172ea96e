"""The one error tree of ptbill.

Documentation gaps are *findings* (data, see ``integration.model.Finding``), never exceptions.
Exceptions are for things that stop a unit of work: the network, the server, a bad mapping table,
bad configuration, or an input resource that cannot be read at all.
"""

from __future__ import annotations

from typing import Any


class PtbillError(Exception):
    """Root of every ptbill exception."""


# --- configuration and data tables -----------------------------------------------------------


class ConfigError(PtbillError):
    """A PTBILL_* setting is missing or malformed. The process must not start."""


class MappingTableError(PtbillError):
    """A mapping table in mappings/ is invalid. The worker refuses to start.

    ``problems`` lists every problem found, each as (file, row, message), so ``ptbill mappings check``
    can print all of them at once rather than one per run.
    """

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = list(problems)
        lines = [f"{f}:{row}: {msg}" for f, row, msg in self.problems]
        super().__init__(f"{len(self.problems)} mapping table problem(s):\n" + "\n".join(lines))


# --- FHIR server I/O --------------------------------------------------------------------------


class FhirError(PtbillError):
    """A FHIR request failed. ``status`` is the HTTP status (None for connection-level failures).

    ``outcome`` is the readable text of an OperationOutcome body when the server sent one.
    The URL is kept without query string so no search values (which may identify patients)
    travel into logs.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        outcome: str | None = None,
        retry_after: float | None = None,
    ):
        self.status = status
        self.method = method
        self.url = url
        self.outcome = outcome
        self.retry_after = retry_after
        super().__init__(message)

    def summary(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "status": self.status,
            "method": self.method,
            "url": self.url,
            "outcome": self.outcome,
        }


class FhirTemporaryError(FhirError):
    """408, 429, 5xx, connection reset, timeout: worth retrying (honour ``retry_after``)."""


class FhirFatalError(FhirError):
    """Any other failure: retrying the same request will not help."""


class FhirAuthError(FhirFatalError):
    """Authentication or authorisation failed (after one re-authentication attempt)."""


class FhirNotFound(FhirFatalError):
    """404/410 on a read."""


class FhirConflict(FhirFatalError):
    """409/412: a version conflict or a conditional operation matched more than one resource."""


# --- input data -------------------------------------------------------------------------------


class InputError(PtbillError):
    """An input resource or bundle cannot be read at all (wrong type, missing id, not JSON).

    It is counted with its ``reason`` and becomes a dead letter or finding; it never vanishes.
    """

    def __init__(self, reason: str, *, resource_type: str | None = None, resource_id: str | None = None):
        self.reason = reason
        self.resource_type = resource_type
        self.resource_id = resource_id
        super().__init__(f"{resource_type or 'input'}/{resource_id or '?'}: {reason}")


class OutputValidationError(PtbillError):
    """A resource ptbill built failed R4 validation before being written. A bug, never retried."""


class LockBusy(PtbillError):
    """Another worker holds the lock for the same server or encounter."""
