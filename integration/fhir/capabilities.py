"""What a FHIR server says it can do (``GET [base]/metadata``), read into one frozen value.

Pure: a CapabilityStatement (plain JSON) in, :class:`ServerCapabilities` out. The write strategy, the
reads and ``ptbill doctor`` decide from this value, never from the server's name. A server that omits an
optional element is read conservatively (R4 CapabilityStatement: ``versioning`` defaults to "no-version",
``updateCreate``, ``conditionalCreate`` and ``conditionalUpdate`` to false).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# R4 §3.1.0.5.1: a server that supports versioned updates ("versioned-update") honours If-Match.
VERSIONED_UPDATE = "versioned-update"


@dataclass(frozen=True)
class ResourceCapabilities:
    """One ``rest.resource`` entry: interactions and the behaviours ptbill relies on."""

    type: str
    interactions: frozenset[str] = frozenset()  # read, vread, update, create, search-type, ...
    versioning: str = "no-version"  # no-version | versioned | versioned-update
    update_create: bool = False  # create by PUT with a client-assigned id
    conditional_create: bool = False
    conditional_update: bool = False
    conditional_delete: str = "not-supported"
    search_params: frozenset[str] = frozenset()
    search_includes: frozenset[str] = frozenset()
    search_rev_includes: frozenset[str] = frozenset()

    @property
    def versioned_update(self) -> bool:
        return self.versioning == VERSIONED_UPDATE


@dataclass(frozen=True)
class ServerCapabilities:
    """The server's declared capabilities; ``resources`` keyed by resource type."""

    fhir_version: str | None
    software: str | None
    system_interactions: frozenset[str] = frozenset()  # transaction, batch, search-system, history-system
    resources: Mapping[str, ResourceCapabilities] = field(default_factory=dict)

    @property
    def transaction(self) -> bool:
        return "transaction" in self.system_interactions

    @property
    def batch(self) -> bool:
        return "batch" in self.system_interactions

    def resource(self, resource_type: str) -> ResourceCapabilities | None:
        return self.resources.get(resource_type)

    def supports(self, resource_type: str, interaction: str) -> bool:
        r = self.resources.get(resource_type)
        return r is not None and interaction in r.interactions

    def searchable(self, resource_type: str, param: str) -> bool:
        """True when the server lists the search parameter (``_id`` and ``_lastUpdated`` always count)."""
        r = self.resources.get(resource_type)
        if r is None:
            return False
        return param in r.search_params or param in ("_id", "_lastUpdated")

    @property
    def r4(self) -> bool:
        return (self.fhir_version or "").startswith("4.0")


def _codes(items: Any) -> frozenset[str]:
    out: set[str] = set()
    if isinstance(items, list):
        for it in items:
            if isinstance(it, Mapping) and isinstance(it.get("code"), str):
                out.add(it["code"])
    return frozenset(out)


def _names(items: Any) -> frozenset[str]:
    out: set[str] = set()
    if isinstance(items, list):
        for it in items:
            if isinstance(it, Mapping) and isinstance(it.get("name"), str):
                out.add(it["name"])
    return frozenset(out)


def _strings(items: Any) -> frozenset[str]:
    return frozenset(s for s in items if isinstance(s, str)) if isinstance(items, list) else frozenset()


def _resource(raw: Mapping[str, Any]) -> ResourceCapabilities | None:
    rtype = raw.get("type")
    if not isinstance(rtype, str) or not rtype:
        return None
    cond_create = raw.get("conditionalCreate") is True
    cond_update = raw.get("conditionalUpdate") is True
    versioning = raw.get("versioning")
    return ResourceCapabilities(
        type=rtype,
        interactions=_codes(raw.get("interaction")),
        versioning=versioning if isinstance(versioning, str) else "no-version",
        update_create=raw.get("updateCreate") is True,
        conditional_create=cond_create,
        conditional_update=cond_update,
        conditional_delete=str(raw.get("conditionalDelete") or "not-supported"),
        search_params=_names(raw.get("searchParam")),
        search_includes=_strings(raw.get("searchInclude")),
        search_rev_includes=_strings(raw.get("searchRevInclude")),
    )


