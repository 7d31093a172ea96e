"""Fault tolerance with real processes: sekmet-fhir <- fault proxy <- Celery workers on Redis.

Every test seeds a sekmet server with the same synthetic clinic (fixed resource ids, so two servers
are identical), puts :class:`FaultProxy` in front of it, runs sync with real workers while faults are
injected, and checks the invariants against a fault-free reference run on an identical server:

* no duplicates: one resource per business identifier, one Provenance per
  encounter with output, nothing retired (a first sync on a clean server never retires);
* no orphans: every encounter-owned suggestion has its encounter's Provenance (same transaction);
* nothing lost: every eligible encounter is in the ledger, or dead-lettered with a reason;
* the watermark never moves before the run is final (sampled throughout), and then equals its end;
* the same set of (type, identifier, content hash) as the reference run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import redis

from integration.fhir.client import FhirClient
from integration.fhir.writeback import (
    ENCOUNTER_TAG,
    EXT_HASH,
    IDENTIFIER_SYSTEM,
    PTBILL_TAG,
    RETIRED_STATUS,
    build_outputs,
)
from integration.runner import (
    Runtime,
    begin_run,
    failure_reason,
    finish_failed,
    finish_ok,
    load_group,
    page_run,
    process_one,
)
from integration.settings import Settings
from integration.state import StateStore
from integration.sync import decide_group
from ptbill_demo.embedded import SekmetServer, free_port
from ptbill_demo.synth import generate_clinic
from tests.integration.faultproxy import (
    Fault,
    FaultPlan,
    FaultProxy,
    Rule,
    is_batch,
    is_get,
    is_transaction,
    transaction_for_encounter,
)
from tests.integration.support import env_for, send_sync, state_for, wait_for, wait_run

pytestmark = pytest.mark.integration

PATIENTS = 2  # 14 eligible (finished) encounters
SEED = 7
SUGGESTION_TYPES = ("ChargeItem", "DetectedIssue", "Task", "Flag")
# small timeouts and retry delays so faults cost seconds, not minutes
FAST = {
    "PTBILL_HTTP_TIMEOUT": "2",
    "PTBILL_MAX_RETRIES": "4",
    "PTBILL_RETRY_BASE_SECONDS": "0.05",
    "PTBILL_RETRY_MAX_SECONDS": "2",
    "PTBILL_PAGE_SIZE": "4",  # several pages, so faults also hit paging
}

Triple = tuple[str, str, str]  # (resource type, business identifier, content hash)


# --- identical seeded servers ------------------------------------------------------------------


def fixed_id_bundles(patients: int, seed: int) -> list[dict[str, Any]]:
    """The synthetic clinic with ``PUT Type/<id from identifier>`` instead of conditional PUTs, so two
    servers seeded with it hold the same ids (and ptbill derives the same identifiers from them)."""
    out = []
    for b in generate_clinic(patients=patients, seed=seed):
        entries = []
        for e in json.loads(json.dumps(b["entry"])):
            url = e["request"]["url"]
            if e["request"]["method"] == "PUT" and "?identifier=" in url:
                rtype, ident = url.split("?identifier=", 1)
                rid = "syn-" + hashlib.sha256(unquote(ident).encode()).hexdigest()[:32]
                e["resource"]["id"] = rid
                e["request"]["url"] = f"{rtype}/{rid}"
            entries.append(e)
        out.append({**b, "entry": entries})
    return out


BUNDLES = fixed_id_bundles(PATIENTS, SEED)
ELIGIBLE = sorted(
    e["resource"]["id"]
    for b in BUNDLES
    for e in b["entry"]
    if e["resource"]["resourceType"] == "Encounter" and e["resource"]["status"] == "finished"
)


def seed_server(url: str) -> None:
    with FhirClient(url, timeout=60) as client:
        for b in BUNDLES:
            client.transaction(b, idempotent=True)


@dataclass
class Snapshot:
    """Every ptbill resource on a server."""

    suggestions: list[dict[str, Any]]
    provenances: list[dict[str, Any]]

    @classmethod
    def read(cls, url: str) -> Snapshot:
        with FhirClient(url, timeout=60) as c:
            sugg = [
                e["resource"]
                for t in SUGGESTION_TYPES
                for e in c.search_entries(t, [("_tag", f"{PTBILL_TAG}|ptbill"), ("_count", "500")])
            ]
            provs = [
                e["resource"]
                for e in c.search_entries("Provenance", [("_tag", f"{PTBILL_TAG}|ptbill"), ("_count", "500")])
            ]
        return cls(sugg, provs)

    def triples(self) -> Counter[Triple]:
        out: Counter[Triple] = Counter()
        for r in self.suggestions:
            ident = next(i["value"] for i in r["identifier"] if i["system"] == IDENTIFIER_SYSTEM)
            h = next(x["valueString"] for x in r.get("extension", []) if x["url"] == EXT_HASH)
            out[(r["resourceType"], ident, h)] += 1
        return out

    def encounters_with_output(self) -> set[str]:
        return {
            t["code"]
            for r in self.suggestions
            for t in r.get("meta", {}).get("tag", [])
            if t["system"] == ENCOUNTER_TAG
        }


@dataclass
class Reference:
    triples: Counter[Triple]  # encounter-owned suggestions (exact)
    flags: dict[str, set[str]]  # patient-level Flag identifier -> the contents any encounter writes
    with_output: set[str]

    def check(self, snap: Snapshot) -> None:
        triples = snap.triples()
        owned = Counter({k: n for k, n in triples.items() if k[0] != "Flag"})
        assert owned == self.triples
        flags = {i: h for (t, i, h) in triples if t == "Flag"}
        assert set(flags) == set(self.flags)
        # KNOWN BUG (reported): encounters of one episode write the same patient Flag identifier with
        # different text (e.g. "progress report due within 2 / 1 treatment day(s)"); the last writer
        # wins, so which one is on the server depends on processing order. Assert it is one of them.
        wrong = {i: h for i, h in flags.items() if h not in self.flags[i]}
        assert wrong == {}, wrong
        assert snap.encounters_with_output() == self.with_output


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Reference:
    """A fault-free run (in-process, the same runner code) on an identically seeded server."""
    with SekmetServer(tmp_path_factory.mktemp("reference")) as srv:
        seed_server(srv.base_url)
        env = env_for(srv.base_url, redis_url, **FAST)
        rt = Runtime(Settings.from_env(env))

        def dispatch(enc: str, run_id: str) -> None:
            try:
                finish_ok(rt, run_id, enc, process_one(rt, enc, run_id))
            except Exception as e:
                finish_failed(rt, run_id, enc, failure_reason(e), 1)

        run = begin_run(rt, None, None, None, False)
        assert run is not None
        page_run(rt, run, dispatch)
        info = rt.state.run(run.run_id)
        assert int(info.get("processed", 0)) == len(ELIGIBLE), info
        assert rt.state.dead_letters() == {}
        # every content each encounter would give a patient-level Flag (see Reference.check)
        flags: dict[str, set[str]] = defaultdict(set)
        for enc in ELIGIBLE:
            group = load_group(rt, enc, None)
            assert group is not None
            for o in build_outputs(*decide_group(group, rt.tables)):
                if not o.encounter_owned:
                    flags[o.identifier].add(o.content_hash)
        rt.client.close()
        snap = Snapshot.read(srv.base_url)
    triples = snap.triples()
    assert triples and max(triples.values()) == 1
    owned = Counter({k: n for k, n in triples.items() if k[0] != "Flag"})
    assert {i for (t, i, _) in triples if t == "Flag"} == set(flags)
    return Reference(owned, dict(flags), snap.encounters_with_output())


# --- a faulted server ----------------------------------------------------------------------------


@contextlib.contextmanager
def proxied_server(
    tmp_path: Path, plan: FaultPlan | None = None
) -> Iterator[tuple[SekmetServer, FaultProxy]]:
    """A seeded sekmet behind a fault proxy. sekmet's base URL is the proxy's, so its paging links lead
    back through the proxy (the proxy rewrites nothing)."""
    with FaultProxy(plan=plan, lifetime=300) as proxy:
        with SekmetServer(tmp_path / "fhir", extra_settings={"base_url": proxy.url()}) as srv:
            proxy.upstream = srv.root_url
            seed_server(srv.base_url)  # directly, not through the faults
            yield srv, proxy


class WatermarkWatch:
    """Samples the watermark while a run is in flight: it must not move before the run is final."""

    def __init__(self, env: dict[str, str]):
        self.state = state_for(env)
        self.start_value = self.state.watermark()
        self.violations: list[str] = []
        self.samples = 0
        self.run_ids: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, run_id: str) -> None:
        self.run_ids.add(run_id)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                wm = self.state.watermark()
                if wm == self.start_value:
                    self.samples += 1
                    continue
                finals = [
                    rid
                    for rid in list(self.run_ids)
                    if self.state.r.exists(f"{self.state.p}:run:{rid}:final")
                    and self.state.run(rid).get("until") == wm
                ]
                if not finals:
                    self.violations.append(f"watermark {wm} set before its run was final")
                self.samples += 1
            except redis.exceptions.RedisError:
                continue  # the Redis restart test kills Redis under us

    def __enter__(self) -> WatermarkWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def assert_invariants(
    url: str, state: StateStore, reference: Reference, *, final_run: dict[str, str], dead_ok: bool = False
) -> Snapshot:
    snap = Snapshot.read(url)
    triples = snap.triples()
    # no duplicate business identifiers, nothing retired
    idents = Counter((t, i) for (t, i, _), n in triples.items() for _ in range(n))
    dupes = {k: n for k, n in idents.items() if n > 1}
    assert dupes == {}, f"duplicate business identifiers: {dupes}"
    retired = [r["id"] for r in snap.suggestions if r.get("status") == RETIRED_STATUS.get(r["resourceType"])]
    assert retired == []
    # one Provenance per encounter with output, and no orphan without it
    prov_encounters = Counter(
        t["code"] for p in snap.provenances for t in p["meta"]["tag"] if t["system"] == ENCOUNTER_TAG
    )
    assert max(prov_encounters.values(), default=1) == 1
    orphans = {e for e in snap.encounters_with_output() if e not in prov_encounters}
    assert orphans == set(), f"suggestions without their encounter's Provenance: {sorted(orphans)}"
    # nothing lost: each eligible encounter processed (ledger) or dead-lettered with a reason
    dead = state.dead_letters()
    lost = [e for e in ELIGIBLE if state.ledger(e) is None and e not in dead]
    assert lost == [], f"encounters neither processed nor dead-lettered: {lost}"
    assert all(d.get("reason") for d in dead.values())
    if not dead_ok:
        assert dead == {}, dead
    # the watermark is the end of the final run's window
    assert state.watermark() == final_run["until"]
    # the same suggestions as the fault-free run
    if not dead:
        reference.check(snap)
    return snap


def fault_env(proxy: FaultProxy, redis_url: str, **extra: str) -> dict[str, str]:
    """Settings for workers behind the proxy, on an empty Redis database: a proxy port reused from an
    earlier test would give the same server key (watermark, ledger), and queues must hold nothing old."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    r.close()
    return env_for(proxy.url(), redis_url, **{**FAST, **extra})


