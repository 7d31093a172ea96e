"""The EMR's request budget, shared by every ptbill process that talks to one FHIR server.

An EMR grants a client (ptbill) a request budget per server — so many requests a second or a minute —
whatever number of worker processes ptbill runs. A per-process Celery rate limit cannot express that: it
multiplies with the processes, and it throttles task starts rather than requests. So the budget
(``PTBILL_FHIR_REQUEST_BUDGET``, e.g. ``50/s``) is enforced here, on the HTTP requests themselves,
through one Redis key per server, and it is off by default: without it the worker concurrency bounds the
load (each worker process sends one request at a time).

The limiter is GCRA (generic cell rate algorithm) run atomically in Redis: each request reserves the
next free slot (``tat``: theoretical arrival time) and waits until it; up to ``burst`` requests may go at
once after an idle period. The clock is the caller's (injectable), so tests decide without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter

# KEYS[1] = the server's budget key. ARGV: now (s), interval (s per request), burst tolerance (s), ttl (ms).
# Returns the seconds (as a string, Redis truncates numbers) the caller must wait before sending.
_RESERVE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', ARGV[4])
return tostring(wait)
"""


class RequestBudget:
    """``rate`` requests per second for everyone sharing ``key`` (one FHIR server), bursts of ``burst``."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.r = client
        self.key = key
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._script = client.register_script(_RESERVE)
        self.waited = 0.0  # seconds this process waited for the budget (stats)

    @property
    def interval(self) -> float:
        return 1.0 / self.rate

    def reserve(self) -> float:
        """Reserve the next slot; the seconds to wait before using it (0: go now)."""
        interval = self.interval
        ttl_ms = int((interval * (self.burst + 1) + 60) * 1000)
        wait = self._script(
            keys=[self.key],
            args=[repr(self._clock()), repr(interval), repr(interval * (self.burst - 1)), ttl_ms],
        )
        return max(0.0, float(wait))

    def acquire(self) -> float:
        """Wait for this request's slot; returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self.waited += wait
            self._sleep(wait)
        return wait


class BudgetedAdapter(BaseAdapter):
    """A transport adapter that takes a slot of the budget before every request it sends."""

    def __init__(self, inner: BaseAdapter, budget: RequestBudget):
        super().__init__()
        self.inner = inner
        self.budget = budget

    def send(  # type: ignore[override]
        self, request: PreparedRequest, **kwargs: Any
    ) -> Response:
        self.budget.acquire()
        return self.inner.send(request, **kwargs)

    def close(self) -> None:
        self.inner.close()


def budget_key(server_key: str) -> str:
    return f"ptbill:{server_key}:budget"


def install(session: Any, base_url: str, budget: RequestBudget) -> None:
    """Route every request of ``session`` to ``base_url``'s origin through ``budget``."""
    inner = session.get_adapter(base_url)
    scheme, rest = base_url.split("://", 1)
    origin = f"{scheme}://{rest.split('/', 1)[0]}"
    session.mount(origin, BudgetedAdapter(inner, budget))


def budget_from_settings(settings: Any, redis_client: redis.Redis | None = None) -> RequestBudget | None:
    """The budget PTBILL_FHIR_REQUEST_BUDGET asks for (None when unset)."""
    rate = settings.request_budget_per_second
    if rate is None:
        return None
    client = redis_client or redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    burst = max(1, int(rate))  # a second's worth at once after a quiet spell
    return RequestBudget(client, budget_key(settings.server_key), rate, burst=burst)
