"""The ``ptbill`` command (an edge module: it may reach Celery; the integration library never does).

  ptbill demo [--patients N] [--json]     embedded FHIR server, broker and Celery worker; readable summary
  ptbill seed --patients N                load a synthetic PT clinic into PTBILL_FHIR_BASE_URL
  ptbill sync [--inline]                  one sync run now (through the workers, or in this process)
  ptbill backfill --since --until         re-process a window without moving the watermark
  ptbill status [--json]                  last sync, staleness, dead letters, Subscriptions; 1 if unhealthy
  ptbill retry-failed                     re-drive dead-lettered encounters
  ptbill doctor [--json]                  check settings, FHIR server, Redis, broker, workers, tables
  ptbill show ENCOUNTER                   one encounter's suggestions, evidence, findings and open tasks
  ptbill report [--since --until] [--html FILE] [--csv FILE]   a period per code, therapist and payer
  ptbill flower [--port P]                Celery Flower with ptbill's settings (basic auth required)
  ptbill metrics [--port P]               ptbill's Prometheus metrics (also served by every worker)
  ptbill classify FILE|-                  classify JSONL interventions (stable contract)
  ptbill eval FILE                        accuracy report on labelled JSONL
  ptbill process --bundle FILE            dry run: print the transaction Bundle that would be written
  ptbill mappings check [--dir D]         validate the rule tables strictly (default: PTBILL_MAPPINGS_DIR)
  ptbill serve [--host H] [--port P]      real-time feedback: CDS Hooks and Subscription notifications
  ptbill subscribe [--delete]             create/update ptbill's Subscriptions on the EMR (idempotent)

stdout carries only the command's result; logs and warnings go to stderr. The common failures (Redis or
the broker down, a bad URL, 401, 404 on the base, bad settings or tables) end in one line with the fix,
not a traceback (``ptbill --traceback ...`` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from integration import __version__
from integration.errors import ConfigError, InputError, MappingTableError

_current: dict[str, Any] = {}  # the settings this command read (for the one-line error messages)


def _settings() -> Any:
    from integration.settings import Settings

    s = Settings.from_env()
    _current["settings"] = s
    return s


def _configure_logs(s: Any) -> None:
    from integration import logs

    logs.configure(s.log_level, s.log_format)


def _err(line: str) -> None:
    sys.stderr.write(f"ptbill: {line}\n")


# --- classify / eval / process / mappings --------------------------------------------------------


def cmd_classify(a: argparse.Namespace) -> int:
    from integration.classify.cli import classify_main

    return classify_main(a.file, sys.stdout)


def cmd_eval(a: argparse.Namespace) -> int:
    from integration.classify.cli import eval_main

    return eval_main(a.file, sys.stdout)


def mappings_dir_in_use(explicit: str | None) -> tuple[Path, str]:
    """The tables a command checks: --dir, else PTBILL_MAPPINGS_DIR (as the worker reads it), else shipped."""
    from mappings.loader import MAPPINGS_DIR

    if explicit:
        return Path(explicit), "--dir"
    env = os.environ.get("PTBILL_MAPPINGS_DIR", "").strip()
    if env:
        return Path(env), "PTBILL_MAPPINGS_DIR"
    return MAPPINGS_DIR, "shipped tables"


def cmd_mappings_check(a: argparse.Namespace) -> int:
    from mappings.loader import load_tables

    where, source = mappings_dir_in_use(a.dir)
    print(f"checking {where} ({source})")
    if not where.is_dir():
        print(f"FAILED: {where} is not a directory")
        return 1
    try:
        tables = load_tables(where)
    except MappingTableError as e:
        for f, row, msg in e.problems:
            print(f"{f}: {row}: {msg}")
        print(f"FAILED: {len(e.problems)} problem(s) in {where}")
        return 1
    for t in tables:
        print(f"{t.file}: {t.name} {t.version} ({len(t.rows)} rows, sha {t.digest})")
    print(f"OK: {len(tables.tables)} tables in {where} (fingerprint {tables.fingerprint()})")
    return 0


def cmd_process(a: argparse.Namespace) -> int:
    from integration.fhir.extract import iter_groups
    from integration.jsonio import load_file
    from integration.pipeline import dry_run_bundle
    from integration.sync import Group
    from mappings.loader import default_tables, load_tables

    try:
        bundle = load_file(a.bundle)  # not UTF-8, not JSON or nested too deep: one clean line
        problems: list[str] = []
        groups = iter_groups(bundle, problems)
    except OSError as e:
        sys.stderr.write(f"ptbill process: cannot read {a.bundle}: {e.strerror or type(e).__name__}\n")
        return 2
    except InputError as e:
        sys.stderr.write(f"ptbill process: cannot read {a.bundle}: {e.reason}\n")
        return 2
    tables = load_tables(a.mappings) if a.mappings else default_tables()
    # one encounter at a time: each group's related map holds the bundle's shared resources, so keeping
    # every group (as a list) grew with encounters x patients; this stays linear in the bundle's size
    entries: list[dict[str, Any]] = []
    n = 0
    for enc, related in groups:
        entries.extend(dry_run_bundle([Group(enc, related)], tables)["entry"])
        n += 1
    del bundle
    for p in problems:
        sys.stderr.write(f"ptbill process: skipped bundle entry: {p}\n")
    out = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    sys.stderr.write(
        f"ptbill process: {n} encounter(s), {len(entries)} entries, {len(problems)} problem(s)\n"
    )
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


# --- seed / sync / backfill ----------------------------------------------------------------------


def _demo_tools(what: str) -> None:
    """The demo tools ship as ptbill_demo with the [demo] extra; say so instead of an ImportError."""
    import importlib.util

    if importlib.util.find_spec("ptbill_demo") is None:
        raise InputError(f"ptbill {what} needs the demo tools: pip install 'ptbill[demo]' (not in the image)")


def cmd_seed(a: argparse.Namespace) -> int:
    _demo_tools("seed")
    from integration.runner import make_client
    from ptbill_demo.synth import clinic_summary, generate_clinic

    s = _settings()
    _configure_logs(s)
    bundles = generate_clinic(patients=a.patients, seed=a.seed)
    with make_client(s) as client:
        for b in bundles:
            client.transaction(b, idempotent=True)
    print(json.dumps(clinic_summary(bundles)))
    return 0


def _run_status(info: dict[str, Any]) -> str:
    """ok / partial (dead letters) / failed / timeout / skipped-locked / not-started."""
    status = str(info.get("status") or "")
    if status in ("failed", "timeout", "skipped-locked", "not-started"):
        return status
    return "partial" if int(info.get("dead_lettered", 0) or 0) else "ok"


def _task_seen(app: Any, task_id: str) -> str | None:
    """The worker holding the sync task (active, reserved, scheduled for a retry), if any."""
    try:
        replies = app.control.inspect(timeout=1.0).query_task(task_id) or {}
    except Exception:  # best effort: only decides what the waiting line says
        return None
    for host, tasks in replies.items():
        if tasks:
            return str(host)
    return None


def _wait_run(
    state: Any,
    run_id: str,
    timeout: float,
    progress: bool,
    *,
    start_timeout: float | None = None,
    app: Any = None,
    task_id: str | None = None,
) -> dict[str, str]:
    """Wait for a run to finish, showing a progress bar on stderr. Polls the run record in Redis.

    With ``start_timeout``: when no worker has started the run by then and none holds the task, stop
    waiting at once (status ``not-started``) instead of waiting ``timeout`` in silence."""
    from tqdm import tqdm

    t0 = time.monotonic()
    deadline = t0 + timeout
    bar = None
    last_done = 0
    held_by: str | None = None
    while time.monotonic() < deadline:
        info = state.run(run_id)
        if state.run_final(run_id):
            if bar is not None:
                bar.update(max(0, int(info.get("dispatched", 0) or 0) - last_done))
                bar.close()
            return info
        if info.get("status") == "skipped-locked":
            if bar is not None:
                bar.close()
            return info
        last = state.last()
        if last.get("status") == "failed" and last.get("run_id") == run_id:
            if bar is not None:
                bar.close()
            return {**info, "status": "failed", "reason": last.get("reason", "")}
        if not info and start_timeout is not None and time.monotonic() - t0 > start_timeout:
            holder = _task_seen(app, task_id) if app is not None and task_id else None
            if holder is None:
                return {
                    "status": "not-started",
                    "reason": f"no worker started the sync within {start_timeout:.0f} s",
                }
            if holder != held_by:
                held_by = holder
                _err(f"the sync is held by {holder} but has not started yet (retrying?); waiting")
            start_timeout += 30.0  # ask again later
        dispatched = int(info.get("dispatched", 0) or 0)
        if progress and dispatched:
            if bar is None:
                tty = sys.stderr.isatty()
                bar = tqdm(
                    total=dispatched,
                    unit="enc",
                    desc="sync",
                    file=sys.stderr,
                    mininterval=0.5 if tty else 5.0,
                    ascii=not tty,
                )
            bar.total = dispatched
            done = dispatched - state.pending_count(run_id)
            bar.update(max(0, done - last_done))
            last_done = max(last_done, done)
        time.sleep(0.2)
    if bar is not None:
        bar.close()
    return {**state.run(run_id), "status": "timeout"}


def _run(a: argparse.Namespace, since: str | None, until: str | None, backfill: bool) -> int:
    from integration.runner import Runtime, begin_run, page_run

    s = _settings()
    _configure_logs(s)
    rt = Runtime(s)
    if a.inline:
        from integration import metrics
        from integration.errors import PtbillError, RunDeadlineExceeded
        from integration.runner import failure_reason, run_encounter

        def dispatch(enc: str, run_id: str) -> None:
            # like the worker: a failure is a dead letter and the batch goes on; a run past its deadline
            # stops as a whole (below) and this encounter stays pending
            run_encounter(rt, enc, run_id, will_retry=lambda e: isinstance(e, RunDeadlineExceeded))

        rt.state.r.ping()  # Redis first: a clear line when it is down, before any work
        meter = metrics.RequestMeter()
        metrics.install(rt.client._session, rt.client.base_url, meter)
        run = None
        run_id = uuid.uuid4().hex[:16]  # named up front, so a failure can release the lock it took
        try:
            with run_deadline(min(s.sync_deadline_seconds, s.lock_timeout)):
                run = begin_run(rt, run_id, since, until, backfill)
                if run is None:
                    print(json.dumps({"status": "skipped-locked"}))
                    return 1
                page_run(rt, run, dispatch)
        except PtbillError as e:  # e.g. the FHIR server is down: record it so `ptbill status` shows it
            rt.state.record_failure(failure_reason(e), run_id)
            rt.state.release_sync_lock(run_id)
            print(json.dumps({"status": "failed", "run_id": run_id, "reason": failure_reason(e)}))
            from tasks.explain import explain

            ex = explain(e, s)
            if ex is not None:
                _err(ex.line())
            return 1
        finally:
            metrics.flush(meter, rt.state)
        info: dict[str, Any] = rt.state.run(run_id)
    else:
        from integration.runner import load_settings_tables
        from tasks.app import app
        from tasks.config import QUEUE_READ, TASK_SYNC
        from tasks.workers import check_workers

        rt.state.r.ping()
        check = check_workers(app, s, load_settings_tables(s).fingerprint(), timeout=2.0)
        if not check.ok:
            _err(f"{check.line}; {check.fix}")
            return 2
        run_id = uuid.uuid4().hex[:16]
        task_id = uuid.uuid4().hex
        app.send_task(
            TASK_SYNC,
            kwargs={"run_id": run_id, "since": since, "until": until, "backfill": backfill},
            queue=QUEUE_READ,
            task_id=task_id,
        )
        info = _wait_run(
            rt.state,
            run_id,
            a.timeout,
            not a.quiet,
            start_timeout=a.start_timeout,
            app=app,
            task_id=task_id,
        )
    status = _run_status(info)
    info = {**info, "run_id": run_id, "status": status}
    print(json.dumps(info, sort_keys=True))
    if status == "partial":
        _err(f"run {run_id}: {info.get('dead_lettered')} encounter(s) dead-lettered; see ptbill status")
    elif status != "ok":
        _err(f"run {run_id} {status}" + (f": {info['reason']}" if info.get("reason") else ""))
    return 0 if status == "ok" else 1


@contextmanager
def run_deadline(seconds: float) -> Iterator[None]:
    """``sync --inline``: RunDeadlineExceeded in this (main) thread after ``seconds`` (SIGALRM)."""
    from integration.errors import RunDeadlineExceeded

    def expired(signum: int, frame: Any) -> None:
        raise RunDeadlineExceeded(f"the sync run ran past PTBILL_SYNC_DEADLINE ({seconds:g} s)")

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield  # no alarm outside the main thread: the run is bounded by its lock timeout only
        return
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cmd_sync(a: argparse.Namespace) -> int:
    return _run(a, None, None, False)


def cmd_backfill(a: argparse.Namespace) -> int:
    return _run(a, a.since, a.until, True)


# --- status / retry-failed -----------------------------------------------------------------------

_STATUS_COUNTERS = (
    "dispatched",
    "processed",
    "unchanged",
    "dead_lettered",
    "created",
    "updated",
    "retired",
    "kept_reviewed",
    "lines",
    "units",
    "findings",
    "actions",
    "flags",
    "input_problems",
    "bundle_problems",
    "pages",
    "fhir_read_requests",
    "fhir_write_requests",
)

# settings worth seeing on `ptbill status` (doctor shows them all)
_STATUS_SETTINGS = (
    "fhir_base_url",
    "auth_type",
    "redis_url",
    "broker_url",
    "sync_interval_seconds",
    "stale_after_intervals",
    "encounter_statuses",
    "mappings_dir",
    "fhir_request_budget",
    "rate_limit",
)


def _counters(d: dict[str, Any]) -> dict[str, int]:
    """The numeric counters of a run record or the totals, known ones first, then skipped:/units:/..."""
    out: dict[str, int] = {}
    for k in _STATUS_COUNTERS:
        if k in d:
            out[k] = _as_int(d[k])
    for k in sorted(d):
        if k not in out and ":" in k:
            out[k] = _as_int(d[k])
    return out


def _as_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _instant(value: Any) -> datetime | None:
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def status_report(s: Any, st: Any, now: datetime | None = None) -> dict[str, Any]:
    """Everything ``ptbill status`` shows, as plain data (``--json`` prints it as is)."""
    now = now or datetime.now(UTC)
    last = st.last()
    ok = st.last_ok()
    dead = st.dead_letters()
    failed = last.get("status") == "failed"
    stale_after = s.stale_after_intervals * s.sync_interval_seconds
    ok_at = _instant(ok.get("finished")) if ok else None
    first_at = _instant(last.get("started") or last.get("finished")) if last else None
    since_ok = (now - ok_at).total_seconds() if ok_at else None
    stale = (since_ok is not None and since_ok > stale_after) or (
        ok_at is None and first_at is not None and (now - first_at).total_seconds() > stale_after
    )
    red = s.redacted()
    report: dict[str, Any] = {
        "server": red["fhir_base_url"],
        "server_key": s.server_key,
        "watermark": st.watermark(),
        "ledger_complete": st.has_epoch(),
        "sync_running": st.sync_lock_holder() is not None,
        # chosen from the server's CapabilityStatement at the start of each run (check_server)
        "write_strategy": (last or {}).get("write_strategy") or (ok or {}).get("write_strategy"),
        "last_run": {
            "status": last.get("status"),
            "run_id": last.get("run_id") or None,
            "started": last.get("started"),
            "finished": last.get("finished"),
            "since": last.get("since"),
            "until": last.get("until"),
            "reason": last.get("reason"),
            "counters": _counters(last),
        }
        if last
        else None,
        "last_successful_run": {
            "run_id": ok.get("run_id"),
            "finished": ok.get("finished"),
            "since": ok.get("since"),
            "until": ok.get("until"),
            "counters": _counters(ok),
        }
        if ok
        else None,
        "seconds_since_success": int(since_ok) if since_ok is not None else None,
        "stale_after_seconds": int(stale_after),
        "stale": stale,
        "totals": _counters(st.totals()),
        "dead_letters": [
            {
                "encounter": f"Encounter/{enc}",
                "reason": d.get("reason"),
                "attempts": d.get("attempts"),
                "at": d.get("at"),
                "run_id": d.get("run"),
            }
            for enc, d in sorted(dead.items())
        ],
        "settings": {s.env_name(k): red[k] for k in _STATUS_SETTINGS},
    }
    problems = []
    if failed:
        problems.append("last sync failed")
    if dead:
        problems.append(f"{len(dead)} dead-lettered encounter(s)")
    if stale:
        problems.append(
            f"no successful sync for {_age(since_ok) if since_ok is not None else 'ever'} "
            f"(more than {s.stale_after_intervals:g} x PTBILL_SYNC_INTERVAL={s.sync_interval_seconds} s)"
        )
    if not last:
        problems.append("never synced")
    # real-time feedback: the Subscriptions `ptbill subscribe` made, with their state on the EMR
    push = _push_status(s, st)
    report["push"] = push
    for sub in push["subscriptions"]:
        if sub.get("status") != "active":
            problems.append(f"subscription {sub['sid']} is {sub.get('status')}")
    subs_ok = all(p.get("status") == "active" for p in push["subscriptions"])
    report["healthy"] = not (failed or dead or stale) and subs_ok
    report["problems"] = problems
    return report


def _push_status(s: Any, st: Any) -> dict[str, Any]:
    from integration.push import subscription_status

    return subscription_status(s, st)


def _print_status(report: dict[str, Any]) -> None:
    w = sys.stdout.write
    w(f"server:           {report['server']} (key {report['server_key']})\n")
    w(f"health:           {'OK' if report['healthy'] else 'ATTENTION: ' + '; '.join(report['problems'])}\n")
    w(f"watermark:        {report['watermark'] or '(never synced)'}\n")
    w(f"sync running:     {'yes' if report['sync_running'] else 'no'}\n")
    w(f"write strategy:   {report.get('write_strategy') or '(no run yet)'}\n")
    last = report["last_run"]
    if last is None:
        w("last run:         (none)\n")
    else:
        w(f"last run:         {last['status']} at {last['finished'] or '-'} (run {last['run_id'] or '-'})\n")
        if last.get("since"):
            w(f"  window:         ({last['since']}, {last['until']}]\n")
        if last.get("reason"):
            w(f"  reason:         {last['reason']}\n")
        for k, v in last["counters"].items():
            w(f"  {k:<22} {v}\n")
    ok = report["last_successful_run"]
    if ok is None:
        w("last successful:  (none)\n")
    else:
        ago = report["seconds_since_success"]
        w(f"last successful:  {ok['finished']} (run {ok['run_id']}, up to {ok['until']}; {_age(ago)} ago)\n")
    w("totals (all runs):\n")
    for k in ("processed", "unchanged", "created", "updated", "retired", "dead_lettered", "input_problems"):
        w(f"  {k:<22} {report['totals'].get(k, 0)}\n")
    for k, v in report["totals"].items():
        if k.startswith("skipped:"):
            w(f"  {k:<22} {v}\n")
    w(f"dead letters:     {len(report['dead_letters'])}\n")
    for d in report["dead_letters"]:
        w(f"  {d['encounter']}: {d['reason']} (attempts {d['attempts']}, at {d['at']}, run {d['run_id']})\n")
    if report["dead_letters"]:
        w("  re-drive with: ptbill retry-failed\n")
    push = report.get("push") or {}
    subs = push.get("subscriptions") or []
    w(f"subscriptions:    {len(subs) or '(none; see ptbill subscribe)'}\n")
    for sub in subs:
        err = f" - {sub['error']}" if sub.get("error") else ""
        w(f"  {sub['sid']}: {sub.get('status')} (Subscription/{sub.get('id')}, {sub.get('criteria')}){err}\n")
    if push.get("counters"):
        w("  notifications:  " + ", ".join(f"{k} {v}" for k, v in push["counters"].items()) + "\n")
    w("settings (ptbill doctor shows all, with their sources):\n")
    for k, v in report["settings"].items():
        shown = ",".join(v) if isinstance(v, tuple | list) else ("-" if v is None else v)
        w(f"  {k:<30} {shown}\n")


def cmd_status(a: argparse.Namespace) -> int:
    """Exit 0 when healthy; 1 when the last sync failed, encounters are dead-lettered or syncs are stale."""
    from integration.state import StateStore

    s = _settings()
    st = StateStore.from_url(s.redis_url, s.server_key, s.dead_letter_days * 86400)
    report = status_report(s, st)
    if a.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_status(report)
    return 0 if report["healthy"] else 1


def cmd_retry_failed(a: argparse.Namespace) -> int:
    s = _settings()
    _configure_logs(s)
    from integration.runner import Runtime, run_encounter

    rt = Runtime(s)
    dead = rt.state.dead_letters()
    if a.inline:
        ok = 0
        for enc in dead:
            outcome, _ = run_encounter(rt, enc, None, attempt=int(dead[enc].get("attempts", 0)) + 1)
            ok += outcome is not None
        print(json.dumps({"retried": len(dead), "succeeded": ok}))
        return 0 if ok == len(dead) else 1
    from tasks.app import app
    from tasks.config import QUEUE_MAINT, TASK_RETRY_FAILED

    app.send_task(TASK_RETRY_FAILED, queue=QUEUE_MAINT)
    print(json.dumps({"requeued": len(dead)}))
    return 0


# --- serve / subscribe (real-time feedback) ----------------------------------------------------


def cmd_serve(a: argparse.Namespace) -> int:
    from tasks.web import serve

    return serve(a.host, a.port)


def cmd_subscribe(a: argparse.Namespace) -> int:
    """Create or update ptbill's Subscriptions on the EMR; prints what it did, exits 1 on any error."""
    from integration.cds.subscriptions import build_specs
    from integration.push import PushState, ensure_subscriptions
    from integration.runner import make_client
    from integration.state import StateStore
    from tasks.web import service_url

    s = _settings()
    _configure_logs(s)
    if not s.notify_secret:
        raise ConfigError("ptbill subscribe needs PTBILL_NOTIFY_SECRET (the header the EMR sends back)")
    base = service_url(s)
    if not s.public_url:
        sys.stderr.write(f"ptbill subscribe: PTBILL_PUBLIC_URL is not set; the EMR will call {base}\n")
    try:
        specs = build_specs(s.subscriptions, base, s.subscription_payload, s.notify_header, s.notify_secret)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    push = PushState(StateStore.from_url(s.redis_url, s.server_key))
    with make_client(s) as client:  # an unreachable EMR, 401, 404 on the base: one line (tasks.explain)
        report = ensure_subscriptions(client, specs, push, delete=a.delete)
    print(json.dumps({"service": base, "subscriptions": report}, indent=2, sort_keys=True))
    return 0 if all(r.get("status") != "error" for r in report) else 1


