"""A guard around one kombu Redis-transport failure that killed workers when the broker restarted.

On a broker connection loss Celery closes the broken connection (``Consumer.on_connection_error_after_
connected``); closing its channel re-queues the messages it had delivered but not acked
(``QoS.restore_unacked``), which needs the connection's parameters — already gone by then (the
transport's ``client`` is None). The ``AttributeError`` that follows is not a connection error, so it ends
the worker ("Unrecoverable error: AttributeError"; kombu 5.7, seen in tests/integration/test_faults.py
``test_redis_restarted_mid_sync``). Nothing is lost by skipping that restore: with the Redis transport an
unacked message stays in Redis' unacked set and is restored after the visibility timeout by any worker
(and when Redis itself restarted empty, there is nothing to restore).

The same torn-down channel is reached again when a task that was running at the loss finishes and its
message is acked (``QoS.ack`` -> ``conn_or_acquire``). There the guard turns the ``AttributeError`` into
the connection error it is (``redis.exceptions.ConnectionError``), which Celery's ack path logs and survives;
the message stays unacked, comes back after the visibility timeout and is processed again (idempotently).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("ptbill.worker")


def install() -> None:
    """Patch ``kombu.transport.redis.QoS.restore_unacked`` once: skip it when the connection is gone."""
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.QoS.restore_unacked
    if getattr(original, "_ptbill_guarded", False):
        return

    def restore_unacked(self: Any, client: Any = None) -> Any:
        transport = getattr(getattr(self, "channel", None), "connection", None)
        if client is None and getattr(transport, "client", None) is None:
            log.warning(
                "broker connection gone: unacked messages are left to the visibility timeout",
                extra={"counts": {"unacked": len(getattr(self, "_delivered", {}) or {})}},
            )
            return None
        return original(self, client)

    restore_unacked._ptbill_guarded = True  # type: ignore[attr-defined]
    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]

    connparams = kombu_redis.Channel._connparams

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if getattr(getattr(self, "connection", None), "client", None) is None:
            raise kombu_redis.redis.exceptions.ConnectionError("the broker connection is already closed")
        return connparams(self, asynchronous=asynchronous)

    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]
