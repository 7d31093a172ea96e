"""``ptbill doctor``: is this installation able to work? Each check is OK or FAIL with a one-line fix.

1. settings: every PTBILL_* value, where it came from (env, file, default), secrets redacted;
2. variables: PTBILL_* names ptbill does not read (typos), with the closest known name;
3. fhir: ``GET {base}/metadata`` with the configured auth (a FHIR R4 CapabilityStatement) and what ptbill
   needs of it (``capabilities``: the write strategy, or what is missing), and, when auth is configured,
   one authenticated search (credentials, SMART token);
4. redis: the state store answers PING;
5. broker: the Celery broker accepts a connection;
6. workers: a worker answers, with the same FHIR server, Redis and tables, on the queues a sync needs;
7. mappings: the tables actually in use (PTBILL_MAPPINGS_DIR or the shipped ones) pass the strict check;
8. subscriptions: the Subscriptions ``ptbill subscribe`` made are active on the EMR (when there are any;
   not part of the ``--wait`` start-up wait: push is optional and the periodic sync does not need it).

Exit status 1 when anything FAILs. Checks that need something that failed before are SKIPped.
``--wait SECONDS`` repeats the checks until all pass (a start-up wait for docker compose).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

from integration import __version__
from integration.errors import ConfigError, FhirError, MappingTableError
from integration.settings import Settings, redact_url, unknown_variables
from tasks.explain import explain, explain_fhir

Level = Literal["OK", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""


def _configuration(env: Mapping[str, str]) -> tuple[Settings | None, list[Check]]:
    try:
        s = Settings.from_env(env)
    except ConfigError as e:
        return None, [
            Check("settings", "FAIL", str(e), "correct that variable (or unset it for the default)")
        ]
    src = s.sources()
    n_env = sum(1 for v in src.values() if v.startswith("env"))
    n_file = sum(1 for v in src.values() if v.startswith("file"))
    return s, [
        Check(
            "settings",
            "OK",
            f"{len(src)} settings valid ({n_env} from the environment, {n_file} from files, "
            f"{len(src) - n_env - n_file} defaults)",
        )
    ]


def _variables(env: Mapping[str, str]) -> list[Check]:
    found = unknown_variables(env)
    if not found:
        return [Check("variables", "OK", "no unknown PTBILL_* variables")]
    return [
        Check(
            "variables",
            "FAIL",
            f"{name} is not a ptbill setting and is ignored",
            f"rename it to {hint}" if hint else "remove it (see the README's configuration table)",
        )
        for name, hint in found
    ]


def _fhir(s: Settings) -> list[Check]:
    from integration.runner import make_client, server_verdict

    out: list[Check] = []
    try:
        with make_client(s) as client:
            cap = client.capabilities()
            kind = cap.get("resourceType")
            version = str(cap.get("fhirVersion") or "?")
            soft = cap.get("software") if isinstance(cap.get("software"), dict) else {}
            who = " ".join(str(soft.get(k)) for k in ("name", "version") if soft and soft.get(k))
            if kind != "CapabilityStatement":
                out.append(
                    Check(
                        "fhir",
                        "FAIL",
                        f"{s.fhir_base_url}/metadata answers a {kind!r}, not a CapabilityStatement",
                        "PTBILL_FHIR_BASE_URL must be the server's FHIR base",
                    )
                )
                return out
            if not version.startswith("4.0"):
                out.append(
                    Check(
                        "fhir",
                        "FAIL",
                        f"{s.fhir_base_url} speaks FHIR {version}; ptbill needs R4 (4.0.x)",
                        "point PTBILL_FHIR_BASE_URL at the server's R4 endpoint",
                    )
                )
                return out
            out.append(
                Check(
                    "fhir",
                    "OK",
                    f"{s.fhir_base_url} answers /metadata: FHIR {version}" + (f" ({who})" if who else ""),
                )
            )
            ok, detail, fix = server_verdict(cap, s)  # what ptbill needs of it, and the write strategy
            out.append(Check("capabilities", "OK" if ok else "FAIL", detail, fix))
            if s.auth_type != "none":
                client.get("Encounter", [("_count", "1"), ("_summary", "count")])
                out.append(
                    Check("fhir-auth", "OK", f"{s.auth_type} credentials accepted (an Encounter search)")
                )
    except FhirError as e:
        ex = explain_fhir(e)
        out.append(Check("fhir-auth" if out else "fhir", "FAIL", ex.what, ex.fix))
    except ConfigError as e:  # e.g. an unreadable SMART key
        out.append(Check("fhir", "FAIL", str(e), "fix the PTBILL_FHIR_AUTH / PTBILL_SMART_* settings"))
    return out


def _redis(s: Settings) -> Check:
    import redis

    url = redact_url(s.redis_url)
    try:
        r = redis.Redis.from_url(s.redis_url, socket_timeout=3, socket_connect_timeout=3)
        r.ping()
        version = r.info("server").get("redis_version", "?")
    except redis.exceptions.RedisError as e:
        ex = explain(e, s)
        return Check("redis", "FAIL", ex.what if ex else f"{url}: {type(e).__name__}", ex.fix if ex else "")
    return Check("redis", "OK", f"{url} answers (Redis {version}; state key ptbill:{s.server_key}:*)")


def _broker(s: Settings) -> Check:
    from kombu import Connection

    url = redact_url(s.broker_url)
    try:
        with Connection(s.broker_url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as e:  # kombu raises OperationalError, some transports their own
        ex = explain(e, s)
        return Check(
            "broker",
            "FAIL",
            ex.what if ex else f"cannot connect to the broker at {url}: {type(e).__name__}",
            ex.fix if ex else "start it or fix PTBILL_BROKER_URL",
        )
    return Check("broker", "OK", f"{url} accepts connections")


def _workers(s: Settings, fingerprint: str | None) -> Check:
    from tasks.app import app
    from tasks.workers import check_workers

    app.conf.broker_url = s.broker_url
    try:
        result = check_workers(app, s, fingerprint, timeout=2.0)
    except Exception as e:  # reported, not raised: doctor must finish its list
        ex = explain(e, s)
        return Check("workers", "FAIL", ex.what if ex else type(e).__name__, ex.fix if ex else "")
    return Check("workers", "OK" if result.ok else "FAIL", result.line, result.fix)


def _subscriptions(s: Settings) -> Check | None:
    from integration.push import subscription_status
    from integration.state import StateStore

    try:
        rows = subscription_status(s, StateStore.from_url(s.redis_url, s.server_key))["subscriptions"]
    except Exception as e:  # reported, not raised: doctor must finish its list
        ex = explain(e, s)
        return Check("push", "FAIL", ex.what if ex else type(e).__name__, ex.fix if ex else "")
    if not rows:
        if not s.notify_secret:
            return None  # push not in use here
        return Check("push", "OK", "none made yet (ptbill subscribe creates them on the EMR)")
    bad = [r for r in rows if r.get("status") != "active"]
    if not bad:
        sids = ", ".join(r["sid"] for r in rows)
        return Check("push", "OK", f"{len(rows)} Subscription(s) active on the EMR ({sids})")
    return Check(
        "push",
        "FAIL",
        "; ".join(f"{r['sid']} is {r.get('status')}" for r in bad),
        "ptbill subscribe re-requests them; ptbill status shows the EMR's reason",
    )


def _mappings(s: Settings | None) -> tuple[Check, str | None]:
    from mappings.loader import MAPPINGS_DIR, load_tables

    where = Path(s.mappings_dir) if s and s.mappings_dir else MAPPINGS_DIR
    try:
        tables = load_tables(where)
    except MappingTableError as e:
        f, row, msg = e.problems[0]
        return (
            Check(
                "mappings",
                "FAIL",
                f"{len(e.problems)} problem(s) in {where}, first {f}: {row}: {msg}",
                "ptbill mappings check lists them all; the worker refuses to start on them",
            ),
            None,
        )
    fp = tables.fingerprint()
    return Check("mappings", "OK", f"{len(tables.tables)} tables valid in {where} (fingerprint {fp})"), fp


def run_checks(
    env: Mapping[str, str], *, workers: bool = True, subscriptions: bool = True
) -> tuple[Settings | None, list[Check]]:
    s, checks = _configuration(env)
    checks += _variables(env)
    mappings, fingerprint = _mappings(s)
    if s is None:
        skipped = ("fhir", "redis", "broker", "workers")
        checks += [Check(n, "SKIP", "needs valid settings") for n in skipped]
        return s, [*checks, mappings]
    fhir = _fhir(s)
    checks += fhir
    redis_check = _redis(s)
    checks.append(redis_check)
    broker = _broker(s)
    checks.append(broker)
    if not workers:
        pass
    elif broker.level == "OK":
        checks.append(_workers(s, fingerprint))
    else:
        checks.append(Check("workers", "SKIP", "needs the broker"))
    checks.append(mappings)
    if subscriptions and redis_check.level == "OK" and all(c.level == "OK" for c in fhir):
        sub = _subscriptions(s)
        if sub is not None:
            checks.append(sub)
    return s, checks


def _clip(v: object, width: int = 70) -> str:
    text = "-" if v is None else ",".join(v) if isinstance(v, tuple) else str(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def main(
    env: Mapping[str, str],
    *,
    as_json: bool,
    workers: bool,
    wait: float = 0.0,
    out: IO[str] = sys.stdout,
) -> int:
    """Run the checks once, or (``wait`` > 0) until nothing FAILs or ``wait`` seconds have passed: the
    start-up wait of compose's ``fhir-ready`` service (HAPI's image has no shell for a healthcheck)."""
    import logging
    import time

    logging.getLogger().setLevel(logging.ERROR)  # the checks report; retries and warnings are noise here
    deadline = time.monotonic() + wait
    while True:
        s, checks = run_checks(env, workers=workers, subscriptions=wait <= 0)
        failed = [c for c in checks if c.level == "FAIL"]
        if not failed or time.monotonic() >= deadline:
            break
        sys.stderr.write(
            f"doctor: {len(failed)} FAIL ({', '.join(c.name for c in failed)}); checking again\n"
        )
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    if as_json:
        report: dict[str, Any] = {
            "version": __version__,
            "ok": not failed,
            "settings": [
                {"variable": var, "value": value, "source": source} for var, value, source in s.describe()
            ]
            if s
            else None,
            "checks": [asdict(c) for c in checks],
        }
        out.write(json.dumps(report, indent=2, default=str) + "\n")
        return 1 if failed else 0
    w: Callable[[str], Any] = out.write
    w(f"ptbill doctor (ptbill {__version__})\n")
    if s is not None:
        w("configuration (secrets redacted):\n")
        for var, value, source in s.describe():
            w(f"  {var:<30} {_clip(value):<70}  {source}\n")
    for c in checks:
        w(f"{c.level:<5} {c.name:<10} {c.detail}\n")
        if c.fix and c.level == "FAIL":
            w(f"{'':<5} {'':<10} fix: {c.fix.replace(' (ptbill doctor)', '')}\n")
    w(f"doctor: {len(failed)} FAIL\n" if failed else "doctor: all OK\n")
    return 1 if failed else 0
