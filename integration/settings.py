"""One settings object built from PTBILL_* environment variables (secrets may come from files).

Only the edges (CLI, Celery tasks, demo) read settings; the domain never imports this module.

Built on pydantic-settings: every field names its variable (``validation_alias``), its meaning
(``description``, which is also the README's configuration table: ``python -m integration.settings``
prints it and a test keeps the two equal) and whether it is a secret (readable from ``PTBILL_X_FILE``,
redacted everywhere). ``Settings.from_env(env)`` reads a given mapping (default ``os.environ``) and

* rejects a malformed value with one line naming the variable (``PTBILL_BROKER_URL: unknown scheme
  'reddis'; did you mean redis://?``), never falling back to a default silently;
* treats an empty value as "not set", except for the FHIR base URL and the broker URL, where an empty
  value is a mistake (``PTBILL_FHIR_BASE_URL=`` from an unset compose variable);
* records where each value came from (``sources()``: env, file or default) for ``ptbill doctor``;
* leaves unknown ``PTBILL_*`` variables to :func:`unknown_variables`, which suggests the closest
  known name (``PTBILL_FHIR_BASEURL`` -> ``PTBILL_FHIR_BASE_URL``).

``Settings()`` (no arguments) is the pure defaults, whatever the environment holds.

To add a setting: one field below (``_setting(default, "PTBILL_X", "meaning")``), a validator when its
values are constrained, then regenerate the README table (``python -m integration.settings``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from integration.errors import ConfigError
from integration.fhir.auth import DEFAULT_SCOPE, SUPPORTED_ALGS

_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://)([^@/]*)@", re.IGNORECASE)
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")

# PTBILL_* variables that are read by something other than this object (not flagged as unknown)
OTHER_KNOWN_VARIABLES = frozenset({"PTBILL_TEST_REDIS_URL"})  # tests/ and scripts/test.sh

# JWT algorithms a CDS client (EHR) may sign with: asymmetric only (never `none` or an HMAC secret)
ASYMMETRIC_JWT_ALGS = (
    *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    *("ES256", "ES384", "ES512", "EdDSA"),
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")

BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel", "amqp", "amqps", "pyamqp", "memory")
REDIS_SCHEMES = ("redis", "rediss", "unix")

log = logging.getLogger("ptbill.settings")

# the environment from_env reads (a ContextVar, so Settings() itself never reads os.environ)
_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("ptbill_settings_env", default=None)


def redact_url(url: str) -> str:
    """``redis://:secret@host/0`` -> ``redis://***@host/0`` (credentials in a URL are a secret too)."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def parse_rate(value: str) -> float:
    """``"20/s"``, ``"600/m"``, ``"1000/h"`` or ``"5"`` (per second) -> requests per second."""
    m = _RATE.match(value)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"must be a positive rate such as 20/s, 600/m or 1000/h, got {value!r}")
    return float(m.group(1)) / {"s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]


def _setting(
    default: Any,
    env: str,
    description: str,
    *,
    secret: bool = False,
    url: bool = False,
    empty_is_error: bool = False,
    shown_default: str | None = None,
) -> Any:
    """A field read from ``env`` (a function, so mypy still sees the field's default)."""
    extra: dict[str, Any] = {"secret": secret, "url": url, "empty_is_error": empty_is_error}
    if shown_default is not None:
        extra["shown_default"] = shown_default
    return Field(
        default=default,
        validation_alias=env,
        description=description,
        json_schema_extra=extra,
        repr=not secret,
    )


def _meta(info: FieldInfo, key: str) -> Any:
    extra = info.json_schema_extra
    return extra.get(key) if isinstance(extra, dict) else None


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = {k: v for k, v in environ.items() if k.startswith("PTBILL_")}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k: v for k, v in self._environ.items() if v != ""}  # empty = not set (see module doc)