def read_capabilities(statement: Mapping[str, Any]) -> ServerCapabilities:
    """Read a CapabilityStatement; server-mode ``rest`` entries only, the first one wins per resource type."""
    software = statement.get("software")
    name = software.get("name") if isinstance(software, Mapping) else None
    version = software.get("version") if isinstance(software, Mapping) else None
    label = " ".join(str(x) for x in (name, version) if x) or None
    system: set[str] = set()
    resources: dict[str, ResourceCapabilities] = {}
    rests = statement.get("rest")
    for rest in rests if isinstance(rests, list) else []:
        if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
            continue
        system |= _codes(rest.get("interaction"))
        for raw in rest.get("resource") or []:
            if isinstance(raw, Mapping):
                r = _resource(raw)
                if r is not None and r.type not in resources:
                    resources[r.type] = r
    fhir_version = statement.get("fhirVersion")
    return ServerCapabilities(
        fhir_version=fhir_version if isinstance(fhir_version, str) else None,
        software=label,
        system_interactions=frozenset(system),
        resources=resources,
    )


# --- what ptbill needs, and the write strategy -------------------------------------------------------

# Parameters every resource has (R4 §3.1.1.5.1, "Parameters for all resources"): servers often leave
# them out of searchParam, so their absence there is no evidence they are not supported.
COMMON_PARAMS = frozenset({"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"})

# (resource type, interactions, search parameters, _include / _revinclude) the sync reads with
# (integration/fhir/queries.py): the window, context batch, performers, ptbill's own resources.
READS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "Encounter",
        ("search-type",),
        ("status", "_lastUpdated", "_id"),
        ("Encounter:patient", "Encounter:episode-of-care"),
        (),
    ),
    ("Procedure", ("search-type",), ("encounter", "_lastUpdated"), (), ()),
    ("Coverage", ("search-type",), ("beneficiary",), (), ()),
    ("ChargeItem", ("search-type",), ("subject",), (), ()),
    ("Practitioner", ("read",), (), (), ()),
    ("PractitionerRole", ("search-type",), ("practitioner", "_id"), ("PractitionerRole:practitioner",), ()),
)
OUTPUT_TYPES = ("ChargeItem", "DetectedIssue", "Task", "Flag")
WRITE_STRATEGIES = ("id", "conditional")


def _declared(listed: frozenset[str], wanted: str) -> bool:
    """Listed, or the server lists nothing of the kind (it does not declare them, so no evidence)."""
    return not listed or wanted in listed


def read_problems(caps: ServerCapabilities, procedure_fetch: str = "by-encounter") -> list[str]:
    """What the sync's reads need and the server does not declare (empty: all there)."""
    problems: list[str] = []
    if not caps.r4:
        problems.append(f"FHIR version {caps.fhir_version or 'not stated'} (ptbill needs R4, 4.0.x)")
    if not caps.batch:
        problems.append("batch (context reads are one batch per page)")
    for rtype, interactions, params, includes, revincludes in READS:
        r = caps.resource(rtype)
        if r is None:
            problems.append(f"{rtype} (not in the CapabilityStatement)")
            continue
        for i in interactions:
            if i not in r.interactions:
                problems.append(f"{rtype} {i}")
        for p in params:
            if p not in COMMON_PARAMS and not _declared(r.search_params, p):
                problems.append(f"{rtype} search parameter {p}")
        for inc in includes:
            if not _declared(r.search_includes, inc):
                problems.append(f"{rtype} _include={inc}")
        for rev in revincludes:
            if not _declared(r.search_rev_includes, rev):
                problems.append(f"{rtype} _revinclude={rev}")
    enc = caps.resource("Encounter")
    if enc is not None and not _declared(enc.search_rev_includes, "Procedure:encounter"):
        # one encounter is re-read with its Procedures (claim check expired, withdrawn, EMR changes)
        problems.append("Encounter _revinclude=Procedure:encounter")
    return problems


