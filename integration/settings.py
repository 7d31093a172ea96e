"""One settings object built from PTBILL_* environment variables (secrets may come from files).

Only the edges (CLI, Celery tasks, demo) read settings; the domain never imports this module.
Every setting is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, cast

from integration.errors import ConfigError
from integration.fhir.auth import DEFAULT_SCOPE

_SECRET_FIELDS = {"auth_password", "auth_token", "smart_private_key", "flower_basic_auth"}
_URL_FIELDS = {"broker_url", "redis_url", "fhir_base_url", "smart_token_url"}
_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://)([^@/]*)@", re.IGNORECASE)

log = logging.getLogger("ptbill.settings")


def redact_url(url: str) -> str:
    """``redis://:secret@host/0`` -> ``redis://***@host/0`` (credentials in a URL are a secret too)."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def _read_secret(env: Mapping[str, str], name: str) -> str | None:
    """PTBILL_X or PTBILL_X_FILE (first the file, for Docker/K8s secrets)."""
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{name}_FILE cannot be read: {e.strerror}") from None
    return env.get(name) or None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    fhir_base_url: str = "http://127.0.0.1:8090/fhir"
    auth_type: str = "none"  # none | basic | bearer | smart
    auth_user: str | None = None
    auth_password: str | None = field(default=None, repr=False)
    auth_token: str | None = field(default=None, repr=False)
    smart_client_id: str | None = None
    smart_private_key: str | None = field(default=None, repr=False)  # PEM text
    smart_kid: str | None = None
    smart_alg: str = "RS384"
    smart_token_url: str | None = None
    smart_scope: str = DEFAULT_SCOPE
    tls_verify: bool = True
    ca_bundle: str | None = None
    http_timeout: float = 30.0
    page_size: int = 100
    max_response_bytes: int = 50_000_000
    broker_url: str = "redis://127.0.0.1:6379/0"
    redis_url: str = "redis://127.0.0.1:6379/0"  # state: watermarks, ledger, locks, dead letters
    encounter_statuses: tuple[str, ...] = ("finished",)
    sync_interval_seconds: int = 300
    initial_since: str = "1970-01-01T00:00:00Z"
    procedure_fetch: Literal["by-encounter", "revinclude"] = "by-encounter"  # see integration/sync.py
    write_mode: Literal["id", "conditional"] = (
        "id"  # id: PUT Type/{deterministic id}; conditional: PUT Type?identifier=...
    )
    clock_lag_seconds: float = 2.0  # window end = server time minus this (in-flight commits)
    rate_limit: str = "20/s"  # Celery rate limit of EMR-calling tasks, per worker
    max_retries: int = 5
    visibility_timeout: int = 3600
    lock_timeout: int = 1800
    flower_basic_auth: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    log_format: str = "json"  # json | text
    mappings_dir: str | None = None  # override the shipped tables (for a clinic's own tables)
    retry_base_seconds: float = 1.0  # Celery retry delay base: base * 2**(attempt), with jitter
    retry_max_seconds: float = 600.0  # cap of a Celery retry delay; must stay below visibility_timeout

    @property
    def server_key(self) -> str:
        """Short stable key for the FHIR server, used in Redis key names (no URL in keys)."""
        return hashlib.sha256(self.fhir_base_url.rstrip("/").encode()).hexdigest()[:12]

    def redacted(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and v:
                v = "***"
            elif f.name in _URL_FIELDS and isinstance(v, str):
                v = redact_url(v)
            out[f.name] = v
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({shown})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        d = cls()
        auth_type = (e.get("PTBILL_FHIR_AUTH") or d.auth_type).lower()
        if auth_type not in ("none", "basic", "bearer", "smart"):
            raise ConfigError(f"PTBILL_FHIR_AUTH must be none, basic, bearer or smart, got {auth_type!r}")
        broker = e.get("PTBILL_BROKER_URL") or d.broker_url
        s = cls(
            fhir_base_url=(e.get("PTBILL_FHIR_BASE_URL") or d.fhir_base_url).rstrip("/"),
            auth_type=auth_type,
            auth_user=e.get("PTBILL_FHIR_USER") or None,
            auth_password=_read_secret(e, "PTBILL_FHIR_PASSWORD"),
            auth_token=_read_secret(e, "PTBILL_FHIR_TOKEN"),
            smart_client_id=e.get("PTBILL_SMART_CLIENT_ID") or None,
            smart_private_key=_read_secret(e, "PTBILL_SMART_PRIVATE_KEY"),
            smart_kid=e.get("PTBILL_SMART_KID") or None,
            smart_alg=e.get("PTBILL_SMART_ALG") or d.smart_alg,
            smart_token_url=e.get("PTBILL_SMART_TOKEN_URL") or None,
            smart_scope=e.get("PTBILL_SMART_SCOPE") or d.smart_scope,
            tls_verify=_bool(e, "PTBILL_TLS_VERIFY", True),
            ca_bundle=e.get("PTBILL_CA_BUNDLE") or None,
            http_timeout=_float(e, "PTBILL_HTTP_TIMEOUT", d.http_timeout),
            page_size=_int(e, "PTBILL_PAGE_SIZE", d.page_size),
            max_response_bytes=_int(e, "PTBILL_MAX_RESPONSE_BYTES", d.max_response_bytes),
            broker_url=broker,
            redis_url=e.get("PTBILL_REDIS_URL") or (broker if broker.startswith("redis") else d.redis_url),
            encounter_statuses=tuple(
                s.strip() for s in (e.get("PTBILL_ENCOUNTER_STATUSES") or "finished").split(",") if s.strip()
            ),
            sync_interval_seconds=_int(e, "PTBILL_SYNC_INTERVAL", d.sync_interval_seconds),
            initial_since=e.get("PTBILL_INITIAL_SINCE") or d.initial_since,
            procedure_fetch=cast(
                Literal["by-encounter", "revinclude"],
                (e.get("PTBILL_PROCEDURE_FETCH") or d.procedure_fetch).lower(),
            ),
            write_mode=cast(
                Literal["id", "conditional"], (e.get("PTBILL_WRITE_MODE") or d.write_mode).lower()
            ),
            clock_lag_seconds=_float(e, "PTBILL_CLOCK_LAG_SECONDS", d.clock_lag_seconds),
            rate_limit=e.get("PTBILL_RATE_LIMIT") or d.rate_limit,
            max_retries=_int(e, "PTBILL_MAX_RETRIES", d.max_retries),
            visibility_timeout=_int(e, "PTBILL_VISIBILITY_TIMEOUT", d.visibility_timeout),
            lock_timeout=_int(e, "PTBILL_LOCK_TIMEOUT", d.lock_timeout),
            flower_basic_auth=_read_secret(e, "PTBILL_FLOWER_BASIC_AUTH"),
            log_level=(e.get("PTBILL_LOG_LEVEL") or d.log_level).upper(),
            log_format=(e.get("PTBILL_LOG_FORMAT") or d.log_format).lower(),
            mappings_dir=e.get("PTBILL_MAPPINGS_DIR") or None,
            retry_base_seconds=_float(e, "PTBILL_RETRY_BASE_SECONDS", d.retry_base_seconds),
            retry_max_seconds=_float(e, "PTBILL_RETRY_MAX_SECONDS", d.retry_max_seconds),
        )
        s.validate()
        if not s.tls_verify:
            log.warning("TLS certificate verification is OFF (PTBILL_TLS_VERIFY=false); for testing only")
        return s

    def validate(self) -> None:
        if not self.fhir_base_url.startswith(("http://", "https://")):
            raise ConfigError("PTBILL_FHIR_BASE_URL must be an http(s) URL")
        if self.page_size < 1 or self.page_size > 1000:
            raise ConfigError("PTBILL_PAGE_SIZE must be between 1 and 1000")
        if self.http_timeout <= 0:
            raise ConfigError("PTBILL_HTTP_TIMEOUT must be positive")
        if self.auth_type == "basic" and not (self.auth_user and self.auth_password):
            raise ConfigError("basic auth needs PTBILL_FHIR_USER and PTBILL_FHIR_PASSWORD(_FILE)")
        if self.auth_type == "bearer" and not self.auth_token:
            raise ConfigError("bearer auth needs PTBILL_FHIR_TOKEN(_FILE)")
        if self.auth_type == "smart" and not (self.smart_client_id and self.smart_private_key):
            raise ConfigError("smart auth needs PTBILL_SMART_CLIENT_ID and PTBILL_SMART_PRIVATE_KEY(_FILE)")
        if not self.encounter_statuses:
            raise ConfigError("PTBILL_ENCOUNTER_STATUSES must name at least one status")
        if self.procedure_fetch not in ("by-encounter", "revinclude"):
            raise ConfigError("PTBILL_PROCEDURE_FETCH must be by-encounter or revinclude")
        if self.write_mode not in ("id", "conditional"):
            raise ConfigError("PTBILL_WRITE_MODE must be id or conditional")
        if self.log_format not in ("json", "text"):
            raise ConfigError("PTBILL_LOG_FORMAT must be json or text")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("PTBILL_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        if self.max_retries < 0:
            raise ConfigError("PTBILL_MAX_RETRIES must not be negative")
        if self.retry_base_seconds <= 0 or self.retry_max_seconds <= 0:
            raise ConfigError("PTBILL_RETRY_BASE_SECONDS and PTBILL_RETRY_MAX_SECONDS must be positive")
        if self.sync_interval_seconds < 1 or self.lock_timeout < 1 or self.visibility_timeout < 1:
            raise ConfigError(
                "PTBILL_SYNC_INTERVAL, PTBILL_LOCK_TIMEOUT and PTBILL_VISIBILITY_TIMEOUT must be positive"
            )