class _SecretFileSource(PydanticBaseSettingsSource):
    """``PTBILL_X_FILE`` for every secret ``PTBILL_X`` (Docker/Kubernetes secrets); the file wins."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for info in self.settings_cls.model_fields.values():
            if not _meta(info, "secret"):
                continue
            var = f"{info.validation_alias}_FILE"
            path = self._environ.get(var)
            if not path:
                continue
            try:
                out[str(info.validation_alias)] = Path(path).read_text().strip()
            except OSError as e:
                raise ConfigError(f"{var} cannot be read: {e.strerror}") from None
        return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,
        populate_by_name=True,
        extra="ignore",
        validate_default=False,
    )
    _source_env: dict[str, str] = PrivateAttr(default_factory=dict)  # PTBILL_* names from_env saw set

    fhir_base_url: str = _setting(
        "http://127.0.0.1:8090/fhir",
        "PTBILL_FHIR_BASE_URL",
        "the EMR's FHIR R4 base URL",
        url=True,
        empty_is_error=True,
    )
    auth_type: Literal["none", "basic", "bearer", "smart"] = _setting(
        "none", "PTBILL_FHIR_AUTH", "`none`, `basic`, `bearer` or `smart`"
    )
    auth_user: str | None = _setting(None, "PTBILL_FHIR_USER", "basic auth user")
    auth_password: str | None = _setting(None, "PTBILL_FHIR_PASSWORD", "basic auth password", secret=True)
    auth_token: str | None = _setting(None, "PTBILL_FHIR_TOKEN", "static bearer token", secret=True)
    smart_client_id: str | None = _setting(None, "PTBILL_SMART_CLIENT_ID", "SMART Backend Services client id")
    smart_private_key: str | None = _setting(
        None,
        "PTBILL_SMART_PRIVATE_KEY",
        "PEM private key for the client assertion",
        secret=True,
    )
    smart_kid: str | None = _setting(
        None,
        "PTBILL_SMART_KID",
        "key id of the client assertion",
        shown_default="the key's thumbprint",
    )
    smart_alg: str = _setting("RS384", "PTBILL_SMART_ALG", "signing algorithm: " + ", ".join(SUPPORTED_ALGS))
    smart_token_url: str | None = _setting(
        None,
        "PTBILL_SMART_TOKEN_URL",
        "token endpoint; when unset it is discovered and must share the FHIR base's origin",
        url=True,
        shown_default="discovered",
    )
    smart_scope: str = _setting(
        DEFAULT_SCOPE,
        "PTBILL_SMART_SCOPE",
        "requested scopes",
        shown_default="the minimal scopes above",
    )
    tls_verify: bool = _setting(
        True, "PTBILL_TLS_VERIFY", "verify TLS certificates (turning it off is logged as a warning)"
    )
    ca_bundle: str | None = _setting(None, "PTBILL_CA_BUNDLE", "CA bundle file to verify the EMR with")
    http_timeout: float = _setting(
        30.0,
        "PTBILL_HTTP_TIMEOUT",
        "seconds a FHIR request may take: to connect, for each wait and, in all, for the whole answer",
    )
    page_size: int = _setting(100, "PTBILL_PAGE_SIZE", "`_count` of searches (1-1000)")
    max_response_bytes: int = _setting(
        50_000_000, "PTBILL_MAX_RESPONSE_BYTES", "larger responses are refused"
    )
    broker_url: str = _setting(
        "redis://127.0.0.1:6379/0",
        "PTBILL_BROKER_URL",
        "Celery broker",
        url=True,
        empty_is_error=True,
    )
    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0",
        "PTBILL_REDIS_URL",
        "sync state: watermark, write ledger, locks, run records, dead letters",
        url=True,
        shown_default="the broker URL when it is a Redis",
    )
    encounter_statuses: Annotated[tuple[str, ...], NoDecode] = _setting(
        ("finished",), "PTBILL_ENCOUNTER_STATUSES", "comma-separated Encounter statuses to bill"
    )
    sync_interval_seconds: int = _setting(
        300,
        "PTBILL_SYNC_INTERVAL",
        "seconds between beat-scheduled syncs (entries expire after 90 % of it)",
    )
    stale_after_intervals: float = _setting(
        3.0,
        "PTBILL_STALE_AFTER_INTERVALS",
        "`ptbill status` is not healthy when no sync succeeded for this many sync intervals",
    )
    initial_since: str = _setting(
        "1970-01-01T00:00:00Z", "PTBILL_INITIAL_SINCE", "where the first sync starts (ISO instant)"
    )
    procedure_fetch: Literal["by-encounter", "revinclude"] = _setting(
        "by-encounter",
        "PTBILL_PROCEDURE_FETCH",
        "`by-encounter`: page Encounters, then `Procedure?encounter=` per page; `revinclude`: "
        "`_revinclude=Procedure:encounter` (slow on some servers with large pages)",
    )
    write_mode: Literal["auto", "id", "conditional"] = _setting(
        "auto",
        "PTBILL_WRITE_MODE",
        "`auto`: what the server's CapabilityStatement allows (`id` where it allows create-by-PUT, else "
        "`conditional`); `id`: creates are `PUT Type/ptb-<hash>`; `conditional`: creates are `POST` with "
        "`If-None-Exist` on the business identifier (server-assigned ids). Updates always go to the real id "
        "with `If-Match`",
    )
    transaction_max_entries: int = _setting(
        0,
        "PTBILL_TRANSACTION_MAX_ENTRIES",
        "largest write Bundle ptbill sends; 0 = what the server documents (else no limit). One "
        "encounter's writes stay in one transaction when they fit",
    )
    clock_lag_seconds: float = _setting(
        2.0,
        "PTBILL_CLOCK_LAG_SECONDS",
        "the window ends this long before the server's clock (in-flight commits)",
    )
    fhir_request_budget: str | None = _setting(
        None,
        "PTBILL_FHIR_REQUEST_BUDGET",
        "the EMR's request budget for ptbill, e.g. `50/s` or `3000/m`: shared by every worker process "
        "through Redis (see Performance)",
        shown_default="none (worker concurrency bounds the load)",
    )
    rate_limit: str | None = _setting(
        None,
        "PTBILL_RATE_LIMIT",
        "legacy: a Celery rate limit of the per-encounter task, per worker process (e.g. `20/s`); "
        "prefer `PTBILL_FHIR_REQUEST_BUDGET`",
        shown_default="none",
    )
    max_retries: int = _setting(
        5, "PTBILL_MAX_RETRIES", "retries of temporary failures before an encounter is dead-lettered"
    )
    visibility_timeout: int = _setting(
        3600,
        "PTBILL_VISIBILITY_TIMEOUT",
        "Redis broker visibility timeout (retry delays stay below it)",
    )
    lock_timeout: int = _setting(
        1800, "PTBILL_LOCK_TIMEOUT", "seconds the per-server sync lock lives if a run dies"
    )
    sync_deadline_seconds: int = _setting(
        1500,
        "PTBILL_SYNC_DEADLINE",
        "seconds a sync run may spend paging (at most `PTBILL_LOCK_TIMEOUT`; each attempt is stopped at it"
        " and no retry starts after it): then it is failed with that reason and its lock released",
    )
    task_time_limit: float = _setting(
        300.0,
        "PTBILL_TASK_TIME_LIMIT",
        "soft time limit (seconds) of one encounter, a push resolution or a dead-letter re-drive: the"
        " encounter is dead-lettered; the worker process is killed 30 s later if it does not stop",
    )
    dead_letter_days: float = _setting(
        30.0,
        "PTBILL_DEAD_LETTER_DAYS",
        "days a dead letter stays in Redis for `ptbill status` and `ptbill retry-failed`",
    )
    metrics_port: int = _setting(
        9465,
        "PTBILL_METRICS_PORT",
        "port of ptbill's Prometheus metrics (`/metrics`), served by each worker's main process and by"
        " `ptbill metrics`; 0: off",
    )
    metrics_host: str = _setting(
        "127.0.0.1",
        "PTBILL_METRICS_HOST",
        "address the metrics listen on (`0.0.0.0` for a scraper elsewhere)",
    )
    # bounded reads of one sync run (integration/fhir/queries.py) and EMR changes it follows
    max_pages: int = _setting(
        10000,
        "PTBILL_MAX_PAGES",
        "pages (searches and batches) one sync run may read; past it the run fails and its lock is released",
    )
    context_lookback_days: int = _setting(
        30,
        "PTBILL_CONTEXT_LOOKBACK_DAYS",
        "a Coverage or EpisodeOfCare updated in the window re-runs that patient's billed encounters of the "
        "last N days (0: none)",
    )
    flower_basic_auth: str | None = _setting(
        None,
        "PTBILL_FLOWER_BASIC_AUTH",
        "`user:password` for Flower (`ptbill flower` refuses to start without it)",
        secret=True,
    )
    log_level: str = _setting(
        "INFO", "PTBILL_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR or CRITICAL; logs go to stderr"
    )
    log_format: Literal["json", "text"] = _setting(
        "json", "PTBILL_LOG_FORMAT", "`json` (one object a line) or `text`"
    )
    mappings_dir: str | None = _setting(
        None,
        "PTBILL_MAPPINGS_DIR",
        "a clinic's own copy of `mappings/` (checked as strictly)",
        shown_default="the shipped tables",
    )
    retry_base_seconds: float = _setting(
        1.0,
        "PTBILL_RETRY_BASE_SECONDS",
        "base of a task's retry delay (base x 2^attempt, with jitter; at least the server's `Retry-After`)",
    )
    retry_max_seconds: float = _setting(
        600.0,
        "PTBILL_RETRY_MAX_SECONDS",
        "cap of a task's retry delay; must be below `PTBILL_VISIBILITY_TIMEOUT`",
    )

    # --- real-time feedback: `ptbill serve` (CDS Hooks, Subscription notifications), `ptbill subscribe` ---
    serve_host: str = _setting(
        "127.0.0.1", "PTBILL_SERVE_HOST", "where `ptbill serve` listens (`--host` overrides)"
    )
    serve_port: int = _setting(8095, "PTBILL_SERVE_PORT", "the port of `ptbill serve` (`--port` overrides)")
    public_url: str | None = _setting(
        None,
        "PTBILL_PUBLIC_URL",
        "how the EMR reaches `ptbill serve`: Subscription endpoints and the CDS JWT `aud` are built from it",
        url=True,
        shown_default="`http://{host}:{port}`",
    )
    serve_max_body_bytes: int = _setting(
        5_000_000,
        "PTBILL_SERVE_MAX_BODY_BYTES",
        "larger notification or hook bodies are refused (413); at least 1024",
    )
    notify_secret: str | None = _setting(
        None,
        "PTBILL_NOTIFY_SECRET",
        "the secret the EMR sends back on every notification; unset: notifications are refused (403)",
        secret=True,
    )
    notify_header: str = _setting(
        "Authorization",
        "PTBILL_NOTIFY_HEADER",
        "the header carrying it (`Authorization: Bearer <secret>`; any other header carries the secret "
        "as is)",
    )
    subscriptions: Annotated[tuple[str, ...], NoDecode] = _setting(
        ("Procedure?", "Encounter?"),
        "PTBILL_SUBSCRIPTIONS",
        "space-separated R4 criteria or backport topic URLs, one Subscription each (`ptbill subscribe`)",
        shown_default="`Procedure? Encounter?`",
    )
    subscription_payload: Literal["full-resource", "id-only", "empty"] = _setting(
        "full-resource",
        "PTBILL_SUBSCRIPTION_PAYLOAD",
        "`full-resource`, `empty` (pings) or, for topic URLs, `id-only`",
    )
    push_debounce_seconds: float = _setting(
        0.5,
        "PTBILL_PUSH_DEBOUNCE_SECONDS",
        "notifications for one encounter within this window are processed once (0-60)",
    )
    cds_clients: Annotated[tuple[tuple[str, str], ...], NoDecode] = _setting(
        (),
        "PTBILL_CDS_CLIENTS",
        'JSON object: each trusted EHR\'s JWT `iss` -> its JWKS URL (`{"<iss>": "<https URL>"}`)',
        shown_default="none (no EHR trusted)",
    )
    cds_algorithms: Annotated[tuple[str, ...], NoDecode] = _setting(
        ("RS384", "ES384"),
        "PTBILL_CDS_ALGORITHMS",
        "comma-separated JWT algorithms accepted from EHRs (asymmetric only: "
        + ", ".join(ASYMMETRIC_JWT_ALGS)
        + ")",
    )
    cds_fhir_servers: Annotated[tuple[str, ...], NoDecode] = _setting(
        (),
        "PTBILL_CDS_FHIR_SERVERS",
        "comma-separated `fhirServer` URLs a hook's `fhirAuthorization` token may be used against",
        shown_default="`PTBILL_FHIR_BASE_URL`",
    )
    cds_fetch_timeout: float = _setting(
        5.0, "PTBILL_CDS_FETCH_TIMEOUT", "seconds per read when a hook comes without prefetch"
    )
    cds_writeback: bool = _setting(
        False,
        "PTBILL_CDS_WRITEBACK",
        "`true`: an `encounter-discharge` call also queues the encounter for the usual guarded write",
    )

    # --- sources -------------------------------------------------------------------------------------

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _ENV.get()
        if env is None:  # Settings(...) in code: the given values and the defaults, nothing else
            return (init_settings,)
        return (init_settings, _SecretFileSource(settings_cls, env), _MappingEnvSource(settings_cls, env))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``env`` (default ``os.environ``); ConfigError naming the variable on any bad value."""
        e: Mapping[str, str] = os.environ if env is None else env
        for info in cls.model_fields.values():
            var = str(info.validation_alias)
            if _meta(info, "empty_is_error") and var in e and not e[var].strip():
                raise ConfigError(
                    f"{var} is set but empty; unset it to use the default ({info.default}) or give a value"
                )
        token = _ENV.set(e)
        try:
            s = cls()
        except ValidationError as ve:
            raise ConfigError(_explain(ve)) from None
        finally:
            _ENV.reset(token)
        s._source_env = _sources_of(e)
        s.validate()
        if not s.tls_verify:
            log.warning("TLS certificate verification is OFF (PTBILL_TLS_VERIFY=false); for testing only")
        return s

    # --- normalisation and per-field checks --------------------------------------------------------

    @field_validator(
        "auth_type", "write_mode", "procedure_fetch", "log_format", "subscription_payload", mode="before"
    )
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("log_level", "smart_alg", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("fhir_base_url", mode="before")
    @classmethod
    def _base_url(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        v = v.strip().rstrip("/")
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host, e.g. https://emr.example.org/fhir")
        if parts.query or parts.fragment:
            raise ValueError("must be the FHIR base, without query or fragment")
        return v

    @field_validator("smart_token_url", mode="before")
    @classmethod
    def _token_url(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip():
            parts = urlsplit(v.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL with a host")
            return v.strip()
        return v

    @field_validator("broker_url", mode="before")
    @classmethod
    def _broker(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            _check_scheme(v, BROKER_SCHEMES, allow_sqla=True)
        return v

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            _check_scheme(v, REDIS_SCHEMES, allow_sqla=False)
        return v

    @field_validator("encounter_statuses", mode="before")
    @classmethod
    def _statuses(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        return v

    @field_validator("tls_verify", "cds_writeback", mode="before")
    @classmethod
    def _bool(cls, v: Any) -> Any:
        if isinstance(v, str):
            low = v.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"must be true or false, got {v!r}")
        return v

    @field_validator("rate_limit", "fhir_request_budget", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            if not v:
                return None
            parse_rate(v)
        return v

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_url(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().rstrip("/")
            if not v:
                return None
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL with a host, e.g. https://ptbill.clinic.example")
            if parts.query or parts.fragment:
                raise ValueError("must be a base URL, without query or fragment")
        return v

    @field_validator("notify_header", mode="before")
    @classmethod
    def _header_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip()
            if not _HEADER_NAME.match(v):
                raise ValueError(f"must be an HTTP header name (letters, digits, '-'), got {v!r}")
        return v

    @field_validator("subscriptions", mode="before")
    @classmethod
    def _subscriptions(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(v.split())
        return v

    @field_validator("cds_clients", mode="before")
    @classmethod
    def _cds_clients(cls, v: Any) -> Any:
        if isinstance(v, str):
            return _parse_cds_clients(v)
        if isinstance(v, Mapping):
            return _parse_cds_clients(json.dumps(dict(v)))
        return v

    @field_validator("cds_algorithms", mode="before")
    @classmethod
    def _cds_algorithms(cls, v: Any) -> Any:
        names = v.split(",") if isinstance(v, str) else v
        if not isinstance(names, list | tuple):
            return v
        canonical = {a.upper(): a for a in ASYMMETRIC_JWT_ALGS}
        out: list[str] = []
        for raw in names:
            name = str(raw).strip()
            if not name:
                continue
            if name.upper() not in canonical:
                raise ValueError(
                    f"must name asymmetric JWT algorithms ({', '.join(ASYMMETRIC_JWT_ALGS)}), got {name!r}"
                )
            out.append(canonical[name.upper()])
        if not out:
            raise ValueError("must name at least one algorithm, e.g. RS384,ES384")
        return tuple(dict.fromkeys(out))

    @field_validator("cds_fhir_servers", mode="before")
    @classmethod
    def _cds_fhir_servers(cls, v: Any) -> Any:
        urls = v.split(",") if isinstance(v, str) else v
        if not isinstance(urls, list | tuple):
            return v
        out: list[str] = []
        for raw in urls:
            url = str(raw).strip().rstrip("/")
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"must be comma-separated http(s) URLs, got {url!r}")
            out.append(url)
        return tuple(out)

    @model_validator(mode="before")
    @classmethod
    def _state_follows_broker(cls, data: Any) -> Any:
        """Without PTBILL_REDIS_URL the state lives in the broker's Redis (when the broker is a Redis)."""
        if not isinstance(data, dict):
            return data
        has_redis = any(k in data for k in ("redis_url", "PTBILL_REDIS_URL"))
        broker = data.get("broker_url", data.get("PTBILL_BROKER_URL"))
        if not has_redis and isinstance(broker, str) and broker.strip().startswith(("redis://", "rediss://")):
            data = {**data, "redis_url": broker.strip()}
        return data

    def validate(self) -> None:  # type: ignore[override]  # (pydantic's deprecated classmethod)
        """Checks across fields and of values' ranges; ConfigError naming the variable."""
        if self.page_size < 1 or self.page_size > 1000:
            raise ConfigError("PTBILL_PAGE_SIZE must be between 1 and 1000")
        if self.http_timeout <= 0:
            raise ConfigError("PTBILL_HTTP_TIMEOUT must be positive")
        if self.transaction_max_entries < 0 or self.transaction_max_entries == 1:
            raise ConfigError("PTBILL_TRANSACTION_MAX_ENTRIES must be 0 (no limit) or at least 2")
        if self.max_response_bytes < 1:
            raise ConfigError("PTBILL_MAX_RESPONSE_BYTES must be positive")
        if self.auth_type == "basic" and not (self.auth_user and self.auth_password):
            raise ConfigError("basic auth needs PTBILL_FHIR_USER and PTBILL_FHIR_PASSWORD(_FILE)")
        if self.auth_type == "bearer" and not self.auth_token:
            raise ConfigError("bearer auth needs PTBILL_FHIR_TOKEN(_FILE)")
        if self.auth_type == "smart" and not (self.smart_client_id and self.smart_private_key):
            raise ConfigError("smart auth needs PTBILL_SMART_CLIENT_ID and PTBILL_SMART_PRIVATE_KEY(_FILE)")
        if self.smart_alg not in SUPPORTED_ALGS:
            raise ConfigError(f"PTBILL_SMART_ALG must be one of {', '.join(SUPPORTED_ALGS)}")
        if not self.encounter_statuses:
            raise ConfigError("PTBILL_ENCOUNTER_STATUSES must name at least one status")
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
        if self.sync_deadline_seconds < 1 or self.task_time_limit <= 0 or self.dead_letter_days <= 0:
            raise ConfigError(
                "PTBILL_SYNC_DEADLINE, PTBILL_TASK_TIME_LIMIT and PTBILL_DEAD_LETTER_DAYS must be positive"
            )
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"PTBILL_METRICS_PORT must be a TCP port or 0 (off), got {self.metrics_port}")
        if self.stale_after_intervals <= 0:
            raise ConfigError("PTBILL_STALE_AFTER_INTERVALS must be positive")
        if self.clock_lag_seconds < 0:
            raise ConfigError("PTBILL_CLOCK_LAG_SECONDS must not be negative")
        if self.max_pages < 1:
            raise ConfigError("PTBILL_MAX_PAGES must be positive")
        if not 0 < self.sync_deadline_seconds <= self.lock_timeout:
            raise ConfigError(
                "PTBILL_SYNC_DEADLINE must be positive and at most PTBILL_LOCK_TIMEOUT "
                "(a run must fail before its lock lapses)"
            )
        if self.context_lookback_days < 0:
            raise ConfigError("PTBILL_CONTEXT_LOOKBACK_DAYS must not be negative")
        try:
            datetime.fromisoformat(self.initial_since.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"PTBILL_INITIAL_SINCE must be an ISO instant such as 2026-01-01T00:00:00Z, "
                f"got {self.initial_since!r}"
            ) from None
        if self.ca_bundle and not Path(self.ca_bundle).is_file():
            raise ConfigError("PTBILL_CA_BUNDLE names no readable file")
        if self.mappings_dir and not Path(self.mappings_dir).is_dir():
            raise ConfigError("PTBILL_MAPPINGS_DIR names no directory")
        # real-time feedback (ptbill serve / subscribe)
        if not 0 < self.serve_port < 65536:
            raise ConfigError(f"PTBILL_SERVE_PORT must be a TCP port (1-65535), got {self.serve_port}")
        if self.serve_max_body_bytes < 1024:
            raise ConfigError("PTBILL_SERVE_MAX_BODY_BYTES must be at least 1024")
        if not 0 <= self.push_debounce_seconds <= 60:
            raise ConfigError("PTBILL_PUSH_DEBOUNCE_SECONDS must be between 0 and 60")
        if self.cds_fetch_timeout <= 0:
            raise ConfigError("PTBILL_CDS_FETCH_TIMEOUT must be positive")

    # --- what the settings are and where they came from ------------------------------------------

    @property
    def server_key(self) -> str:
        """Short stable key for the FHIR server, used in Redis key names (no URL in keys)."""
        return hashlib.sha256(self.fhir_base_url.rstrip("/").encode()).hexdigest()[:12]

    @property
    def request_budget_per_second(self) -> float | None:
        return parse_rate(self.fhir_request_budget) if self.fhir_request_budget else None

    @classmethod
    def env_name(cls, field_name: str) -> str:
        return str(cls.model_fields[field_name].validation_alias)

    @classmethod
    def known_variables(cls) -> frozenset[str]:
        """Every PTBILL_* variable ptbill reads (``_FILE`` variants included)."""
        names: set[str] = set(OTHER_KNOWN_VARIABLES)
        for info in cls.model_fields.values():
            names.add(str(info.validation_alias))
            if _meta(info, "secret"):
                names.add(f"{info.validation_alias}_FILE")
        return frozenset(names)

    def redacted(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, info in type(self).model_fields.items():
            v = getattr(self, name)
            if _meta(info, "secret") and v:
                v = "***"
            elif _meta(info, "url") and isinstance(v, str):
                v = redact_url(v)
            out[name] = v
        return out

    def sources(self) -> dict[str, str]:
        """field -> where its value came from: ``env PTBILL_X``, ``file PTBILL_X_FILE``, ``default``,
        ``PTBILL_BROKER_URL`` (the state URL following the broker) or ``code`` (Settings(...))."""
        env_seen = self._source_env
        out: dict[str, str] = {}
        for name, info in type(self).model_fields.items():
            var = str(info.validation_alias)
            if f"{var}_FILE" in env_seen and _meta(info, "secret"):
                out[name] = f"file {var}_FILE"
            elif var in env_seen:
                out[name] = f"env {var}"
            elif (
                name == "redis_url" and "PTBILL_BROKER_URL" in env_seen and self.redis_url == self.broker_url
            ):
                out[name] = "env PTBILL_BROKER_URL (state follows the broker)"
            elif name in self.model_fields_set and not env_seen:
                out[name] = "code"
            else:
                out[name] = "default"
        return out

    def describe(self) -> list[tuple[str, object, str]]:
        """(variable, redacted value, source) for every setting, in the README's order."""
        red, src = self.redacted(), self.sources()
        return [(self.env_name(n), red[n], src[n]) for n in type(self).model_fields]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.model_dump().items())))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({shown})"

    __str__ = __repr__


def _sources_of(env: Mapping[str, str]) -> dict[str, str]:
    return {k: "set" for k, v in env.items() if k.startswith("PTBILL_") and v != ""}


def _parse_cds_clients(raw: str) -> tuple[tuple[str, str], ...]:
    """PTBILL_CDS_CLIENTS: a JSON object mapping each trusted EHR's JWT ``iss`` to its JWKS URL."""
    if not raw.strip():
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError('must be a JSON object {"<iss>": "<JWKS URL>"}') from None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object {"<iss>": "<JWKS URL>"}')
    for iss, url in value.items():
        parts = urlsplit(url) if isinstance(url, str) else None
        if not iss or parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError('must map each issuer to an http(s) JWKS URL {"<iss>": "<url>"}')
    return tuple(sorted(value.items()))


def _check_scheme(url: str, schemes: tuple[str, ...], *, allow_sqla: bool) -> None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if allow_sqla and scheme.startswith("sqla+"):
        return
    if scheme in schemes:
        return
    known = [*schemes, *(["sqla+<dialect>"] if allow_sqla else [])]
    if not scheme:
        raise ValueError(f"must be a URL such as {schemes[0]}://host:6379/0")
    close = difflib.get_close_matches(scheme, schemes, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}://?" if close else f" (known: {', '.join(known)})"
    raise ValueError(f"unknown scheme {scheme!r}{hint}")


def _explain(ve: ValidationError) -> str:
    """One line naming each bad variable (pydantic's messages, with the variable instead of the field)."""
    parts: list[str] = []
    for err in ve.errors(include_url=False):
        loc = err.get("loc") or ()
        key = str(loc[0]) if loc else "?"
        var = Settings.env_name(key) if key in Settings.model_fields else key
        got = err.get("input")
        kind = err.get("type", "")
        if kind in ("int_parsing", "int_from_float"):
            msg = f"must be an integer, got {got!r}"
        elif kind == "float_parsing":
            msg = f"must be a number, got {got!r}"
        elif kind == "bool_parsing":
            msg = f"must be true or false, got {got!r}"
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            msg = f"must be {expected}, got {got!r}".replace("'", "")
        else:
            msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{var} {msg}" if msg.startswith("must") else f"{var}: {msg}")
    return "; ".join(dict.fromkeys(parts))


def unknown_variables(env: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """PTBILL_* variables ptbill does not read, each with the closest known name (or None)."""
    e = os.environ if env is None else env
    known = Settings.known_variables()
    out: list[tuple[str, str | None]] = []
    for name in sorted(k for k in e if k.startswith("PTBILL_") and k not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        out.append((name, close[0] if close else None))
    return out


def unknown_variable_lines(env: Mapping[str, str] | None = None) -> list[str]:
    return [
        f"unknown variable {name} is ignored" + (f"; did you mean {hint}?" if hint else "")
        for name, hint in unknown_variables(env)
    ]


# --- the README's configuration table ---------------------------------------------------------------


def _shown_default(name: str, info: FieldInfo) -> str:
    shown = _meta(info, "shown_default")
    if shown is not None:
        return str(shown)
    d = info.default
    if d is None:
        return "-"
    if isinstance(d, bool):
        return f"`{str(d).lower()}`"
    if isinstance(d, tuple):
        return f"`{','.join(d)}`"
    if isinstance(d, float) and d.is_integer():
        return f"`{int(d)}`"
    return f"`{d}`"


def configuration_rows() -> Iterator[tuple[str, str, str]]:
    for name, info in Settings.model_fields.items():
        var = f"`{info.validation_alias}`" + (" (`_FILE`)" if _meta(info, "secret") else "")
        yield var, _shown_default(name, info), str(info.description)


def configuration_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| {v} | {d} | {m} |" for v, d, m in configuration_rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m integration.settings > table (README "Configuration")
    sys.stdout.write(configuration_table())
    cast(Any, sys.stdout).flush()
