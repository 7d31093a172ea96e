"""The one error tree of ptbill.

Documentation gaps are *findings* (data, see ``integration.model.Finding``), never exceptions.
Exceptions are for things that stop a unit of work: the network, the server, a bad mapping table,
bad configuration, or an input resource that cannot be read at all.
"""

from __future__ import annotations

from typing import Any


class PtbillError(Exception):
    """Root of every ptbill exception."""


class TemporaryError(PtbillError):
    """Worth retrying later: the one thing the Celery task decorator (``tasks.base``) retries on.

    Subclasses: :class:`FhirTemporaryError`, :class:`LockBusy`, :class:`StateUnavailable`. An optional
    ``retry_after`` (seconds) is the least delay the retry waits.
    """

    retry_after: float | None = None


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

    ``outcome`` is the readable text of an OperationOutcome body when the server sent one: it can quote
    submitted values (a patient's name), so it is never logged nor stored (see :func:`reason`).
    The URL is kept without query string so no search values (which may identify patients)
    travel into logs. ``kind`` is ptbill's own word for what went wrong, from a fixed vocabulary
    (``KINDS``): what ``ptbill status`` and dead letters show beside method, URL and status.
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
        kind: str | None = None,
    ):
        self.status = status
        self.method = method
        self.url = url
        self.outcome = outcome
        self.retry_after = retry_after
        self.kind = kind if kind in KINDS else (f"http-{status}" if status else None)
        super().__init__(message)

    def summary(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "kind": self.kind,
            "status": self.status,
            "method": self.method,
            "url": self.url,
            "outcome": self.outcome,
        }


# what a FhirError's ``kind`` may say (anything else becomes "http-<status>" or nothing)
KINDS = frozenset(
    {
        "connection-refused",
        "host-not-found",
        "connect-timeout",
        "connection-reset",
        "read-timeout",
        "deadline",
        "tls",
        "truncated",
        "too-large",
        "not-json",
        "too-deep",
        "redirect",
        "other-origin",
        "paging-loop",
        "page-cap",
        "not-a-bundle",
        "entry-failed",
        "token",
        "discovery",
        "auth-refused",
    }
)


class FhirTemporaryError(FhirError, TemporaryError):
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


class JsonRefused(InputError):
    """JSON from outside that ptbill will not read: ``kind`` is ``not-json`` or ``too-deep``
    (``integration.jsonio``). The reason says where parsing stopped, never what the input held."""

    def __init__(self, kind: str, reason: str):
        self.kind = kind
        super().__init__(reason, resource_type="JSON")


class OutputValidationError(PtbillError):
    """A resource ptbill built failed R4 validation before being written. A bug, never retried."""


class LockBusy(TemporaryError):
    """Another worker holds the lock for the same server or encounter."""


class StateUnavailable(TemporaryError):
    """Redis (sync state) did not answer: the task retries later (``tasks.base`` maps redis errors here)."""


class RunDeadlineExceeded(PtbillError):
    """A sync run took longer than PTBILL_SYNC_DEADLINE: it is failed, its lock released."""


class TaskTimeLimit(PtbillError):
    """A task ran past its time limit (PTBILL_TASK_TIME_LIMIT, or PTBILL_SYNC_DEADLINE for a sync)."""


class TaskFailed(PtbillError):
    """How a ptbill task ends in Celery's FAILURE state: its message is a PHI-free reason only.

    A dead-lettered encounter raises it after it is recorded for ``ptbill retry-failed``, so Flower
    shows FAILURE (not SUCCESS) and the task's result text holds nothing a server said.
    """


# --- PHI-free reasons ---------------------------------------------------------------------------


def reason(exc: BaseException) -> str:
    """What went wrong, from ptbill's own fields only: safe to store, log and print.

    ``FhirFatalError POST https://emr/fhir -> HTTP 422 (http-422)``, ``FhirTemporaryError GET
    https://emr/fhir/Encounter (connection-refused)``, ``InputError Encounter/7: not found``. Never an
    OperationOutcome or other server text, never an exception message from outside ptbill (they may
    quote data); the URL has no query string.
    """
    name = type(exc).__name__
    if isinstance(exc, FhirError):
        where = " ".join(x for x in (exc.method, _no_query(exc.url)) if x)
        parts = [name, where, f"-> HTTP {exc.status}" if exc.status else ""]
        if exc.kind and exc.kind != f"http-{exc.status}":
            parts.append(f"({exc.kind})")
        return " ".join(p for p in parts if p)[:300]
    if isinstance(exc, InputError):
        return f"{name} {exc}"[:300]
    if isinstance(exc, MappingTableError):
        return f"{name}: {len(exc.problems)} problem(s)"
    if isinstance(exc, PtbillError) and type(exc).__module__.startswith("integration"):
        return f"{name}: {exc}"[:300]  # ptbill's own message, written in code
    return name


def _no_query(url: str | None) -> str | None:
    return url.split("?", 1)[0].split("#", 1)[0] if url else url
