"""The common failures of an operator's day as one line each, with the fix (instead of a traceback).

``explain(exc, settings)`` -> (what happened, what to do, exit code) for Redis down, the broker down, a bad
URL, 401/403, 404 on the base, an unreachable FHIR server, bad settings and bad tables. Text comes from
ptbill's own fields (method, URL without query, status, error kind) — never an OperationOutcome or other
server text, which can name a patient.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.exceptions
from kombu.exceptions import OperationalError as BrokerError

from integration.errors import (
    ConfigError,
    FhirAuthError,
    FhirError,
    FhirNotFound,
    FhirTemporaryError,
    InputError,
    MappingTableError,
    PtbillError,
)
from integration.settings import Settings, redact_url

EXIT_FAILED = 1  # the command ran and found a problem (a failed run, a FAIL in doctor)
EXIT_ENVIRONMENT = 2  # it could not run: settings, Redis, broker, FHIR server
EXIT_TABLES = 3  # the mapping tables are invalid


@dataclass(frozen=True)
class Explained:
    what: str
    fix: str
    code: int = EXIT_ENVIRONMENT

    def line(self) -> str:
        return f"{self.what}; {self.fix}" if self.fix else self.what


def fhir_request(e: FhirError) -> str:
    """``GET https://emr/fhir/metadata -> HTTP 401`` (no query string, no server text)."""
    where = " ".join(x for x in (e.method, e.url) if x)
    return (where or "FHIR request") + (f" -> HTTP {e.status}" if e.status else "")


def _transport(e: FhirError) -> str:
    """ptbill's own transport reason ('connection failed or reset', 'read timeout', 'TLS error')."""
    text = str(e)
    return text.split(": ", 1)[1] if ": " in text and e.status is None else text


def explain_fhir(e: FhirError) -> Explained:
    if isinstance(e, FhirAuthError):
        if e.status in (401, 403) or e.status is None:
            return Explained(
                f"the FHIR server refused ptbill's credentials ({fhir_request(e)})"
                if e.status
                else f"FHIR authentication failed: {e}",
                "check PTBILL_FHIR_AUTH and its credentials (ptbill doctor checks them)",
            )
        return Explained(
            f"FHIR authentication failed ({fhir_request(e)})",
            "check the SMART client registration, key and scopes (PTBILL_SMART_*)",
        )
    if isinstance(e, FhirNotFound):
        return Explained(
            f"nothing there: {fhir_request(e)}",
            "PTBILL_FHIR_BASE_URL must be the server's FHIR base (often ending in /fhir or /baseR4)",
        )
    if isinstance(e, FhirTemporaryError) and e.status is None:
        return Explained(
            f"cannot reach the FHIR server: {e.method or 'GET'} {e.url or '?'}: {_transport(e)}",
            "check PTBILL_FHIR_BASE_URL and that the server is up (ptbill doctor)",
        )
    if isinstance(e, FhirTemporaryError):
        return Explained(
            f"the FHIR server is unavailable ({fhir_request(e)})", "try again later; the next sync retries"
        )
    if e.status is not None and 300 <= e.status < 400:
        return Explained(
            f"the FHIR server redirects ({fhir_request(e)})",
            "set PTBILL_FHIR_BASE_URL to the address it redirects to (http vs https?)",
        )
    return Explained(f"FHIR request failed ({fhir_request(e)})", "ptbill doctor checks the connection")


def explain(exc: BaseException, settings: Settings | None = None) -> Explained | None:
    """One line for a known failure; None for anything else (a bug: the caller shows its class)."""
    if isinstance(exc, ConfigError):
        return Explained(f"configuration error: {exc}", "")
    if isinstance(exc, MappingTableError):
        first = exc.problems[0] if exc.problems else ("?", "?", "?")
        where = (settings.mappings_dir if settings else None) or "the shipped tables"
        return Explained(
            f"{len(exc.problems)} mapping table problem(s) in {where}, "
            f"first {first[0]}: {first[1]}: {first[2]}",
            "ptbill mappings check lists them all",
            EXIT_TABLES,
        )
    if isinstance(exc, redis.exceptions.AuthenticationError):
        url = redact_url(settings.redis_url) if settings else "PTBILL_REDIS_URL"
        return Explained(
            f"Redis at {url} refused the credentials", "fix the password in PTBILL_REDIS_URL (or _BROKER_URL)"
        )
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        url = redact_url(settings.redis_url) if settings else "PTBILL_REDIS_URL"
        return Explained(
            f"cannot reach Redis at {url}: {_first_line(exc)}",
            "start Redis or point PTBILL_REDIS_URL at it",
        )
    if isinstance(exc, BrokerError):
        url = redact_url(settings.broker_url) if settings else "PTBILL_BROKER_URL"
        return Explained(
            f"cannot reach the Celery broker at {url}: {_first_line(exc)}",
            "start it or fix PTBILL_BROKER_URL (or run with --inline, without workers)",
        )
    if isinstance(exc, FhirError):
        return explain_fhir(exc)
    if isinstance(exc, InputError):
        return Explained(f"input error: {exc}", "", EXIT_FAILED)
    if isinstance(exc, PtbillError):
        return Explained(str(exc), "", EXIT_FAILED)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError):
        return Explained(f"{exc.strerror}: {exc.filename}", "", EXIT_ENVIRONMENT)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200].rstrip(".") if text else type(exc).__name__
