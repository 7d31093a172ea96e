"""``ptbill flower``: Celery Flower started with ptbill's settings, so its protection cannot be forgotten.

* basic auth from ``PTBILL_FLOWER_BASIC_AUTH`` (or ``PTBILL_FLOWER_BASIC_AUTH_FILE``, a Docker secret; the
  old spelling ``FLOWER_BASIC_AUTH`` still works): without credentials it refuses to start. The
  credentials reach Flower through this process's environment, never its command line (``ps`` shows that);
* Flower's Prometheus ``/metrics`` is put behind the same basic auth (Flower 2.2 serves it to anyone);
* it listens on 127.0.0.1 unless ``--address`` says otherwise (compose: inside the container network);
* the broker is the one ``PTBILL_BROKER_URL`` names (``-A tasks.app``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from integration.errors import ConfigError
from integration.settings import Settings

OLD_VARIABLE = "FLOWER_BASIC_AUTH"


def credentials(settings: Settings, env: os._Environ[str] | dict[str, str]) -> str:
    creds = settings.flower_basic_auth or env.get(OLD_VARIABLE) or ""
    pairs = [c for c in creds.split(",") if c.strip()]
    if not pairs:
        raise ConfigError(
            "ptbill flower needs PTBILL_FLOWER_BASIC_AUTH=user:password (or PTBILL_FLOWER_BASIC_AUTH_FILE); "
            "Flower shows task arguments and can revoke tasks, so it never runs open"
        )
    for p in pairs:
        user, sep, password = p.partition(":")
        if not sep or not user or not password:
            raise ConfigError("PTBILL_FLOWER_BASIC_AUTH must be user:password (comma-separated for several)")
    return ",".join(pairs)


def protect_metrics() -> None:
    """Require Flower's own authentication on /metrics too."""
    import tornado.web
    from flower.views import monitor

    handler = monitor.Metrics
    if not getattr(handler.get, "_ptbill_protected", False):
        protected = tornado.web.authenticated(handler.get)
        protected._ptbill_protected = True  # type: ignore[attr-defined]
        handler.get = protected


def flower_argv(port: int, address: str, extra: Sequence[str]) -> list[str]:
    return [
        "celery",
        "-A",
        "tasks.app",
        "flower",
        f"--port={port}",
        f"--address={address}",
        "--persistent=False",
        *extra,
    ]


def run(settings: Settings, *, port: int, address: str, extra: Sequence[str]) -> int:
    os.environ[OLD_VARIABLE] = credentials(settings, os.environ)  # Flower reads FLOWER_BASIC_AUTH
    os.environ.setdefault("FLOWER_PURGE_OFFLINE_WORKERS", "300")
    protect_metrics()
    from celery.bin.celery import main as celery_main

    sys.argv = flower_argv(port, address, extra)
    try:
        return int(celery_main() or 0)
    except SystemExit as e:  # click ends with SystemExit
        return int(e.code or 0) if not isinstance(e.code, str) else 1
