"""Sync state kept in Redis, per FHIR server: watermark, write ledger, run bookkeeping, dead letters, locks.

Key layout (``{p}`` = ``ptbill:{server_key}``):
  {p}:watermark              ISO instant: everything last-updated at or before it has been processed
  {p}:epoch                  set when the ledger is known complete (clean server, or a full run that
                             finished ok): a missing ledger entry then means "nothing written"
  {p}:ledger:{enc}           digest of the output set last written for the encounter (JSON); while a write
                             is in flight (or its outcome unknown) {"digest": null, "writing": ...}
  {p}:run:{run}              hash: since, until, started, paging_done, counters
  {p}:run:{run}:pending      set of encounter ids not yet processed in the run
  {p}:run:{run}:enc:{enc}    claim check: the encounter group fetched while paging (JSON, TTL)
  {p}:ctx:{patient}          cached patient context for one run (JSON, TTL)
  {p}:dead                   hash enc -> JSON {reason, attempts, at, run, expires} (PHI-free reason;
                             each entry expires after ``dead_letter_ttl``, the hash with the last one)
  {p}:last                   hash: last run summary (status, finished, counters, PHI-free reason)
  {p}:totals                 hash: lifetime counters
  {p}:runs                   hash: finished runs by status (ok, partial, failed)
  {p}:metrics:fhir           hash: FHIR request counts and latency buckets by kind (integration.metrics)
  {p}:lock:sync, {p}:lock:enc:{enc}   locks

Nothing here holds names or free text except the claim-check/context caches, which expire (TTL) and
live only in the operator's Redis.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

CACHE_TTL = 6 * 3600
DEAD_LETTER_TTL = 30 * 24 * 3600  # PTBILL_DEAD_LETTER_DAYS

# KEYS[1] = lifetime totals (always), KEYS[2] = the run, only while its record exists: a task that
# finishes after its run record was lost (Redis restarted without persistence) must not recreate a
# stray run hash with no window and no expiry.
_INCR_SCRIPT = """
local run_exists = #KEYS < 2 or redis.call('EXISTS', KEYS[2]) == 1
for i = 1, #ARGV, 2 do
  for j, key in ipairs(KEYS) do
    if j == 1 or run_exists then
      redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
    end
  end
end
return 1
"""


# One round trip at the end of each encounter (it ran ~6 before): counters (run and totals), clear or keep
# the dead letter, take the encounter off the run's pending set, drop its claim check, and answer whether
# the run may now be final (paging done and nothing pending). KEYS: totals, run, pending, claim, dead.
# ARGV: encounter id, clear-dead-letter flag, then counter name/value pairs.
_FINISH_SCRIPT = """
local run_exists = redis.call('EXISTS', KEYS[2]) == 1
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  if run_exists then redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
if ARGV[2] == '1' then redis.call('HDEL', KEYS[5], ARGV[1]) end
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
if not run_exists then return 0 end
if redis.call('HGET', KEYS[2], 'paging_done') == '1' and redis.call('SCARD', KEYS[3]) == 0 then
  return 1
