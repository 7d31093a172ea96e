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
