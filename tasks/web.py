"""``ptbill serve``: one HTTP service for real-time feedback (Starlette on uvicorn).

  GET  /healthz                       liveness (the process answers)
  GET  /readyz                        readiness: Redis state store and the Celery broker reachable
  GET  /metrics                       Prometheus metrics (prometheus-client)
  GET  /cds-services                  CDS Hooks discovery
  POST /cds-services/{id}             CDS Hooks calls: ptbill-patient-view, ptbill-encounter-discharge
  POST|PUT /notify/{sid}              Subscription notifications (R4 rest-hook, empty pings, backport)
  POST|PUT /notify/{sid}/{type}/{id}  R4 rest-hook "PUT the resource to {endpoint}/{type}/{id}" style

It sits in the tasks layer because it dispatches Celery tasks (``ptbill.push.resolve``, ``ptbill.sync.run``)
by name; the decisions come from ``integration.decide`` through ``integration.hooks``, and nothing is
written to the EMR from a hook call (unless PTBILL_CDS_WRITEBACK queues the encounter for the sync's
guarded write path). Errors are a 4xx with an OperationOutcome (notifications) or ``{"error", "message"}``
(CDS Hooks), nothing dispatched; logs carry route templates, status codes and counts, never ids of
patients or any resource content.
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import anyio
import anyio.to_thread
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration.cds.discovery import HOOKS, discovery
from integration.cds.notifications import Notification, NotificationError, parse_notification
from integration.cds.subscriptions import SubscriptionSpec, build_specs, expected_header_value
from integration.errors import ConfigError
from integration.fhir.client import FhirClient
from integration.hook_auth import (
    REPLAY_PREFIX,
    HookAuthError,
    HookVerifier,
    JwksCache,
    KeyNotCached,
    RedisReplayGuard,
)
from integration.hooks import HookRequest, HookRequestError, HookService, parse_hook_request
from integration.push import PushState, is_our_subscription
from integration.runner import load_settings_tables, make_client
from integration.settings import Settings
from integration.state import StateStore
from tasks.config import QUEUE_READ, TASK_PUSH_RESOLVE, TASK_SYNC

log = logging.getLogger("ptbill.web")

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
PENDING_TTL = 60.0  # a scheduled resolution's key outlives its countdown by this much at most
SUBS_CACHE_SECONDS = 5.0


class Dispatcher(Protocol):
    def send(
        self, name: str, kwargs: dict[str, Any], queue: str, countdown: float, expires: float | None
    ) -> None:
        """Queue a Celery task by name."""


class CeleryDispatcher:
    def __init__(self) -> None:
        from tasks.app import app

        self.app = app

    def send(
        self, name: str, kwargs: dict[str, Any], queue: str, countdown: float, expires: float | None
    ) -> None:
        self.app.send_task(name, kwargs=kwargs, queue=queue, countdown=countdown or None, expires=expires)


class DispatchError(Exception):
    """The broker did not take the task: the EMR should retry the notification (503)."""


def service_url(s: Settings, host: str | None = None, port: int | None = None) -> str:
    """The URL the EMR uses for this service: PTBILL_PUBLIC_URL, else http://host:port."""
    return s.public_url or f"http://{host or s.serve_host}:{port or s.serve_port}"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ptbill_http_requests_total",
            "HTTP requests by route template and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ptbill_http_request_duration_seconds",
            "Request handling time by route template",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.rejected = Counter(
            "ptbill_requests_rejected_total",
            "Requests refused, by route and reason",
            ["route", "reason"],
            registry=r,
        )
        self.notifications = Counter(
            "ptbill_notifications_total", "Accepted notifications by kind", ["kind"], registry=r
        )
        self.targets = Counter(
            "ptbill_push_targets_total",
            "Encounters/procedures named by notifications: scheduled or coalesced into a scheduled one",
            ["outcome"],
            registry=r,
        )
        self.tasks = Counter("ptbill_push_tasks_sent_total", "Celery tasks sent", ["task"], registry=r)
        self.cards = Counter("ptbill_cds_cards_total", "Cards returned", ["service", "indicator"], registry=r)


