"""How ptbill writes to one FHIR server, chosen from what the server declares, and how a plan is cut into
the Bundles that server accepts.

Pure. ``choose_strategy`` reads :class:`ServerCapabilities` (``integration.fhir.capabilities``) and the
``PTBILL_WRITE_MODE`` setting:

* ``id``: creates are ``PUT Type/ptb-<hash>`` (client-assigned ids; needs ``updateCreate``);
* ``conditional``: creates are ``POST Type`` with ``If-None-Exist: identifier=...`` (server-assigned ids;
  needs conditional create and the ``identifier`` search);
* ``auto`` (default): ``id`` where the server allows create-by-PUT, else ``conditional``.

In both modes updates and retirements go to the resource's real id with ``If-Match`` when the server
supports versioned updates; a server that does not is still written to, but only right after reading the
resource back (the pipeline then never skips the read). Bundles are ``transaction`` where the server offers
atomic transactions, else ``batch`` (each entry succeeds or fails on its own and is reconciled); they are
cut to the server's limits (``PTBILL_TRANSACTION_MAX_ENTRIES`` or what its CapabilityStatement documents).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from integration.errors import ConfigError
from integration.fhir.capabilities import ServerCapabilities
from integration.fhir.writeback import Write, WriteMode

WRITTEN_TYPES = ("ChargeItem", "DetectedIssue", "Task", "Flag", "Provenance")
RequestedMode = Literal["auto", "id", "conditional"]


@dataclass(frozen=True)
class WriteStrategy:
    mode: WriteMode = "id"
    versioned: bool = True  # If-Match on updates and retirements
    atomic: bool = True  # transaction Bundles (else batch Bundles)
    conditional_create: bool = True  # If-None-Exist on POST creates and on the Provenance
    max_entries: int = 0  # per Bundle; 0 = no limit
    max_conditional_entries: int = 0  # per Bundle holding an If-None-Exist entry; 0 = no limit
    max_updates: int = 0  # PUT entries per Bundle; 0 = no limit
    reason: str = ""

    def describe(self) -> str:
        """One line for the run record and ``ptbill status``."""
        limits = [
            f"{n} {what}"
            for n, what in (
                (self.max_entries, "entries"),
                (self.max_conditional_entries, "entries with a conditional"),
                (self.max_updates, "updates"),
            )
            if n
        ]
        parts = [
            f"mode={self.mode}",
            "if-match" if self.versioned else "read-back before every write (no versioned update)",
            "transaction" if self.atomic else "batch (no atomic transaction)",
        ]
        if limits:
            parts.append("bundles of at most " + ", ".join(limits))
        return "; ".join(parts) + (f" ({self.reason})" if self.reason else "")


def _listed(caps: ServerCapabilities) -> list[str]:
    return [t for t in WRITTEN_TYPES if caps.resource(t) is not None]


def choose_strategy(
    caps: ServerCapabilities,
    requested: str = "auto",
    *,
    max_entries: int = 0,
    documented: Mapping[str, int] | None = None,
) -> WriteStrategy:
    """The write strategy for this server; ConfigError naming what is missing when there is none.

    Resource types the statement leaves out are judged by the ones it lists (some servers omit types they
    serve); ``documented`` holds limits read from the statement's documentation (``documented_limits``)."""
    missing: list[str] = []
    listed = _listed(caps)
    if "ChargeItem" not in listed:
        missing.append("ChargeItem (not in the CapabilityStatement)")
    for t in listed:
        r = caps.resource(t)
        if r is None:
            continue
        need = {"read", "search-type", "create"} | ({"update"} if t != "Provenance" else set())
        lacking = sorted(need - r.interactions)
        if lacking:
            missing.append(f"{t} {'/'.join(lacking)}")
    if not caps.transaction and not caps.batch:
        missing.append("transaction or batch")
    res = [caps.resource(t) for t in listed if t != "Provenance"]
    update_create = bool(res) and all(r is not None and r.update_create for r in res)
    cond_create = bool(res) and all(r is not None and r.conditional_create for r in res)
    identifier_search = all(caps.searchable(t, "identifier") for t in listed if t != "Provenance")
    mode: WriteMode
    if requested == "id":
        if not update_create:
            missing.append("create by PUT with a client id (updateCreate), which PTBILL_WRITE_MODE=id needs")
        mode = "id"
    elif requested == "conditional" or not update_create:
        if not (cond_create and identifier_search):
            missing.append(
                "conditional create with the identifier search (or create by PUT): ptbill could not "
                "create without risking duplicates"
            )
        mode = "conditional"
    else:
        mode = "id"
    if missing:
        raise ConfigError(
            "the FHIR server cannot take ptbill's writes; missing: " + "; ".join(dict.fromkeys(missing))
        )
    versioned = bool(res) and all(r is not None and r.versioned_update for r in res)
    prov = caps.resource("Provenance")
    doc = dict(documented or {})
    return WriteStrategy(
        mode=mode,
        versioned=versioned,
        atomic=caps.transaction,
        conditional_create=cond_create and (prov is None or prov.conditional_create),
        max_entries=max_entries or doc.get("max_entries", 0),
        max_conditional_entries=0 if max_entries else doc.get("max_conditional_entries", 0),
        max_updates=doc.get("max_updates", 0),
        reason="chosen by PTBILL_WRITE_MODE" if requested in ("id", "conditional") else "auto",
    )