def strategy_problems(caps: ServerCapabilities, strategy: str) -> list[str]:
    """What writing with ``strategy`` needs and the server does not declare. An output type the statement
    leaves out entirely is no evidence either way (sekmet-fhir stores DetectedIssues it does not list):
    :func:`warnings` names it instead."""
    problems: list[str] = []
    if not (caps.transaction or caps.batch):
        problems.append("transaction or batch (writes)")
    for rtype in (*OUTPUT_TYPES, "Provenance"):
        r = caps.resource(rtype)
        if r is None:
            continue
        if "search-type" not in r.interactions:
            problems.append(f"{rtype} search-type")
        if rtype == "Provenance":
            if "create" not in r.interactions:
                problems.append("Provenance create")
            continue
        if "update" not in r.interactions:
            problems.append(f"{rtype} update")
        if strategy == "id" and not r.update_create:
            problems.append(f"{rtype} updateCreate (create by PUT with ptbill's ids)")
        if strategy == "conditional" and not r.conditional_update:
            problems.append(f"{rtype} conditionalUpdate")
    return problems


def check_server(caps: ServerCapabilities, settings: Any) -> tuple[str, list[str]]:
    """``(write strategy, problems)`` for this server and these settings; problems empty when ptbill can
    run. Pure: ``settings`` needs ``write_mode``, ``procedure_fetch`` and ``sources()``.

    The strategy is ``PTBILL_WRITE_MODE`` when it is set explicitly; with the default, "id" where every
    output type can be created by PUT (``updateCreate``), else "conditional" where conditional update is
    declared; else the problems of "id". Problems are short phrases naming what is missing
    (:func:`refusal` joins them into the one message ptbill refuses with).
    """
    reads = read_problems(caps, getattr(settings, "procedure_fetch", "by-encounter"))
    explicit = str(settings.sources().get("write_mode", "default")) != "default"
    if explicit:
        strategy = str(settings.write_mode)
        return strategy, reads + strategy_problems(caps, strategy)
    for strategy in WRITE_STRATEGIES:
        problems = strategy_problems(caps, strategy)
        if not problems:
            return strategy, reads
    return "id", reads + strategy_problems(caps, "id")


def refusal(base_url: str, strategy: str, problems: list[str]) -> str:
    """The one message ptbill refuses a server with."""
    return (
        f"the FHIR server at {base_url} does not declare what ptbill needs ({strategy!r} writes): "
        + "; ".join(problems)
        + " (from its /metadata CapabilityStatement; PTBILL_WRITE_MODE chooses the write strategy)"
    )


def warnings(caps: ServerCapabilities) -> list[str]:
    """What the server leaves undeclared that ptbill uses anyway, or does without (never a refusal)."""
    out = [
        f"{rtype} is not in the CapabilityStatement (ptbill writes it anyway)"
        for rtype in (*OUTPUT_TYPES, "Provenance")
        if caps.resource(rtype) is None
    ]
    found = change_detection(caps)
    if not found["deletions"]:
        out.append("no Procedure history-type: deleted Procedures are not detected (a backfill re-decides)")
    if not found["moves"]:
        out.append(
            "no Procedure history-instance: a Procedure moved to another Encounter re-runs only the new one"
        )
    versioned = [r for r in OUTPUT_TYPES if (x := caps.resource(r)) is not None and not x.versioned_update]
    if versioned:
        out.append("no versioned update (If-Match) on " + ", ".join(versioned))
    return out


def change_detection(caps: ServerCapabilities) -> dict[str, bool]:
    """Which EMR changes the sync can find from this server: deleted Procedures need the type's history
    (``history-type`` on Procedure), moved ones each Procedure's own history."""
    proc = caps.resource("Procedure")
    interactions = proc.interactions if proc is not None else frozenset()
    return {
        "deletions": "history-type" in interactions,
        "moves": "history-instance" in interactions,
    }