@dataclass
class Service:
    settings: Settings
    base_url: str
    dispatcher: Dispatcher
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        s = self.settings
        self.tables = load_settings_tables(s)  # strict, like a worker: never answer from broken rules
        self.hooks = HookService(
            self.tables,
            allowed_servers=s.cds_fhir_servers or (s.fhir_base_url,),
            fetch_timeout=s.cds_fetch_timeout,
            verify=(s.ca_bundle or True) if s.tls_verify else False,
        )
        self.specs: dict[str, SubscriptionSpec] = {}
        if s.notify_secret:
            try:
                specs = build_specs(
                    s.subscriptions, self.base_url, s.subscription_payload, s.notify_header, s.notify_secret
                )
            except ValueError as e:
                raise ConfigError(str(e)) from None
            self.specs = {sp.sid: sp for sp in specs}
            self.expected_header = expected_header_value(s.notify_header, s.notify_secret)
        self.cds_limiter = anyio.CapacityLimiter(4)
        self._subs_cache: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})
        self._ready_cache: tuple[float, dict[str, Any]] = (0.0, {})
        self._lock = threading.Lock()

    @cached_property
    def state(self) -> StateStore:
        return StateStore.from_url(self.settings.redis_url, self.settings.server_key)

    @cached_property
    def push(self) -> PushState:
        return PushState(self.state)

    @cached_property
    def verifier(self) -> HookVerifier:
        return HookVerifier(
            clients=dict(self.settings.cds_clients),
            algorithms=self.settings.cds_algorithms,
            jwks=JwksCache(timeout=self.settings.cds_fetch_timeout),
            replay=RedisReplayGuard(self.state.r),
        )

    @cached_property
    def client(self) -> FhirClient:
        return make_client(self.settings)

    # -- readiness -----------------------------------------------------------------------------------
    def ready(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._ready_cache[0] < 2.0:
            return self._ready_cache[1]
        checks: dict[str, Any] = {"tables": True}
        try:
            checks["redis"] = bool(self.state.r.ping())
        except Exception as e:
            checks["redis"] = f"unreachable ({type(e).__name__})"
        checks["broker"] = self._broker_ok()
        checks["ok"] = all(v is True for v in checks.values())
        self._ready_cache = (now, checks)
        return checks

    def _broker_ok(self) -> bool | str:
        app = getattr(self.dispatcher, "app", None)
        if app is None:
            return True
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception as e:
            return f"unreachable ({type(e).__name__})"

    # -- push -----------------------------------------------------------------------------------------
    def known_subscription(self, spec: SubscriptionSpec, sub_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            at, subs = self._subs_cache
        if now - at > SUBS_CACHE_SECONDS:
            subs = self.push.subscriptions()
            with self._lock:
                self._subs_cache = (now, subs)
        rec = subs.get(spec.sid)
        if rec is not None and rec.get("id") == sub_id:
            return True
        if is_our_subscription(self.client, sub_id, spec.endpoint):  # e.g. made before Redis was reset
            self.push.record_subscription(spec.sid, sub_id, spec.criteria, spec.endpoint)
            with self._lock:
                self._subs_cache = (0.0, {})
            return True
        return False

    def accept(self, spec: SubscriptionSpec, note: Notification) -> dict[str, int]:
        """Schedule the work a notification names (idempotent; coalesces bursts). Raises NotificationError
        for a Subscription that is not ours, DispatchError when the broker is unreachable."""
        if note.subscription is not None and not self.known_subscription(spec, note.subscription):
            raise NotificationError(
                404, "not-found", "the notification names a Subscription ptbill did not make"
            )
        gap = False
        if note.subscription is not None and note.kind in ("event", "heartbeat"):
            gap = self.push.missed_events(note.subscription, note.event_numbers, note.events_since)
        counts = {"scheduled": 0, "coalesced": 0, "sync": 0, "ignored": note.ignored}
        if note.encounters or note.procedures:
            counts.update(self.schedule(note.encounters, note.procedures))
        if note.needs_sync or gap:
            counts["sync"] = self.schedule_sync()
        self.metrics.notifications.labels(note.kind).inc()
        self.push.incr(
            {"received": 1, **{k: v for k, v in counts.items() if k != "sync"}, "syncs": counts["sync"]}
        )
        return counts

    def schedule(
        self, encounters: tuple[str, ...] | list[str], procedures: tuple[str, ...] | list[str]
    ) -> dict[str, int]:
        debounce = self.settings.push_debounce_seconds
        ttl = debounce + PENDING_TTL
        claims: list[str] = []
        enc: list[str] = []
        proc: list[str] = []
        for kind, ids, into in (("enc", encounters, enc), ("proc", procedures, proc)):
            for i in ids:
                key = self.push.claim(f"{kind}:{i}", ttl)
                if key is not None:
                    claims.append(key)
                    into.append(i)
        coalesced = len(encounters) + len(procedures) - len(claims)
        self.metrics.targets.labels("coalesced").inc(coalesced)
        if not claims:
            return {"scheduled": 0, "coalesced": coalesced}
        try:
            self.dispatcher.send(
                TASK_PUSH_RESOLVE,
                {"encounter_ids": enc, "procedure_ids": proc, "claims": claims},
                QUEUE_READ,
                debounce,
                None,
            )
        except Exception as e:
            self.push.release(claims)
            raise DispatchError(type(e).__name__) from None
        self.metrics.tasks.labels(TASK_PUSH_RESOLVE).inc()
        self.metrics.targets.labels("scheduled").inc(len(claims))
        return {"scheduled": len(claims), "coalesced": coalesced}

    def schedule_sync(self) -> int:
        """A small incremental sync, after the server's clock lag (so the change is inside its window)."""
        s = self.settings
        countdown = max(s.push_debounce_seconds, s.clock_lag_seconds + 0.5)
        key = self.push.claim("sync", countdown + 1.0)
        if key is None:
            return 0
        try:
            self.dispatcher.send(TASK_SYNC, {}, QUEUE_READ, countdown, countdown + s.sync_interval_seconds)
        except Exception as e:
            self.push.release([key])
            raise DispatchError(type(e).__name__) from None
        self.metrics.tasks.labels(TASK_SYNC).inc()
        return 1

    # -- CDS Hooks ------------------------------------------------------------------------------------
    @cached_property
    def async_redis(self) -> aioredis.Redis:
        """For the jti replay guard on the event loop (created inside the running loop)."""
        return aioredis.Redis.from_url(self.settings.redis_url, decode_responses=True, socket_timeout=5)

    async def verify_hook(self, service_id: str, authorization: str | None) -> dict[str, Any]:
        """The EHR's JWT, checked on the event loop (a JWKS fetch, when needed, in a thread)."""
        audience = f"{self.base_url}/cds-services/{service_id}"
        v = self.verifier
        try:
            claims, key, ttl = v.check(authorization, audience, fetch=False)
        except KeyNotCached:
            claims, key, ttl = await anyio.to_thread.run_sync(v.check, authorization, audience)
        if not await self.async_redis.set(f"{REPLAY_PREFIX}:{key}", "1", nx=True, ex=ttl):
            raise HookAuthError("replayed", "this JWT (jti) was already used")
        return claims

    def hook_request(self, service_id: str, body: bytes) -> HookRequest:
        try:
            parsed = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            raise HookRequestError(400, "invalid-json", "the request body is not JSON") from None
        return parse_hook_request(parsed, HOOKS[service_id])

    def hook_call(self, service_id: str, req: HookRequest) -> tuple[bytes, int, dict[str, Any]]:
        """Decide and present: the JSON response body, the card count and facts for the log."""
        if req.hook == "encounter-discharge":
            cards, info = self.hooks.discharge(req)
        else:
            cards, info = self.hooks.patient_view(req)
        for c in cards:
            self.metrics.cards.labels(service_id, c.indicator).inc()
        out = json.dumps({"cards": [c.to_json() for c in cards]}, ensure_ascii=False, separators=(",", ":"))
        return out.encode(), len(cards), info


# --- HTTP plumbing ------------------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    raw = request.headers.get("content-length")
    if raw is not None:
        try:
            declared = int(raw)
        except ValueError:
            raise BodyTooLarge from None
        if declared > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def outcome(status: int, code: str, text: str, severity: str = "error") -> JSONResponse:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


def cds_error(status: int, reason: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else None
    return JSONResponse({"error": reason, "message": message}, status_code=status, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


def instrumented(
    svc: Service, route: str, handler: Callable[[Request, dict[str, Any]], Awaitable[Response]]
) -> Handler:
    """Time and count every request by route template; one log line per request (no ids, no content)."""

    async def wrapped(request: Request) -> Response:
        t0 = time.perf_counter()
        note: dict[str, Any] = {}
        try:
            response = await handler(request, note)
        except Exception as e:  # a bug: never leak it, never name data
            log.error("request failed", extra={"path": route, "error": type(e).__name__})
            response = JSONResponse({"error": "internal-error", "message": "internal error"}, status_code=500)
        dur = time.perf_counter() - t0
        svc.metrics.requests.labels(route, str(response.status_code)).inc()
        svc.metrics.latency.labels(route).observe(dur)
        if response.status_code >= 400 and note.get("reason"):
            svc.metrics.rejected.labels(route, str(note["reason"])).inc()
        if route not in ("/healthz", "/readyz", "/metrics"):
            level = logging.WARNING if 400 <= response.status_code else logging.INFO
            extra: dict[str, Any] = {
                "method": request.method,
                "path": route,
                "http_status": response.status_code,
                "duration_ms": round(dur * 1000, 1),
            }
            if note.get("reason"):
                extra["reason"] = note["reason"]
            if note.get("counts"):
                extra["counts"] = note["counts"]
            log.log(level, "request", extra=extra)
        return response

    return wrapped


def create_app(
    settings: Settings | None = None,
    *,
    base_url: str | None = None,
    dispatcher: Dispatcher | None = None,
) -> Starlette:
    s = settings or Settings.from_env()
    svc = Service(s, (base_url or service_url(s)).rstrip("/"), dispatcher or CeleryDispatcher())

    async def healthz(request: Request, note: dict[str, Any]) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request, note: dict[str, Any]) -> Response:
        checks = await anyio.to_thread.run_sync(svc.ready)
        return JSONResponse(checks, status_code=200 if checks["ok"] else 503)

    async def metrics(request: Request, note: dict[str, Any]) -> Response:
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def cds_discovery(request: Request, note: dict[str, Any]) -> Response:
        return JSONResponse(discovery())

    async def cds_call(request: Request, note: dict[str, Any]) -> Response:
        service_id = request.path_params["service_id"]
        if service_id not in HOOKS:
            note["reason"] = "unknown-service"
            return cds_error(404, "unknown-service", "no CDS service with this id (see /cds-services)")
        try:
            body = await read_limited(request, s.serve_max_body_bytes)
        except BodyTooLarge:
            note["reason"] = "too-large"
            return cds_error(413, "too-large", f"the request body exceeds {s.serve_max_body_bytes} bytes")
        try:
            await svc.verify_hook(service_id, request.headers.get("authorization"))
            req = svc.hook_request(service_id, body)
            if req.access_token is None:
                # prefetch only: pure CPU work, done on the loop (threads would only contend for the GIL)
                out, n, info = svc.hook_call(service_id, req)
            else:  # may read the EHR's FHIR server
                out, n, info = await anyio.to_thread.run_sync(
                    svc.hook_call, service_id, req, limiter=svc.cds_limiter
                )
            if s.cds_writeback and req.hook == "encounter-discharge":
                queued = await anyio.to_thread.run_sync(svc.schedule, [req.encounter_id], [])
                info["queued"] = queued["scheduled"]
        except HookAuthError as e:
            note["reason"] = e.reason
            return cds_error(401, e.reason, e.message)
        except HookRequestError as e:
            note["reason"] = e.reason
            return cds_error(e.status, e.reason, e.message)
        except (RedisError, DispatchError) as e:
            note["reason"] = "unavailable"
            log.error("CDS call could not reach Redis or the broker", extra={"error": type(e).__name__})
            return cds_error(503, "unavailable", "ptbill's state store is unavailable")
        note["counts"] = {"cards": n, **{k: v for k, v in info.items() if isinstance(v, int)}}
        note["reason"] = info.get("source")
        return Response(out, media_type="application/json")

    async def notify(request: Request, note: dict[str, Any]) -> Response:
        if not s.notify_secret:
            note["reason"] = "disabled"
            return outcome(403, "forbidden", "notifications are disabled: PTBILL_NOTIFY_SECRET is not set")
        got = request.headers.get(s.notify_header)
        if got is None or not hmac.compare_digest(got.encode(), svc.expected_header.encode()):
            note["reason"] = "unauthenticated"
            return outcome(401, "login", f"missing or wrong {s.notify_header} header")
        spec = svc.specs.get(request.path_params["sid"])
        if spec is None:
            note["reason"] = "unknown-subscription"
            return outcome(404, "not-found", "no ptbill Subscription has this endpoint")
        try:
            body = await read_limited(request, s.serve_max_body_bytes)
        except BodyTooLarge:
            note["reason"] = "too-large"
            return outcome(413, "too-costly", f"the notification exceeds {s.serve_max_body_bytes} bytes")
        ctype = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if body.strip() and ctype not in JSON_TYPES:
            note["reason"] = "media-type"
            return outcome(415, "not-supported", "notifications must be application/fhir+json")
        try:
            parsed = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            note["reason"] = "malformed"
            return outcome(400, "structure", "the notification body is not JSON")
        try:
            n = parse_notification(
                parsed, path_type=request.path_params.get("rtype"), path_id=request.path_params.get("rid")
            )
            counts = await anyio.to_thread.run_sync(svc.accept, spec, n)
        except NotificationError as e:
            note["reason"] = e.code
            return outcome(e.status, e.code, e.message)
        except (DispatchError, RedisError) as e:
            note["reason"] = "unavailable"
            log.error(
                "notification not scheduled: broker or state store down", extra={"error": type(e).__name__}
            )
            return outcome(503, "transient", "the task queue is unavailable; retry the notification")
        note["counts"] = counts
        note["reason"] = n.kind
        text = (
            f"accepted ({n.kind}): {counts['scheduled']} scheduled, {counts['coalesced']} already scheduled, "
            f"{counts['sync']} sync"
        )
        return outcome(200, "informational", text, severity="information")

    def route(
        path: str, fn: Callable[[Request, dict[str, Any]], Awaitable[Response]], methods: list[str]
    ) -> Route:
        return Route(path, instrumented(svc, path, fn), methods=methods)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "not-found", "message": "no such endpoint"}, status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "method-not-allowed", "message": "method not allowed"}, status_code=405)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info(
            "ptbill serve ready",
            extra={"tables": dict(svc.tables.versions()), "counts": {"subscriptions": len(svc.specs)}},
        )
        # the tables and the rest of start-up never change: keep them out of the cyclic GC's work, which
        # otherwise walks them on every full collection (latency spikes under load)
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if "async_redis" in svc.__dict__:
                await svc.async_redis.aclose()

    app = Starlette(
        routes=[
            route("/healthz", healthz, ["GET"]),
            route("/readyz", readyz, ["GET"]),
            route("/metrics", metrics, ["GET"]),
            route("/cds-services", cds_discovery, ["GET"]),
            route("/cds-services/{service_id}", cds_call, ["POST"]),
            route("/notify/{sid}", notify, ["POST", "PUT"]),
            route("/notify/{sid}/{rtype}/{rid}", notify, ["POST", "PUT"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )
    app.state.service = svc
    return app


def serve(host: str | None = None, port: int | None = None) -> int:
    """Run the service in this process (one worker process; scale with more instances)."""
    import uvicorn

    from integration import logs

    s = Settings.from_env()
    logs.configure(s.log_level, s.log_format)
    h, p = host or s.serve_host, port or s.serve_port
    if not 0 < p < 65536:
        raise ConfigError(f"--port must be a TCP port (1-65535), got {p}")
    sock = _listen_socket(h, p)  # before the app starts: a port in use is one line, not uvicorn's log
    app = create_app(s, base_url=service_url(s, h, p))
    config = uvicorn.Config(
        app, host=h, port=p, log_config=None, access_log=False, server_header=False, lifespan="on"
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``ptbill serve`` (uvicorn listens on it), or ConfigError in one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise ConfigError(f"ptbill serve cannot listen on {host!r}: not an address of this host") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"ptbill serve cannot listen on {host}:{port} ({e.strerror or type(e).__name__}); "
            "choose another --port / PTBILL_SERVE_PORT or stop what holds it"
        ) from None
    sock.set_inheritable(True)
    return sock