# --- doctor / show / report / flower / demo ------------------------------------------------------


def cmd_doctor(a: argparse.Namespace) -> int:
    from tasks.doctor import main as doctor_main

    return doctor_main(os.environ, as_json=a.json, workers=not a.no_workers, wait=a.wait)


def _reader(s: Any) -> tuple[Any, Any]:
    from integration.review.read import Reader
    from integration.runner import load_settings_tables, make_client

    tables = load_settings_tables(s)
    client = make_client(s)
    return Reader(client, tables), tables


def cmd_show(a: argparse.Namespace) -> int:
    from dataclasses import asdict

    from integration.review.lookup import fees_are_placeholders
    from integration.review.text import render_encounter

    s = _settings()
    _configure_logs(s)
    encounter = a.encounter.removeprefix("Encounter/")
    reader, tables = _reader(s)
    with reader.client:
        view = reader.encounter(encounter)
    if view is None:
        _err(
            f"ptbill has written nothing for Encounter/{encounter} (not synced yet, or not an encounter here)"
        )
        return 1
    if a.json:
        print(json.dumps(asdict(view), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render_encounter(view, placeholder_fees=fees_are_placeholders(tables)))
    return 0


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def build_report(s: Any, since: date, until: date) -> tuple[Any, list[Any]]:
    """The period's Summary and encounter views, read from the FHIR server with settings ``s``."""
    from integration.review.lookup import fees_are_placeholders
    from integration.review.summary import summarize

    reader, tables = _reader(s)
    with reader.client:
        views = reader.window(since, until)
        flags = reader.active_flags()
    summary = summarize(
        views,
        since=since.isoformat(),
        until=until.isoformat(),
        placeholder_fees=fees_are_placeholders(tables),
        flags=flags,
    )
    return summary, views


def write_report_files(
    s: Any, summary: Any, views: list[Any], html: str | None, csv: str | None
) -> list[str]:
    from integration.review.csv_lines import write_csv
    from integration.review.html import render_html

    written = []
    if html:
        Path(html).write_text(render_html(summary, server=s.redacted()["fhir_base_url"]), encoding="utf-8")
        written.append(str(Path(html).resolve()))
    if csv:
        with open(csv, "w", encoding="utf-8", newline="") as fh:
            write_csv(views, fh)
        written.append(str(Path(csv).resolve()))
    return written


def cmd_report(a: argparse.Namespace) -> int:
    from dataclasses import asdict

    from integration.review.text import render_summary

    s = _settings()
    _configure_logs(s)
    until = a.until or date.today()
    since = a.since or (until - timedelta(days=30))
    if since > until:
        _err(f"--since {since} is after --until {until}")
        return 2
    summary, views = build_report(s, since, until)
    if a.json:
        doc = asdict(summary)
        doc.pop("lines_detail", None)
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render_summary(summary))
    for path in write_report_files(s, summary, views, a.html, a.csv):
        _err(f"wrote {path}")
    return 0