end
return 0
"""


def utcnow_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class RunInfo:
    run_id: str
    since: str
    until: str


class StateStore:
    def __init__(self, client: redis.Redis, server_key: str, dead_letter_ttl: float = DEAD_LETTER_TTL):
        self.r = client
        self.p = f"ptbill:{server_key}"
        self.dead_letter_ttl = int(dead_letter_ttl)

    @classmethod
    def from_url(cls, url: str, server_key: str, dead_letter_ttl: float = DEAD_LETTER_TTL) -> StateStore:
        return cls(
            redis.Redis.from_url(url, decode_responses=True, socket_timeout=10), server_key, dead_letter_ttl
        )

    # --- watermark and ledger epoch -------------------------------------------------------------
    def watermark(self) -> str | None:
        return self.r.get(f"{self.p}:watermark")  # type: ignore[return-value]

    def set_watermark(self, value: str) -> None:
        """Only ever moves forward."""
        cur = self.watermark()
        if cur is None or value > cur:
            self.r.set(f"{self.p}:watermark", value)

    def has_epoch(self) -> bool:
        return bool(self.r.exists(f"{self.p}:epoch"))

    def set_epoch(self) -> None:
        self.r.set(f"{self.p}:epoch", utcnow_iso(), nx=True)

    # --- ledger ------------------------------------------------------------------------------------
    def ledger(self, encounter_id: str) -> dict[str, Any] | None:
        raw = self.r.get(f"{self.p}:ledger:{encounter_id}")
        return json.loads(raw) if raw else None

    def set_ledger(self, encounter_id: str, value: dict[str, Any]) -> None:
        self.r.set(f"{self.p}:ledger:{encounter_id}", json.dumps(value, sort_keys=True))

    def mark_writing(self, encounter_id: str) -> None:
        """Before the first write of an encounter: from now on its ledger entry matches no digest, so any
        retry (a crash, a lost answer, a dead letter) reads the server back before writing again."""
        self.r.set(
            f"{self.p}:ledger:{encounter_id}",
            json.dumps({"digest": None, "writing": utcnow_iso()}, sort_keys=True),
        )

    # --- runs ---------------------------------------------------------------------------------------
    def start_run(self, since: str, until: str) -> RunInfo:
        run_id = uuid.uuid4().hex[:16]
        self.r.hset(
            f"{self.p}:run:{run_id}",
            mapping={"since": since, "until": until, "started": utcnow_iso(), "paging_done": 0},
        )
        self.r.expire(f"{self.p}:run:{run_id}", 7 * 24 * 3600)
        return RunInfo(run_id, since, until)

    def start_named_run(self, run_id: str, since: str, until: str) -> RunInfo:
        """A run record under a name the caller chose (a Celery task id: its retries continue the run)."""
        self.r.hset(
            f"{self.p}:run:{run_id}",
            mapping={"since": since, "until": until, "started": utcnow_iso(), "paging_done": 0},
        )
        self.r.expire(f"{self.p}:run:{run_id}", 7 * 24 * 3600)
        return RunInfo(run_id, since, until)

    def set_run_fields(self, run_id: str, fields: dict[str, str | int]) -> None:
        """Add fields to a run record (status, backfill/full marks, write strategy, paging time...)."""
        if fields:
            self.r.hset(f"{self.p}:run:{run_id}", mapping=cast(Any, fields))

    def run(self, run_id: str) -> dict[str, str]:
        return self.r.hgetall(f"{self.p}:run:{run_id}")  # type: ignore[return-value]

    def run_final(self, run_id: str) -> bool:
        """True once the run was closed (:meth:`try_finalize`)."""
        return bool(self.r.exists(f"{self.p}:run:{run_id}:final"))

    def add_pending(self, run_id: str, encounter_ids: list[str]) -> None:
        if encounter_ids:
            key = f"{self.p}:run:{run_id}:pending"
            self.r.sadd(key, *encounter_ids)
            self.r.expire(key, 7 * 24 * 3600)

    def pending_count(self, run_id: str) -> int:
        return int(self.r.scard(f"{self.p}:run:{run_id}:pending"))

    def done(self, run_id: str, encounter_id: str) -> None:
        self.r.srem(f"{self.p}:run:{run_id}:pending", encounter_id)

    def set_paging_done(self, run_id: str) -> None:
        self.r.hset(f"{self.p}:run:{run_id}", "paging_done", 1)

    def incr(self, run_id: str | None, counter: str, n: int = 1) -> None:
        self.incr_many(run_id, {counter: n})

    def incr_many(self, run_id: str | None, counters: dict[str, int]) -> None:
        """Add to the run's and the lifetime counters in one round trip (one Lua call)."""
        args: list[str | int] = []
        for k, v in counters.items():
            if v:
                args += [k, int(v)]
        if not args:
            return
        keys = [f"{self.p}:totals"] + ([f"{self.p}:run:{run_id}"] if run_id else [])
        self.r.eval(_INCR_SCRIPT, len(keys), *keys, *args)

    def finish_encounter(
        self, run_id: str | None, encounter_id: str, counters: dict[str, int], clear_dead_letter: bool
    ) -> bool:
        """Book one finished encounter in a single round trip; True when the run may now be final."""
        args: list[str | int] = [encounter_id, "1" if clear_dead_letter else "0"]
        for k, v in counters.items():
            if v:
                args += [k, int(v)]
        rid = run_id or "-"
        keys = [
            f"{self.p}:totals",
            f"{self.p}:run:{rid}",
            f"{self.p}:run:{rid}:pending",
            f"{self.p}:run:{rid}:enc:{encounter_id}",
            f"{self.p}:dead",
        ]
        return bool(self.r.eval(_FINISH_SCRIPT, len(keys), *keys, *args)) and run_id is not None

    def try_finalize(self, run_id: str) -> dict[str, str] | None:
        """When paging is done and nothing is pending, close the run exactly once.

        Returns the run record for the one caller that closed it, else None.
        """
        info = self.run(run_id)
        if not info or info.get("paging_done") != "1" or self.pending_count(run_id) > 0:
            return None
        if not self.r.set(f"{self.p}:run:{run_id}:final", 1, nx=True, ex=7 * 24 * 3600):
            return None
        if info.get("backfill") != "1":  # a backfill never moves the watermark
            self.set_watermark(info["until"])
        info = self.run(run_id)
        summary: dict[str, Any] = {k: v for k, v in info.items() if k != "paging_done"}
        summary.update({"status": "ok", "finished": utcnow_iso(), "run_id": run_id})
        failed = int(info.get("dead_lettered", 0) or 0)
        if failed:
            summary["status"] = "partial"
        elif info.get("full") == "1":
            # only a complete, successful full run proves the ledger covers every encounter ever eligible;
            # a partial one (or one whose record was lost with Redis) never does
            self.set_epoch()
        # replaced in one MULTI: a reader never sees the summary missing between delete and write
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(f"{self.p}:last")
        pipe.hset(f"{self.p}:last", mapping=cast(Any, summary))
        pipe.hincrby(f"{self.p}:runs", summary["status"], 1)
        if summary["status"] == "ok":
            pipe.delete(f"{self.p}:last_ok")
            pipe.hset(f"{self.p}:last_ok", mapping=cast(Any, summary))
        pipe.execute()
        return summary

    def record_failure(self, reason: str, run_id: str | None = None) -> None:
        """The last run failed: ``reason`` must be PHI-free (``integration.errors.reason``)."""
        self.r.hincrby(f"{self.p}:runs", "failed", 1)
        self.r.delete(f"{self.p}:last")
        self.r.hset(
            f"{self.p}:last",
            mapping={
                "status": "failed",
                "finished": utcnow_iso(),
                "reason": reason[:500],
                "run_id": run_id or "",
            },
        )

    def last(self) -> dict[str, str]:
        return self.r.hgetall(f"{self.p}:last")  # type: ignore[return-value]

    def last_ok(self) -> dict[str, str]:
        return self.r.hgetall(f"{self.p}:last_ok")  # type: ignore[return-value]

    def totals(self) -> dict[str, str]:
        return self.r.hgetall(f"{self.p}:totals")  # type: ignore[return-value]

    def runs_by_status(self) -> dict[str, int]:
        raw: dict[str, str] = self.r.hgetall(f"{self.p}:runs")  # type: ignore[assignment]
        return {k: int(v) for k, v in raw.items()}

    # --- claim checks ---------------------------------------------------------------------------
    def put_group(self, run_id: str, encounter_id: str, group: dict[str, Any]) -> None:
        self.r.set(f"{self.p}:run:{run_id}:enc:{encounter_id}", json.dumps(group), ex=CACHE_TTL)

    def get_group(self, run_id: str, encounter_id: str) -> dict[str, Any] | None:
        raw = self.r.get(f"{self.p}:run:{run_id}:enc:{encounter_id}")
        return json.loads(raw) if raw else None

    # --- dead letters -------------------------------------------------------------------------------
    def dead_letter(self, encounter_id: str, reason: str, attempts: int, run_id: str | None) -> None:
        """Record an encounter that failed for good: its id, a PHI-free ``reason``
        (``integration.errors.reason``), attempts, time and run. It expires after ``dead_letter_ttl``."""
        expires = int(time.time()) + self.dead_letter_ttl
        record = {"reason": reason[:300], "attempts": attempts, "at": utcnow_iso(), "run": run_id}
        pipe = self.r.pipeline()
        pipe.hset(f"{self.p}:dead", encounter_id, json.dumps({**record, "expires": expires}))
        pipe.expire(f"{self.p}:dead", self.dead_letter_ttl)  # the hash goes with its newest entry
        pipe.execute()

    def dead_letters(self) -> dict[str, dict[str, Any]]:
        """The dead letters still in force; expired entries are deleted on the way."""
        raw: dict[str, str] = self.r.hgetall(f"{self.p}:dead")  # type: ignore[assignment]
        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        expired: list[str] = []
        for k, v in raw.items():
            d = json.loads(v)
            if isinstance(d.get("expires"), int | float) and d["expires"] <= now:
                expired.append(k)
                continue
            out[k] = d
        if expired:
            self.r.hdel(f"{self.p}:dead", *expired)
        return out

    def clear_dead_letter(self, encounter_id: str) -> None:
        self.r.hdel(f"{self.p}:dead", encounter_id)

    # --- locks ----------------------------------------------------------------------------------
    @contextmanager
    def lock(
        self, name: str, timeout: float, blocking_timeout: float = 0, keepalive: bool = False
    ) -> Iterator[bool]:
        """A Redis lock for the ``with`` block. ``keepalive``: a thread renews the TTL every
        ``timeout / 3`` s while the block runs, so ``timeout`` can be short: a holder that dies
        (SIGKILL, OOM) frees the lock within ``timeout`` instead of blocking others for long."""
        lk = self.r.lock(
            f"{self.p}:lock:{name}",
            timeout=timeout,
            blocking_timeout=blocking_timeout,
            thread_local=False,  # the keepalive thread renews with the token taken here
        )
        got = lk.acquire(blocking=blocking_timeout > 0)
        stop = threading.Event()
        beat: threading.Thread | None = None
        if got and keepalive:

            def renew() -> None:
                while not stop.wait(timeout / 3):
                    try:
                        lk.reacquire()
                    except redis.exceptions.LockError:
                        return  # expired and lost: nothing left to renew
                    except redis.exceptions.RedisError:
                        continue

            beat = threading.Thread(target=renew, name="ptbill-lock-keepalive", daemon=True)
            beat.start()
        try:
            yield bool(got)
        finally:
            stop.set()
            if beat is not None:
                beat.join(timeout=5)
            if got:
                try:
                    lk.release()
                except redis.exceptions.LockError:
                    pass

    def acquire_sync_lock(self, run_id: str, timeout: int) -> bool:
        return bool(self.r.set(f"{self.p}:lock:sync", run_id, nx=True, ex=timeout))

    def release_sync_lock(self, run_id: str) -> None:
        # release only our own lock (compare-and-delete)
        script = (
            "if redis.call('get', KEYS[1]) == ARGV[1] then "
            "return redis.call('del', KEYS[1]) else return 0 end"
        )
        self.r.eval(script, 1, f"{self.p}:lock:sync", run_id)

    def sync_lock_holder(self) -> str | None:
        return self.r.get(f"{self.p}:lock:sync")  # type: ignore[return-value]