_LIMITS = (
    ("max_conditional_entries", re.compile(r"conditional[^.;]*?at most (\d+) entries", re.I)),
    ("max_updates", re.compile(r"at most (\d+) update", re.I)),
    ("max_entries", re.compile(r"at most (\d+) entries(?![^.;]*conditional)", re.I)),
)


def documented_limits(statement: Mapping[str, Any]) -> dict[str, int]:
    """Transaction limits a CapabilityStatement states in its documentation ("at most 8 entries", "at most
    50 update"); servers give them only as text, so this reads the phrasing and ignores anything else."""
    texts: list[str] = []
    for rest in statement.get("rest") or []:
        if not isinstance(rest, Mapping):
            continue
        texts += [str(rest.get("documentation") or "")]
        for it in rest.get("interaction") or []:
            if isinstance(it, Mapping) and it.get("code") == "transaction":
                texts.append(str(it.get("documentation") or ""))
    text = " ".join(texts)
    out: dict[str, int] = {}
    for name, rx in _LIMITS:
        m = rx.search(text)
        if m and name not in out:
            out[name] = int(m.group(1))
    if "max_entries" in out and out.get("max_conditional_entries") == out["max_entries"]:
        del out["max_entries"]
    return out


# --- cutting a plan into Bundles ------------------------------------------------------------------


def is_conditional(w: Write, strategy: WriteStrategy) -> bool:
    return w.kind == "create" and strategy.mode == "conditional" and strategy.conditional_create


def is_put(w: Write, strategy: WriteStrategy) -> bool:
    return w.kind != "create" or strategy.mode == "id"


def fits(writes: Sequence[Write], strategy: WriteStrategy, extra_conditional: int = 0) -> bool:
    """Whether these writes (plus ``extra_conditional`` conditional entries, e.g. a Provenance) fit one
    Bundle of this server."""
    n = len(writes) + extra_conditional
    if strategy.max_entries and n > strategy.max_entries:
        return False
    cond = extra_conditional or any(is_conditional(w, strategy) for w in writes)
    if strategy.max_conditional_entries and cond and n > strategy.max_conditional_entries:
        return False
    return not (strategy.max_updates and sum(is_put(w, strategy) for w in writes) > strategy.max_updates)


def steps(writes: Iterable[Write], strategy: WriteStrategy, known: Iterable[str]) -> list[list[Write]]:
    """Writes in Bundles, in order: a write that refers to a ChargeItem created in this plan waits for a
    later Bundle than that ChargeItem unless both are in one atomic transaction (``urn:uuid``). ``known``:
    ChargeItem identifiers that already have a real id."""
    pending = list(writes)
    have = set(known)
    out: list[list[Write]] = []
    while pending:
        step: list[Write] = []
        creating: set[str] = set()
        rest: list[Write] = []
        for w in pending:
            refs_ok = all(r in have or (strategy.atomic and r in creating) for r in w.refers_to)
            if refs_ok and fits([*step, w], strategy):
                step.append(w)
                if w.kind == "create" and w.resource_type == "ChargeItem":
                    creating.add(w.identifier)
            else:
                rest.append(w)
        if not step:  # refers to something never created here: write it with what is known (no cycle)
            step, rest = [rest[0]], rest[1:]
        out.append(step)
        have |= {w.identifier for w in step if w.resource_type == "ChargeItem"}
        pending = rest
    return out