def cmd_flower(a: argparse.Namespace) -> int:
    from tasks.flower import run

    s = _settings()
    return run(s, port=a.port, address=a.address, extra=a.flower_args)


def cmd_metrics(a: argparse.Namespace) -> int:
    from integration import metrics
    from integration.state import StateStore

    s = _settings()
    _configure_logs(s)
    port = a.port if a.port is not None else s.metrics_port
    host = a.host or s.metrics_host
    st = StateStore.from_url(s.redis_url, s.server_key, s.dead_letter_days * 86400)
    st.r.ping()  # Redis first: one clear line when it is down
    server = metrics.serve(st, port, host)
    _err(f"ptbill metrics on http://{host}:{server.server_address[1]}/metrics")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    _demo_tools("demo")
    import importlib.util

    from ptbill_demo.embedded import sekmet_executable

    if sekmet_executable() is None or importlib.util.find_spec("fakeredis") is None:
        raise InputError(
            "ptbill demo needs the [demo] extra (sekmet-fhir, fakeredis): pip install 'ptbill[demo]'"
        )
    from ptbill_demo.demo import run_demo

    return run_demo(
        patients=a.patients,
        seed=a.seed,
        workers=a.workers,
        keep=a.keep,
        as_json=a.json,
        report_path=a.report,
    )