def run_sync(env: dict[str, str], watch: WatermarkWatch, timeout: float = 120) -> dict[str, str]:
    run_id = uuid.uuid4().hex[:16]
    watch.watch(run_id)
    send_sync(env, run_id)
    return wait_run(watch.state, run_id, timeout)


# --- the fault matrix --------------------------------------------------------------------------

MATRIX: dict[str, tuple[list[Rule], str]] = {
    # (rules, the fault label prefix that must have been injected)
    "429-retry-after": (
        [Rule(Fault("status", 429, retry_after="1"), probability=0.25, limit=6)],
        "status:429",
    ),
    "503-bursts": (
        # bursts of 3 outlast the client's 2 retries: the task retry takes over
        [Rule(Fault("status", 503), nth={2, 11, 19, 27}, burst=3)],
        "status:503",
    ),
    "resets": (
        [
            Rule(Fault("close"), match=is_get, probability=0.15, limit=4),
            Rule(Fault("rst"), match=is_batch, probability=0.3, limit=3),
            # the transaction is carried out, then the connection is reset: the answer is lost
            Rule(Fault("rst", forward=True), match=is_transaction, nth={1, 4, 9}),
            Rule(Fault("close", forward=True), match=is_transaction, nth={2, 6}),
        ],
        "rst",
    ),
    "slow": (
        [
            Rule(Fault("slow", seconds=3), match=is_get, nth={3}),
            Rule(Fault("slow", seconds=3), match=is_transaction, nth={2, 7}),  # written, answered late
        ],
        "slow",
    ),
    "truncated": (
        [Rule(Fault("truncate", fraction=0.4), probability=0.2, limit=8)],
        "truncate",
    ),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_fault_matrix(case: str, tmp_path: Path, redis_url: str, workers: Any, reference: Reference) -> None:
    rules, label = MATRIX[case]
    with proxied_server(tmp_path, FaultPlan(rules, seed=SEED)) as (srv, proxy):
        env = fault_env(proxy, redis_url)
        workers.start(env, concurrency=2)
        with WatermarkWatch(env) as watch:
            info = run_sync(env, watch)
        assert watch.violations == []
        assert proxy.fault_count(label) > 0, f"no {label!r} fault was injected: {proxy.faults}"
        assert not proxy.exhausted
        assert int(info.get("dead_lettered", 0)) == 0
        assert_invariants(srv.base_url, watch.state, reference, final_run=info)
        # a second sync over the same server finds nothing new and writes nothing
        writes = proxy.bundles["transaction"]
        with WatermarkWatch(env) as watch2:
            info2 = run_sync(env, watch2)
        assert int(info2.get("processed", 0)) == 0
        assert proxy.bundles["transaction"] == writes
        assert_invariants(srv.base_url, watch2.state, reference, final_run=info2)


# --- Redis restarted in the middle of a sync ----------------------------------------------------


class RedisProcess:
    """Our own redis-server (no persistence) on a free port, to kill and restart."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.dir = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        wait_for(lambda: self._pings(client), 20, "redis-server to answer")
        return self

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def converge(env: dict[str, str], watch: WatermarkWatch, attempts: int = 4) -> dict[str, str]:
    """Send sync runs until one finalizes (a run may find the lock taken by a resumed older run)."""
    state = watch.state
    for _ in range(attempts):
        run_id = uuid.uuid4().hex[:16]
        watch.watch(run_id)
        send_sync(env, run_id)

        def settled(rid: str = run_id) -> dict[str, str] | None:
            info = state.run(rid)
            if state.r.exists(f"{state.p}:run:{rid}:final") or info.get("status") == "skipped-locked":
                return info
            return None

        info = wait_for(settled, 120, f"sync run {run_id} to finish or be skipped")
        if info.get("status") != "skipped-locked":
            return info  # type: ignore[no-any-return]
        holder = state.sync_lock_holder()
        if holder:
            watch.watch(holder)
            wait_for(lambda h=holder: state.sync_lock_holder() != h, 120, "the running sync to finish")
    raise AssertionError("no sync run finalized")


def test_redis_restarted_mid_sync(tmp_path: Path, workers: Any, reference: Reference) -> None:
    rds = RedisProcess(tmp_path).start()
    try:
        # a little latency on each write so that the restart lands in the middle of the run
        plan = FaultPlan([Rule(Fault("delay", seconds=0.25), match=is_transaction, probability=1.0)])
        with proxied_server(tmp_path, plan) as (srv, proxy):
            env = fault_env(proxy, rds.url)
            workers.start(env, concurrency=2)
            with WatermarkWatch(env) as watch:
                run1 = uuid.uuid4().hex[:16]
                watch.watch(run1)
                send_sync(env, run1)
                wait_for(
                    lambda: int(watch.state.run(run1).get("processed", 0)) >= 3,
                    60,
                    "three encounters to be processed",
                )
                assert not watch.state.r.exists(f"{watch.state.p}:run:{run1}:final")
                assert watch.state.watermark() is None
                rds.kill()  # all state, queues and unacked messages are gone
                rds.start()
                assert watch.state.watermark() is None  # the state is gone with the old Redis
                info = converge(env, watch)
            assert watch.violations == []
            assert proxy.count("POST", "rst") == 0
            assert_invariants(srv.base_url, watch.state, reference, final_run=info)
    finally:
        rds.stop()


# --- a worker killed (SIGKILL) in the middle of a write-back -------------------------------------


def test_worker_killed_during_writeback(
    tmp_path: Path, redis_url: str, workers: Any, reference: Reference
) -> None:
    # the third transaction is carried out upstream, then its answer is held until the worker is dead
    plan = FaultPlan([Rule(Fault("hold", forward=True), match=is_transaction, nth={3})])
    with proxied_server(tmp_path, plan) as (srv, proxy):
        env = fault_env(proxy, redis_url, PTBILL_VISIBILITY_TIMEOUT="6")
        first = workers.start(env, concurrency=2)
        with WatermarkWatch(env) as watch:
            run_id = uuid.uuid4().hex[:16]
            watch.watch(run_id)
            send_sync(env, run_id)
            wait_for(lambda: proxy.held >= 1, 60, "a transaction to be held by the proxy")
            first.kill(signal.SIGKILL)  # the whole worker: main process and pool children
            proxy.release()
            assert not watch.state.r.exists(f"{watch.state.p}:run:{run_id}:final")
            workers.start(env, concurrency=2)  # the message comes back after the visibility timeout
            info = wait_run(watch.state, run_id, 120)
        assert watch.violations == []
        assert proxy.held_total == 1
        assert_invariants(srv.base_url, watch.state, reference, final_run=info)


# --- dead letters ----------------------------------------------------------------------------------


def ptbill_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tasks.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_dead_letter_then_retry_failed(
    tmp_path: Path, redis_url: str, workers: Any, reference: Reference
) -> None:
    target = sorted(reference.with_output)[0]
    outcome = "ChargeItem.code: simulated payer edit rejects this code"
    plan = FaultPlan(
        [
            Rule(
                Fault("status", 422, outcome=outcome),
                match=transaction_for_encounter(target),
                probability=1.0,
            )
        ]
    )
    with proxied_server(tmp_path, plan) as (srv, proxy):
        env = fault_env(proxy, redis_url)
        workers.start(env, concurrency=2)
        with WatermarkWatch(env) as watch:
            info = run_sync(env, watch)
        state = watch.state
        assert watch.violations == []
        assert proxy.count("POST", 422) == 1  # a 422 is not retried
        assert int(info["dead_lettered"]) == 1, info
        assert int(info["processed"]) == len(ELIGIBLE) - 1, info
        dead = state.dead_letters()
        assert set(dead) == {target}
        # ids and a PHI-free reason only: the server's OperationOutcome text (it can name the patient) is
        # neither stored nor shown; method, URL without query, status and kind say what failed
        assert dead[target]["reason"] == f"FhirFatalError POST {proxy.url()} -> HTTP 422", dead[target]
        assert outcome not in json.dumps(state.dead_letters())
        assert dead[target]["expires"] > time.time() + 29 * 86400  # PTBILL_DEAD_LETTER_DAYS (30)
        assert 0 < state.r.ttl(f"{state.p}:dead") <= 30 * 86400
        assert state.last()["status"] == "partial"
        snap = assert_invariants(srv.base_url, state, reference, final_run=info, dead_ok=True)
        assert target not in snap.encounters_with_output()
        assert snap.encounters_with_output() == reference.with_output - {target}

        # ptbill status shows the partial run and the dead letter with its PHI-free cause; it exits 1
        # because a dead letter needs a person's attention
        status = ptbill_cli(env, "status", "--json")
        assert status.returncode == 1, status.stderr
        report = json.loads(status.stdout)
        assert report["last_run"]["status"] == "partial"
        assert [d["encounter"] for d in report["dead_letters"]] == [f"Encounter/{target}"]
        assert report["dead_letters"][0]["reason"] == dead[target]["reason"]
        human = ptbill_cli(env, "status")
        assert f"Encounter/{target}" in human.stdout and dead[target]["reason"] in human.stdout
        assert outcome not in status.stdout + human.stdout

        proxy.set_plan(None)  # the fault is fixed
        retried = ptbill_cli(env, "retry-failed", "--inline")
        assert retried.returncode == 0, retried.stderr
        assert json.loads(retried.stdout.strip().splitlines()[-1]) == {"retried": 1, "succeeded": 1}
        assert state.dead_letters() == {}
        assert_invariants(srv.base_url, state, reference, final_run=info)
        healthy = ptbill_cli(env, "status", "--json")
        assert healthy.returncode == 0 and json.loads(healthy.stdout)["dead_letters"] == []
