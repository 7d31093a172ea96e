"""ptbill's own Prometheus metrics (prometheus-client): what the sync did, read from its Redis state.

Every number comes from Redis, so any one process can serve them for all workers (a worker's main
process does: ``PTBILL_METRICS_PORT``, default 9465; ``ptbill metrics`` serves them alone). Series:

==========================================  =====================================================
``ptbill_sync_runs_total{status}``          finished sync runs: ok, partial (dead letters), failed
``ptbill_encounters_total{outcome}``        processed, unchanged, dead_lettered (lifetime)
``ptbill_dead_letters``                     encounters dead-lettered now (``ptbill retry-failed``)
``ptbill_watermark_lag_seconds``            now - the watermark (everything before it is processed)
``ptbill_last_run_status{status}``          1 for the last run's status (ok, partial, failed)
``ptbill_last_run_finished_timestamp_seconds``, ``ptbill_last_success_timestamp_seconds``
``ptbill_sync_running``                     1 while a run holds the server's sync lock
``ptbill_fhir_requests_total{kind,status}`` FHIR requests by kind (read, search, write, capabilities,
                                            auth, other) and status class (2xx..5xx, transport)
``ptbill_fhir_request_seconds{kind}``       histogram: time to the answer's headers (including a wait
                                            for ``PTBILL_FHIR_REQUEST_BUDGET``)
==========================================  =====================================================

FHIR requests are counted in each process (:class:`RequestMeter`, installed on the client's Session as
a transport adapter) and added to a Redis hash after every task (:func:`flush`): one round trip per task,
none per request. Labels are fixed words: never a URL, an id or anything a server said.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from requests.adapters import BaseAdapter

from integration.state import StateStore

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
KINDS = ("read", "search", "write", "capabilities", "auth", "other")
RUN_STATUSES = ("ok", "partial", "failed")
METRICS_KEY = "metrics:fhir"


def request_kind(method: str, url: str, base_path: str) -> str:
    """What a request is, from its method and path alone (never its query)."""
    path = urlsplit(url).path.rstrip("/")
    base = base_path.rstrip("/")
    if not path.startswith(base):
        return "auth"  # a SMART token endpoint on the same origin, outside the base
    rel = [p for p in path[len(base) :].split("/") if p]
    if rel[:1] == [".well-known"]:
        return "auth"
    if rel == ["metadata"]:
        return "capabilities"
    if method in ("POST", "PUT", "DELETE", "PATCH"):
        return "write" if rel[:1] != ["token"] else "auth"
    if method == "GET":
        return "read" if len(rel) == 2 and not rel[1].startswith(("_", "$")) else "search"
    return "other"


class RequestMeter:
    """FHIR request counts and latency buckets of this process, until :func:`flush` moves them to Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fields: dict[str, float] = {}

    def observe(self, kind: str, status_class: str, seconds: float) -> None:
        with self._lock:
            f = self._fields
            for name, n in (
                (f"{kind}|n|{status_class}", 1.0),
                (f"{kind}|sum", seconds),
                *((f"{kind}|le|{b:g}", 1.0) for b in BUCKETS if seconds <= b),
            ):
                f[name] = f.get(name, 0.0) + n

    def drain(self) -> dict[str, float]:
        with self._lock:
            out, self._fields = self._fields, {}
        return out


class MeteredAdapter(BaseAdapter):
    """A transport adapter that times every request it sends into a :class:`RequestMeter`."""

    def __init__(self, inner: BaseAdapter, meter: RequestMeter, base_path: str):
        super().__init__()
        self.inner = inner
        self.meter = meter
        self.base_path = base_path

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        kind = request_kind(str(request.method), str(request.url), self.base_path)
        t0 = time.monotonic()
        try:
            resp = self.inner.send(request, *args, **kwargs)
        except Exception:
            self.meter.observe(kind, "transport", time.monotonic() - t0)
            raise
        self.meter.observe(kind, f"{resp.status_code // 100}xx", time.monotonic() - t0)
        return resp

    def close(self) -> None:
        self.inner.close()


def install(session: Any, base_url: str, meter: RequestMeter) -> None:
    """Meter every request the session sends to the FHIR server's origin."""
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}/"
    session.mount(origin, MeteredAdapter(session.get_adapter(base_url), meter, parts.path))


