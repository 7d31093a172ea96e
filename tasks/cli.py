"""The ``ptbill`` command (an edge module: it may reach Celery; the integration library never does).

  ptbill demo [--patients N]          embedded FHIR server + embedded broker + real Celery worker
  ptbill seed --patients N            load a synthetic PT clinic into PTBILL_FHIR_BASE_URL
  ptbill sync [--inline]              one sync run now (through the workers, or in this process)
  ptbill backfill --since --until     re-process a window without moving the watermark
  ptbill status [--json]              last sync, watermark, dead letters, Subscriptions; 1 if failing
  ptbill retry-failed                 re-drive dead-lettered encounters
  ptbill classify FILE|-              classify JSONL interventions (stable contract)
  ptbill eval FILE                    accuracy report on labelled JSONL
  ptbill process --bundle FILE        dry run: print the transaction Bundle that would be written
  ptbill mappings check [--dir D]     validate the rule tables strictly
  ptbill serve [--host H] [--port P]  the real-time feedback service: CDS Hooks + Subscription notifications
  ptbill subscribe [--delete]         create/update ptbill's Subscriptions on the EMR (idempotent)

stdout carries only the command's result; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from integration.errors import ConfigError, InputError, MappingTableError, PtbillError


def _settings() -> Any:
    from integration.settings import Settings

    return Settings.from_env()


def _configure_logs(s: Any) -> None:
    from integration import logs

    logs.configure(s.log_level, s.log_format)


def cmd_classify(a: argparse.Namespace) -> int:
    from integration.classify.cli import classify_main

    return classify_main(a.file, sys.stdout)


def cmd_eval(a: argparse.Namespace) -> int:
    from integration.classify.cli import eval_main

    return eval_main(a.file, sys.stdout)


def cmd_mappings_check(a: argparse.Namespace) -> int:
    from mappings.loader import load_tables

    try:
        tables = load_tables(a.dir)
    except MappingTableError as e:
        for f, row, msg in e.problems:
            print(f"{f}: {row}: {msg}")
        print(f"FAILED: {len(e.problems)} problem(s)")
        return 1
    for t in tables:
        print(f"{t.file}: {t.name} {t.version} ({len(t.rows)} rows, sha {t.digest})")
    print(f"OK: {len(tables.tables)} tables")
    return 0


def cmd_process(a: argparse.Namespace) -> int:
    from integration.fhir.extract import group_bundle
    from integration.sync import Group, dry_run_bundle
    from mappings.loader import default_tables, load_tables

    try:
        with open(a.bundle, encoding="utf-8", errors="replace") as fh:
            bundle = json.load(fh)
        groups, problems = group_bundle(bundle)
    except (OSError, ValueError, InputError) as e:
        sys.stderr.write(f"ptbill process: cannot read {a.bundle}: {type(e).__name__}: {e}\n")
        return 2
    for p in problems:
        sys.stderr.write(f"ptbill process: skipped bundle entry: {p}\n")
    tables = load_tables(a.mappings) if a.mappings else default_tables()
    out = dry_run_bundle([Group(e, dict(r)) for e, r in groups], tables)
    sys.stderr.write(
        f"ptbill process: {len(groups)} encounter(s), {len(out['entry'])} entries, "
        f"{len(problems)} problem(s)\n"
    )
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def cmd_seed(a: argparse.Namespace) -> int:
    from integration.runner import make_client
    from integration.synth import clinic_summary, generate_clinic

    s = _settings()
    _configure_logs(s)
    bundles = generate_clinic(patients=a.patients, seed=a.seed)
    with make_client(s) as client:
        for b in bundles:
            client.transaction(b, idempotent=True)
    print(json.dumps(clinic_summary(bundles)))
    return 0


def _wait_run(state: Any, run_id: str, timeout: float, progress: bool) -> dict[str, str]:
    """Wait for a run to finish, showing a progress bar on stderr. Polls the run record in Redis."""
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    bar = None
    last_done = 0
    while time.monotonic() < deadline:
        info = state.run(run_id)
        if state.r.exists(f"{state.p}:run:{run_id}:final"):
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
        from integration.runner import failure_reason, finish_failed, finish_ok, process_one

        def dispatch(enc: str, run_id: str) -> None:
            try:
                finish_ok(rt, run_id, enc, process_one(rt, enc, run_id))
            except Exception as e:  # like the worker: dead-letter this encounter, never stop the batch
                finish_failed(rt, run_id, enc, failure_reason(e), 1)

        run = None
        run_id = uuid.uuid4().hex[:16]  # named up front, so a failure can release the lock it took
        try:
            run = begin_run(rt, run_id, since, until, backfill)
            if run is None:
                print(json.dumps({"status": "skipped-locked"}))
                return 1
            page_run(rt, run, dispatch)
        except PtbillError as e:  # e.g. the FHIR server is down: record it so `ptbill status` shows it
            rt.state.record_failure(failure_reason(e), run_id)
            rt.state.release_sync_lock(run_id)
            print(json.dumps({"status": "failed", "run_id": run_id, "reason": failure_reason(e)}))
            return 1
        info = rt.state.run(run_id)
    else:
        from tasks.app import app
        from tasks.config import QUEUE_READ, TASK_SYNC

        if not app.control.ping(timeout=2.0):
            sys.stderr.write(
                "ptbill: no Celery worker answered; start one "
                "(celery -A tasks.app worker -E -Q fhir_read,process,maintenance) or use --inline\n"
            )
            return 2
        run_id = uuid.uuid4().hex[:16]
        app.send_task(
            TASK_SYNC,
            kwargs={"run_id": run_id, "since": since, "until": until, "backfill": backfill},
            queue=QUEUE_READ,
        )
        info = _wait_run(rt.state, run_id, a.timeout, not a.quiet)
    info = {**info, "run_id": run_id}
    print(json.dumps(info, sort_keys=True))
    return 0 if info.get("status") not in ("failed", "timeout", "skipped-locked") else 1


def cmd_sync(a: argparse.Namespace) -> int:
    return _run(a, None, None, False)


def cmd_backfill(a: argparse.Namespace) -> int:
    return _run(a, a.since, a.until, True)


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


def status_report(s: Any, st: Any) -> dict[str, Any]:
    """Everything ``ptbill status`` shows, as plain data (``--json`` prints it as is)."""
    last = st.last()
    ok = st.last_ok()
    dead = st.dead_letters()
    failed = last.get("status") == "failed"
    report: dict[str, Any] = {
        "server": s.redacted()["fhir_base_url"],
        "server_key": s.server_key,
        "watermark": st.watermark(),
        "ledger_complete": st.has_epoch(),
        "sync_running": st.sync_lock_holder() is not None,
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
    }
    problems = []
    if failed:
        problems.append("last sync failed")
    if dead:
        problems.append(f"{len(dead)} dead-lettered encounter(s)")
    if not last:
        problems.append("never synced")
    # real-time feedback: the Subscriptions `ptbill subscribe` made, with their state on the EMR
    push = _push_status(s, st)
    report["push"] = push
    for sub in push["subscriptions"]:
        if sub.get("status") != "active":
            problems.append(f"subscription {sub['sid']} is {sub.get('status')}")
    subs_ok = all(p.get("status") == "active" for p in push["subscriptions"])
    report["healthy"] = not (failed or dead) and subs_ok
    report["problems"] = problems
    return report


def _push_status(s: Any, st: Any) -> dict[str, Any]:
    from dataclasses import replace

    from integration.push import PushState, subscription_report
    from integration.runner import make_client

    push = PushState(st)
    if not push.subscriptions():
        return {"subscriptions": [], "counters": push.stats()}
    client = make_client(replace(s, http_timeout=min(s.http_timeout, 5.0)))
    client.retries = 0  # status answers fast, also when the EMR does not
    with client:
        return subscription_report(client, push)


def _print_status(report: dict[str, Any]) -> None:
    w = sys.stdout.write
    w(f"server:           {report['server']} (key {report['server_key']})\n")
    w(f"health:           {'OK' if report['healthy'] else 'ATTENTION: ' + '; '.join(report['problems'])}\n")
    w(f"watermark:        {report['watermark'] or '(never synced)'}\n")
    w(f"sync running:     {'yes' if report['sync_running'] else 'no'}\n")
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
        w(f"last successful:  {ok['finished']} (run {ok['run_id']}, up to {ok['until']})\n")
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


def cmd_status(a: argparse.Namespace) -> int:
    """Exit 0 when healthy; 1 when the last sync failed or encounters are dead-lettered."""
    from integration.state import StateStore

    s = _settings()
    st = StateStore.from_url(s.redis_url, s.server_key)
    report = status_report(s, st)
    if a.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_status(report)
    return 0 if report["healthy"] else 1


def cmd_retry_failed(a: argparse.Namespace) -> int:
    s = _settings()
    _configure_logs(s)
    from integration.runner import Runtime, failure_reason, finish_failed, finish_ok, process_one

    rt = Runtime(s)
    dead = rt.state.dead_letters()
    if a.inline:
        ok = 0
        for enc in dead:
            try:
                finish_ok(rt, None, enc, process_one(rt, enc, None))
                ok += 1
            except Exception as e:
                finish_failed(rt, None, enc, failure_reason(e), int(dead[enc].get("attempts", 0)) + 1)
        print(json.dumps({"retried": len(dead), "succeeded": ok}))
        return 0 if ok == len(dead) else 1
    from tasks.app import app
    from tasks.config import QUEUE_MAINT, TASK_RETRY_FAILED

    app.send_task(TASK_RETRY_FAILED, queue=QUEUE_MAINT)
    print(json.dumps({"requeued": len(dead)}))
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from tasks.web import serve

    return serve(a.host, a.port)


def cmd_subscribe(a: argparse.Namespace) -> int:
    """Create or update ptbill's Subscriptions on the EMR; prints what it did, exits 1 on any error."""
    from integration.cds.subscriptions import build_specs
    from integration.errors import FhirError
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
    try:
        with make_client(s) as client:
            report = ensure_subscriptions(client, specs, push, delete=a.delete)
    except FhirError as e:
        from integration.runner import failure_reason

        print(json.dumps({"status": "failed", "reason": failure_reason(e)}))
        return 1
    print(json.dumps({"service": base, "subscriptions": report}, indent=2, sort_keys=True))
    return 0 if all(r.get("status") != "error" for r in report) else 1


