"""The test Redis database of this test process.

``PTBILL_TEST_REDIS_URL`` (scripts/test.sh sets it; default ``redis://127.0.0.1:6379/15``). Under
pytest-xdist each worker (``gw0``, ``gw1``, ...) takes its own database counted down from that one (15, 14,
13, ...), so the Celery queues and ptbill's keys of two tests running at once never meet.
Integration fixtures flush it.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit


def _worker_redis_url(base: str, worker: str | None) -> str:
    """The Redis URL of one xdist worker (``gw0``, ``gw1``, ...): its own database number."""
    if not worker or not worker.startswith("gw"):
        return base
    index = int(worker[2:])
    parts = urlsplit(base)
    db = int(parts.path.strip("/") or 0)
    mine = db - index if db >= index else db + index
    if not 0 <= mine <= 15:
        raise RuntimeError(f"PTBILL_TEST_REDIS_URL {base}: no Redis database left for xdist worker {worker}")
    return urlunsplit(parts._replace(path=f"/{mine}"))


BASE_URL = os.environ.get("PTBILL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_REDIS_URL = _worker_redis_url(BASE_URL, os.environ.get("PYTEST_XDIST_WORKER"))