def flush(meter: RequestMeter, state: StateStore) -> None:
    """Add this process's counts to Redis (one round trip); kept for the next flush if Redis is down."""
    fields = meter.drain()
    if not fields:
        return
    try:
        pipe = state.r.pipeline(transaction=False)
        for k, v in fields.items():
            pipe.hincrbyfloat(f"{state.p}:{METRICS_KEY}", k, v)
        pipe.execute()
    except redis.exceptions.RedisError:
        with meter._lock:  # put them back: counted once Redis answers again
            for k, v in fields.items():
                meter._fields[k] = meter._fields.get(k, 0.0) + v


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class StateCollector(Collector):
    """Reads the sync state of one FHIR server on every scrape."""

    def __init__(self, state: StateStore, now: Any = time.time):
        self.state = state
        self.now = now

    def collect(self) -> Iterator[Any]:
        st = self.state
        runs = CounterMetricFamily("ptbill_sync_runs", "finished sync runs by status", labels=["status"])
        by_status = st.runs_by_status()
        for s in RUN_STATUSES:
            runs.add_metric([s], float(by_status.get(s, 0)))
        yield runs

        totals = st.totals()
        enc = CounterMetricFamily("ptbill_encounters", "encounters by outcome (lifetime)", labels=["outcome"])
        for k in ("processed", "unchanged", "dead_lettered"):
            enc.add_metric([k], float(totals.get(k, 0) or 0))
        yield enc

        yield GaugeMetricFamily(
            "ptbill_dead_letters", "encounters dead-lettered now", value=float(len(st.dead_letters()))
        )
        wm = _epoch(st.watermark())
        lag = GaugeMetricFamily(
            "ptbill_watermark_lag_seconds", "now minus the watermark (absent: never synced)"
        )
        if wm is not None:
            lag.add_metric([], max(0.0, self.now() - wm))
        yield lag

        last = st.last()
        status = GaugeMetricFamily("ptbill_last_run_status", "1 for the last run's status", labels=["status"])
        for s in RUN_STATUSES:
            status.add_metric([s], 1.0 if last.get("status") == s else 0.0)
        yield status
        finished = GaugeMetricFamily("ptbill_last_run_finished_timestamp_seconds", "when the last run ended")
        if (t := _epoch(last.get("finished"))) is not None:
            finished.add_metric([], t)
        yield finished
        ok = GaugeMetricFamily("ptbill_last_success_timestamp_seconds", "when the last successful run ended")
        if (t := _epoch(st.last_ok().get("finished"))) is not None:
            ok.add_metric([], t)
        yield ok
        yield GaugeMetricFamily(
            "ptbill_sync_running",
            "1 while a sync run holds the lock",
            value=float(bool(st.sync_lock_holder())),
        )
        yield from fhir_families(st.r.hgetall(f"{st.p}:{METRICS_KEY}"))  # type: ignore[arg-type]


def fhir_families(raw: Mapping[str, str]) -> Iterator[Any]:
    """The FHIR request counter and histogram from the Redis hash :func:`flush` fills."""
    requests = CounterMetricFamily(
        "ptbill_fhir_requests", "FHIR requests by kind and status class", labels=["kind", "status"]
    )
    hist = HistogramMetricFamily(
        "ptbill_fhir_request_seconds", "FHIR request time to the answer's headers", labels=["kind"]
    )
    values = {k: float(v) for k, v in raw.items()}
    for kind in KINDS:
        count = 0.0
        for k, v in sorted(values.items()):
            parts = k.split("|")
            if parts[0] == kind and parts[1] == "n":
                requests.add_metric([kind, parts[2]], v)
                count += v
        if not count:
            continue
        buckets = [(f"{b:g}", values.get(f"{kind}|le|{b:g}", 0.0)) for b in BUCKETS]
        hist.add_metric([kind], [*buckets, ("+Inf", count)], sum_value=values.get(f"{kind}|sum", 0.0))
    yield requests
    yield hist


def registry_for(state: StateStore) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(state))
    return reg


def serve(state: StateStore, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the server (``.shutdown()``)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry_for(state))
    return server
