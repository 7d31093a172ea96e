"""One settings object built from PTBILL_* environment variables (secrets may come from files).

Only the edges (CLI, Celery tasks, demo) read settings; the domain never imports this module.
Every setting is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, cast

from integration.errors import ConfigError
from integration.fhir.auth import DEFAULT_SCOPE

_SECRET_FIELDS = {"auth_password", "auth_token", "smart_private_key", "flower_basic_auth", "notify_secret"}
_URL_FIELDS = {"broker_url", "redis_url", "fhir_base_url", "smart_token_url", "public_url"}
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


def _cds_clients(raw: str | None) -> tuple[tuple[str, str], ...]:
    """PTBILL_CDS_CLIENTS: a JSON object mapping each trusted EHR's JWT ``iss`` to its JWKS URL."""
    if not raw or not raw.strip():
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError('PTBILL_CDS_CLIENTS must be a JSON object {"<iss>": "<JWKS URL>"}') from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v.startswith(("http://", "https://"))
        for k, v in value.items()
    ):
        raise ConfigError('PTBILL_CDS_CLIENTS must map each issuer to an http(s) JWKS URL {"<iss>": "<url>"}')
    return tuple(sorted(value.items()))


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
    # --- real-time feedback: `ptbill serve` (push notifications, CDS Hooks), `ptbill subscribe` ---------
    # Each field is PTBILL_ + its name in upper case. See README "Real-time feedback".
    serve_host: str = "127.0.0.1"  # where `ptbill serve` listens (--host overrides)
    serve_port: int = 8095  # (--port overrides)
    public_url: str | None = None  # how the EMR reaches the service (Subscription endpoints, CDS aud)
    serve_max_body_bytes: int = 5_000_000  # larger request bodies are refused with 413
    notify_secret: str | None = field(default=None, repr=False)  # header value the Subscriptions carry
    notify_header: str = "Authorization"  # header name; for Authorization the value is "Bearer <secret>"
    subscriptions: tuple[str, ...] = ("Procedure?", "Encounter?")  # R4 criteria or backport topic URLs
    subscription_payload: Literal["full-resource", "id-only", "empty"] = "full-resource"
    push_debounce_seconds: float = 0.5  # a burst of notifications for one encounter -> one processing
    cds_clients: tuple[tuple[str, str], ...] = ()  # trusted EHRs: (JWT iss, its JWKS URL)
    cds_algorithms: tuple[str, ...] = ("RS384", "ES384")  # JWT algorithms accepted from EHRs
    cds_fhir_servers: tuple[str, ...] = ()  # fhirServer URLs a hook may send (default: fhir_base_url)
    cds_fetch_timeout: float = 5.0  # seconds per FHIR read when a hook comes without prefetch
    cds_writeback: bool = False  # encounter-discharge also queues the encounter for the guarded write

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
            # --- real-time feedback (ptbill serve / subscribe) ---
            serve_host=e.get("PTBILL_SERVE_HOST") or d.serve_host,
            serve_port=_int(e, "PTBILL_SERVE_PORT", d.serve_port),
            public_url=(e.get("PTBILL_PUBLIC_URL") or "").rstrip("/") or None,
            serve_max_body_bytes=_int(e, "PTBILL_SERVE_MAX_BODY_BYTES", d.serve_max_body_bytes),
            notify_secret=_read_secret(e, "PTBILL_NOTIFY_SECRET"),
            notify_header=(e.get("PTBILL_NOTIFY_HEADER") or d.notify_header).strip(),
            subscriptions=tuple((e.get("PTBILL_SUBSCRIPTIONS") or " ".join(d.subscriptions)).split()),
            subscription_payload=cast(
                Literal["full-resource", "id-only", "empty"],
                (e.get("PTBILL_SUBSCRIPTION_PAYLOAD") or d.subscription_payload).lower(),
            ),
            push_debounce_seconds=_float(e, "PTBILL_PUSH_DEBOUNCE_SECONDS", d.push_debounce_seconds),
            cds_clients=_cds_clients(e.get("PTBILL_CDS_CLIENTS")),
            cds_algorithms=tuple(
                a.strip().upper()
                for a in (e.get("PTBILL_CDS_ALGORITHMS") or ",".join(d.cds_algorithms)).split(",")
                if a.strip()
            ),
            cds_fhir_servers=tuple(
                u.strip().rstrip("/")
                for u in (e.get("PTBILL_CDS_FHIR_SERVERS") or "").split(",")
                if u.strip()
            ),
            cds_fetch_timeout=_float(e, "PTBILL_CDS_FETCH_TIMEOUT", d.cds_fetch_timeout),
            cds_writeback=_bool(e, "PTBILL_CDS_WRITEBACK", d.cds_writeback),
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
        # --- real-time feedback (ptbill serve / subscribe) ---
        if not 0 < self.serve_port < 65536:
            raise ConfigError("PTBILL_SERVE_PORT must be a TCP port (1-65535)")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("PTBILL_PUBLIC_URL must be an http(s) URL")
        if self.serve_max_body_bytes < 1024:
            raise ConfigError("PTBILL_SERVE_MAX_BODY_BYTES must be at least 1024")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", self.notify_header):
            raise ConfigError("PTBILL_NOTIFY_HEADER must be an HTTP header name")
        if self.subscription_payload not in ("full-resource", "id-only", "empty"):
            raise ConfigError("PTBILL_SUBSCRIPTION_PAYLOAD must be full-resource, id-only or empty")
        if self.push_debounce_seconds < 0 or self.push_debounce_seconds > 60:
            raise ConfigError("PTBILL_PUSH_DEBOUNCE_SECONDS must be between 0 and 60")
        unsafe = [a for a in self.cds_algorithms if a == "NONE" or a.startswith("HS")]
        if unsafe or not self.cds_algorithms:
            raise ConfigError("PTBILL_CDS_ALGORITHMS must name asymmetric algorithms (e.g. RS384,ES384)")
        if any(not u.startswith(("http://", "https://")) for u in self.cds_fhir_servers):
            raise ConfigError("PTBILL_CDS_FHIR_SERVERS must be http(s) URLs")
        if self.cds_fetch_timeout <= 0:
            raise ConfigError("PTBILL_CDS_FETCH_TIMEOUT must be positive")