# --- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptbill",
        description="PT billing suggestions from FHIR R4 documentation, written back for a person to review",
    )
    p.add_argument("--version", action="version", version=f"ptbill {__version__}")
    p.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error instead of one line"
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run the embedded demo (no Redis or FHIR server needed)")
    d.add_argument("--patients", type=int, default=50, help="patients in the synthetic clinic (default 50)")
    d.add_argument("--seed", type=int, default=0, help="random seed of the synthetic clinic (default 0)")
    d.add_argument("--workers", type=int, default=2, help="worker processes (concurrency, default 2)")
    d.add_argument("--keep", action="store_true", help="keep the embedded server running until Ctrl-C")
    d.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    d.add_argument(
        "--report",
        default=None,
        metavar="FILE",
        help="where to write the HTML report (default: the demo's tmp dir)",
    )
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("seed", help="load a synthetic PT clinic into the configured FHIR server")
    s.add_argument("--patients", type=int, default=20, help="patients to generate (default 20)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.set_defaults(fn=cmd_seed)

    for name, fn, help_ in (
        ("sync", cmd_sync, "one sync run now; exit 1 when it failed or dead-lettered encounters"),
        ("backfill", cmd_backfill, "re-process a window without moving the watermark"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--inline", action="store_true", help="process in this process instead of the workers"
        )
        sp.add_argument(
            "--timeout", type=float, default=3600.0, help="seconds to wait for the workers to finish (3600)"
        )
        sp.add_argument(
            "--start-timeout",
            type=float,
            default=60.0,
            help="seconds to wait for a worker to start the run before giving up (60)",
        )
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "backfill":
            sp.add_argument("--since", required=True, help="ISO instant, exclusive")
            sp.add_argument("--until", required=True, help="ISO instant, inclusive")
        sp.set_defaults(fn=fn)

    st = sub.add_parser(
        "status",
        help="sync status; exits 1 when the last sync failed, dead letters exist, syncs are stale "
        "or a Subscription is not active",
    )
    st.add_argument("--json", action="store_true", help="print the report as JSON")
    st.set_defaults(fn=cmd_status)

    rf = sub.add_parser("retry-failed", help="re-drive dead-lettered encounters")
    rf.add_argument("--inline", action="store_true", help="re-process them in this process, not the workers")
    rf.set_defaults(fn=cmd_retry_failed)

    doc = sub.add_parser(
        "doctor", help="check settings, FHIR server, Redis, broker, workers and tables; exit 1 on any FAIL"
    )
    doc.add_argument("--json", action="store_true", help="print the checks as JSON")
    doc.add_argument("--no-workers", action="store_true", help="skip the worker check (no workers expected)")
    doc.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="repeat the checks until all pass or SECONDS have passed (a start-up wait, e.g. in compose)",
    )
    doc.set_defaults(fn=cmd_doctor)

    sh = sub.add_parser(
        "show", help="one encounter as ptbill left it: lines, evidence, findings, open tasks, amounts"
    )
    sh.add_argument("encounter", metavar="ENCOUNTER", help="the Encounter id (or Encounter/id)")
    sh.add_argument("--json", action="store_true", help="print the encounter view as JSON")
    sh.set_defaults(fn=cmd_show)

    rp = sub.add_parser(
        "report", help="a period per code, therapist and payer, findings, open attestations, amounts"
    )
    rp.add_argument("--since", type=_day, default=None, help="first date of service (default: 30 days ago)")
    rp.add_argument("--until", type=_day, default=None, help="last date of service (default: today)")
    rp.add_argument("--html", default=None, metavar="FILE", help="also write a self-contained HTML report")
    rp.add_argument("--csv", default=None, metavar="FILE", help="also write the billing lines as CSV")
    rp.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    rp.set_defaults(fn=cmd_report)

    fl = sub.add_parser(
        "flower", help="Celery Flower with ptbill's settings (needs PTBILL_FLOWER_BASIC_AUTH)"
    )
    fl.add_argument("--port", type=int, default=5555, help="port to listen on (default 5555)")
    fl.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this host only)"
    )
    fl.add_argument(
        "flower_args",
        nargs=argparse.REMAINDER,
        help="further Flower options, after -- (e.g. -- --url_prefix=x)",
    )
    fl.set_defaults(fn=cmd_flower)

    me = sub.add_parser(
        "metrics", help="serve ptbill's Prometheus metrics (read from Redis; every worker serves them too)"
    )
    me.add_argument("--port", type=int, default=None, help="port (default PTBILL_METRICS_PORT, 9465)")
    me.add_argument("--host", default=None, help="address (default PTBILL_METRICS_HOST, 127.0.0.1)")
    me.set_defaults(fn=cmd_metrics)

    c = sub.add_parser("classify", help="classify JSONL interventions")
    c.add_argument(
        "file", help="JSONL file of {id, text, body_site, minutes, codings?} lines, or - for stdin"
    )
    c.set_defaults(fn=cmd_classify)
    e = sub.add_parser("eval", help="evaluate on labelled JSONL")
    e.add_argument("file", help="labelled JSONL file")
    e.set_defaults(fn=cmd_eval)

    pr = sub.add_parser(
        "process", help="dry run on a FHIR Bundle: print the transaction that would be written"
    )
    pr.add_argument("--bundle", required=True, help="a FHIR Bundle (JSON) with Encounters and Procedures")
    pr.add_argument("--mappings", default=None, help="mapping tables folder (default: shipped tables)")
    pr.set_defaults(fn=cmd_process)

    sv = sub.add_parser("serve", help="real-time feedback service: CDS Hooks, Subscription notifications")
    sv.add_argument(
        "--host", default=None, help="address to listen on (default PTBILL_SERVE_HOST, else 127.0.0.1)"
    )
    sv.add_argument(
        "--port", type=int, default=None, help="port to listen on (default PTBILL_SERVE_PORT, else 8095)"
    )
    sv.set_defaults(fn=cmd_serve)

    sb = sub.add_parser("subscribe", help="create/update ptbill's Subscriptions on the EMR (idempotent)")
    sb.add_argument("--delete", action="store_true", help="delete ptbill's Subscriptions instead")
    sb.set_defaults(fn=cmd_subscribe)

    m = sub.add_parser("mappings", help="mapping tables")
    msub = m.add_subparsers(dest="mcmd", required=True, metavar="ACTION")
    mc = msub.add_parser("check", help="validate every table strictly")
    mc.add_argument(
        "--dir", default=None, help="tables folder (default: PTBILL_MAPPINGS_DIR, else the shipped tables)"
    )
    mc.set_defaults(fn=cmd_mappings_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from integration.settings import unknown_variable_lines
    from tasks.explain import EXIT_FAILED, explain

    args = build_parser().parse_args(argv)
    if args.cmd != "doctor":  # doctor reports them as FAILs
        for line in unknown_variable_lines():
            _err(f"warning: {line}")
    if args.cmd == "flower" and args.flower_args[:1] == ["--"]:
        args.flower_args = args.flower_args[1:]
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if args.traceback:
            raise
        ex = explain(e, _current.get("settings"))
        if ex is None:
            _err(
                f"unexpected error {type(e).__name__}; "
                f"rerun with ptbill --traceback {args.cmd} ... for details"
            )
            return EXIT_FAILED
        _err(ex.line())
        return ex.code


if __name__ == "__main__":
    raise SystemExit(main())