def cmd_demo(a: argparse.Namespace) -> int:
    from tasks.demo import run_demo

    return run_demo(patients=a.patients, seed=a.seed, workers=a.workers, keep=a.keep)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptbill", description="PT billing suggestions from FHIR R4 documentation"
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="run the embedded demo (no Redis or FHIR server needed)")
    d.add_argument("--patients", type=int, default=50)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=2, help="worker processes (concurrency)")
    d.add_argument("--keep", action="store_true", help="keep the embedded server running until Ctrl-C")
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("seed", help="load a synthetic PT clinic into the configured FHIR server")
    s.add_argument("--patients", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_seed)

    for name, fn, help_ in (
        ("sync", cmd_sync, "one sync run now"),
        ("backfill", cmd_backfill, "re-process a window"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument(
            "--inline", action="store_true", help="process in this process instead of the workers"
        )
        sp.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the workers")
        sp.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "backfill":
            sp.add_argument("--since", required=True, help="ISO instant, exclusive")
            sp.add_argument("--until", required=True, help="ISO instant, inclusive")
        sp.set_defaults(fn=fn)

    st = sub.add_parser(
        "status",
        help="sync status; exits 1 when the last sync failed, encounters are dead-lettered "
        "or a Subscription is not active",
    )
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    rf = sub.add_parser("retry-failed", help="re-drive dead-lettered encounters")
    rf.add_argument("--inline", action="store_true")
    rf.set_defaults(fn=cmd_retry_failed)

    c = sub.add_parser("classify", help="classify JSONL interventions")
    c.add_argument("file")
    c.set_defaults(fn=cmd_classify)
    e = sub.add_parser("eval", help="evaluate on labelled JSONL")
    e.add_argument("file")
    e.set_defaults(fn=cmd_eval)

    pr = sub.add_parser(
        "process", help="dry run on a FHIR Bundle: print the transaction that would be written"
    )
    pr.add_argument("--bundle", required=True)
    pr.add_argument("--mappings", default=None, help="mapping tables folder (default: shipped tables)")
    pr.set_defaults(fn=cmd_process)

    sv = sub.add_parser("serve", help="real-time feedback service: CDS Hooks, Subscription notifications")
    sv.add_argument("--host", default=None, help="listen address (default PTBILL_SERVE_HOST, 127.0.0.1)")
    sv.add_argument("--port", type=int, default=None, help="port (default PTBILL_SERVE_PORT, 8095)")
    sv.set_defaults(fn=cmd_serve)

    sb = sub.add_parser("subscribe", help="create/update ptbill's Subscriptions on the EMR (idempotent)")
    sb.add_argument("--delete", action="store_true", help="delete ptbill's Subscriptions instead")
    sb.set_defaults(fn=cmd_subscribe)

    m = sub.add_parser("mappings", help="mapping tables")
    msub = m.add_subparsers(dest="mcmd", required=True)
    mc = msub.add_parser("check", help="validate every table strictly")
    mc.add_argument("--dir", default=None)
    mc.set_defaults(fn=cmd_mappings_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except ConfigError as e:
        sys.stderr.write(f"ptbill: configuration error: {e}\n")
        return 2
    except MappingTableError as e:
        sys.stderr.write(f"ptbill: {e}\n")
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
