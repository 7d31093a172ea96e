"""The second FHIR server of the test suite: Medplum's FHIR router and repository behind a small Node wrapper
(``tests/servers/medplum``, see its README.md), run as a real process over HTTP.

    with MedplumServer("rules") as srv:          # free port, Medplum's server rules
        requests.get(f"{srv.url}/metadata")

    with MedplumServer("rules-tx", tx_max_updates=20, total="always") as srv:   # any flag of the server
        ...

Profiles: ``lenient`` (client ids, create-by-PUT, atomic unbounded transactions), ``rules`` (UUID-only
ids, no create-by-PUT, transactions processed as batches) and ``rules-tx`` (rules, with atomic transactions
limited to 8 entries when one is conditional and 50 updates). Keyword options become the server's flags:
``tx_max_updates=20`` -> ``--tx-max-updates 20``, ``check_references=True`` -> ``--check-references``,
``update_create=False`` -> ``--no-update-create``, ``types=["Patient", "Encounter"]`` -> ``--types
Patient,Encounter``.

The server prints one ready line with its URL (it picks a free port itself, so there is no port race);
start-up then waits until ``/metadata`` answers, polling with a deadline. ``stop()`` ends the process group
(SIGTERM, then SIGKILL). The server's output goes to ``<log_dir>/medplum-<profile>.log``; its tail is printed
when start-up fails or the ``with`` block raises.

``seed_clinic`` loads a synthetic clinic (``ptbill_demo.synth``) the way an EMR holds it: server-assigned
ids, created by POST in batch Bundles whose entries refer to each other by ``urn:uuid`` and to earlier
bundles' resources by their real ids.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parents[2]
SERVER_DIR = ROOT / "tests" / "servers" / "medplum"
MAIN = SERVER_DIR / "src" / "main.mjs"
PROFILES = ("lenient", "rules", "rules-tx")
_READY = re.compile(r"ptbill-medplum-server ready url=(\S+) port=(\d+)")
_CONDITIONAL_REF = re.compile(r"^([A-Z][A-Za-z]+)\?identifier=([^|]*)\|(.+)$")


class MedplumStartError(RuntimeError):
    """The Medplum test server did not come up (the message holds the log tail)."""


def unavailable_reason() -> str | None:
    """Why the server cannot run here (no ``node``, no ``node_modules``), else None."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/test.sh needs Node 20+ for the Medplum test server)"
    if not (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        return f"{SERVER_DIR}/node_modules is missing: run scripts/test.sh (it runs npm ci there)"
    return None


def _flags(options: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            out.append(flag)
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, list | tuple | set | frozenset):
            out += [flag, ",".join(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


class MedplumServer:
    """The Medplum test server as a subprocess; a context manager (or ``start()`` / ``stop()``)."""

    def __init__(
        self,
        profile: str = "rules",
        *,
        log_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        **options: Any,
    ):
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {profile!r}")
        self.profile = profile
        self.options = dict(options)
        self.startup_timeout = startup_timeout
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="medplum-"))
        self.log_path = self.log_dir / f"medplum-{profile}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self._log_start = 0

    @property
    def base_url(self) -> str:
        """The FHIR base (same as ``url``)."""
        return self.url

    def command(self) -> list[str]:
        node = shutil.which("node") or "node"
        return [node, str(MAIN), "--profile", self.profile, "--port", "0", "--log", *_flags(self.options)]

    def start(self) -> MedplumServer:
        if self.process is not None:
            raise RuntimeError("already started")
        reason = unavailable_reason()
        if reason:
            raise MedplumStartError(reason)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.url, self.port = "", 0
        # the log is appended to: look for the ready line only in what this start writes
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=SERVER_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() ends node and anything it started
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            print(f"--- medplum log tail ({self.log_path}) ---\n{self.log_tail()}", file=sys.stderr)
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MedplumStartError(
                    f"the Medplum test server exited with code {self.process.returncode} during start-up:\n"
                    f"{self.log_tail()}"
                )
            if not self.url:
                m = _READY.search(self._log_text(self._log_start))
                if m:
                    self.url, self.port = m.group(1), int(m.group(2))
            if self.url and self._metadata_answers():
                return
            time.sleep(delay)  # polling a readiness condition, bounded by the deadline
            delay = min(delay * 1.5, 0.5)
        raise MedplumStartError(
            f"the Medplum test server did not answer /metadata within {self.startup_timeout:.0f} s:\n"
            f"{self.log_tail()}"
        )

    def _metadata_answers(self) -> bool:
        try:
            r = requests.get(f"{self.url}/metadata", timeout=5)
        except requests.RequestException:
            return False
        return r.status_code == 200

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _log_text(self, start: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self._log_text().splitlines()[-lines:]) or "(no log)"

    def __enter__(self) -> MedplumServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                print(f"--- medplum log tail ({self.log_path}) ---\n{self.log_tail()}", file=sys.stderr)
        finally:
            self.stop()
            if self._own_log_dir:
                shutil.rmtree(self.log_dir, ignore_errors=True)


# --- seeding a synthetic clinic ----------------------------------------------------------------


def escape_search_value(value: str) -> str:
    """FHIR R4 search escaping (§2.1.1.6) of one value: ``\\`` ``|`` ``,`` ``$``."""
    return re.sub(r"([\\|,$])", r"\\\1", value)


def identifier_condition(system: str, value: str) -> str:
    """``identifier=<system>|<value>`` for a search URL or If-None-Exist, escaped then percent-encoded."""
    return "identifier=" + quote(f"{escape_search_value(system)}|{escape_search_value(value)}", safe="")


@dataclass
class SeededClinic:
    """What ``seed_clinic`` created: server ids by (resource type, identifier value), in load order."""

    ids: dict[tuple[str, str], str] = field(default_factory=dict)

    def id_of(self, resource_type: str, identifier_value: str) -> str:
        return self.ids[(resource_type, identifier_value)]

    def ids_of(self, resource_type: str) -> list[str]:
        return [i for (t, _), i in self.ids.items() if t == resource_type]

    def count(self, resource_type: str) -> int:
        return len(self.ids_of(resource_type))


class SeedError(RuntimeError):
    """An entry of a seed batch failed (message: entry, status and the server's diagnostics)."""


def _first_identifier(resource: Mapping[str, Any]) -> tuple[str, str]:
    idents = resource.get("identifier") or []
    if not idents or not idents[0].get("system") or not idents[0].get("value"):
        raise SeedError(f"{resource.get('resourceType')} without a business identifier cannot be seeded")
    return str(idents[0]["system"]), str(idents[0]["value"])


def _resolve_conditional_refs(value: Any, known: Mapping[tuple[str, str, str], str]) -> Any:
    """Replace ``Type?identifier=sys|value`` references by ``Type/<id>`` of resources already seeded."""
    if isinstance(value, list):
        return [_resolve_conditional_refs(v, known) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                m = _CONDITIONAL_REF.match(v)
                if m:
                    key = (m.group(1), m.group(2), m.group(3))
                    if key not in known:
                        raise SeedError(f"conditional reference to a resource not seeded yet: {m.group(1)}")
                    v = f"{m.group(1)}/{known[key]}"
            out[k] = _resolve_conditional_refs(v, known)
        return out
    return value


def seed_clinic(
    base_url: str,
    bundles: Sequence[Mapping[str, Any]] | None = None,
    *,
    patients: int = 3,
    seed: int = 0,
    timeout: float = 120.0,
) -> SeededClinic:
    """Load a synthetic clinic into a Medplum test server (any profile) with server-assigned ids.

    ``bundles`` defaults to ``ptbill_demo.synth.generate_clinic(patients=..., seed=...)``. Each synth bundle
    (conditional PUTs) becomes one ``batch`` of ``POST`` entries with ``If-None-Exist: identifier=...`` (so
    seeding twice creates nothing new); entries keep their ``urn:uuid`` fullUrls, which the server resolves,
    and references to earlier bundles (``Type?identifier=...``) are rewritten to ``Type/<id>``. A batch is
    used rather than a transaction so that no transaction limit of the profile applies. Raises ``SeedError``
    on the first failed entry.
    """
    if bundles is None:
        from ptbill_demo.synth import generate_clinic

        bundles = generate_clinic(patients=patients, seed=seed)
    clinic = SeededClinic()
    known: dict[tuple[str, str, str], str] = {}
    with requests.Session() as http:
        for number, source in enumerate(bundles):
            entries: list[dict[str, Any]] = []
            keys: list[tuple[str, str, str]] = []
            for e in source.get("entry") or []:
                res = _resolve_conditional_refs(dict(e["resource"]), known)
                res.pop("id", None)
                rtype = str(res["resourceType"])
                system, value = _first_identifier(res)
                keys.append((rtype, system, value))
                request = {"method": "POST", "url": rtype, "ifNoneExist": identifier_condition(system, value)}
                entry: dict[str, Any] = {"resource": res, "request": request}
                if e.get("fullUrl"):
                    entry["fullUrl"] = e["fullUrl"]
                entries.append(entry)
            if not entries:
                continue
            r = http.post(
                base_url,
                json={"resourceType": "Bundle", "type": "batch", "entry": entries},
                headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
                timeout=timeout,
            )
            if r.status_code != 200:
                raise SeedError(f"seed bundle {number}: HTTP {r.status_code}: {r.text[:500]}")
            answers = r.json().get("entry") or []
            if len(answers) != len(entries):
                raise SeedError(f"seed bundle {number}: {len(answers)} answers for {len(entries)} entries")
            for i, (key, answer) in enumerate(zip(keys, answers, strict=True)):
                resp = answer.get("response") or {}
                status = str(resp.get("status", ""))
                if not status.startswith("2"):
                    raise SeedError(
                        f"seed bundle {number} entry {i} ({key[0]}): HTTP {status}: {resp.get('outcome')}"
                    )
                rid = (answer.get("resource") or {}).get("id") or str(resp.get("location", "")).split("/")[1]
                known[key] = rid
                clinic.ids[(key[0], key[2])] = rid
    return clinic
