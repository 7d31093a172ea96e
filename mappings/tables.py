"""Loaded rule tables and typed, dated lookups on them (no YAML here: that is ``mappings.loader``).

The pieces every schema module and every consumer share, in one module that imports no schema, so
``mappings.schemas.*`` (which define row models) and ``mappings.loader`` (which reads files and checks
them against the schemas it is given) never import each other in a circle::

    mappings.tables  <-  mappings.schemas.*  <-  mappings.schemas (registry)  <-  mappings.loader

Lookups as of a date of service:

* ``tables.active(name, on)`` -- rows of one table in force on ``on`` (untyped; every row when ``on`` is
  None). Kept as is for the classification tables.
* ``tables.as_of(on)`` -- an :class:`AsOf` view with typed lookups: ``view.rows(PayerProfile)`` returns
  ``tuple[PayerProfile, ...]`` (mypy sees the fields; jump-to-definition reaches the schema),
  ``view.one(DocumentationRule, rule="poc_recert_interval_days")`` returns the one row or raises
  :class:`MissingRuleError` naming the table, the key and the date -- never a default value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from integration.errors import MappingTableError


class RowBase(BaseModel):
    """Fields every row of every table carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    effective: date
    expires: date | None = None
    note: str | None = None

    @field_validator("source")
    @classmethod
    def _source_not_blank(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("source must name where the rule comes from")
        return v

    @field_validator("effective", "expires", mode="before")
    @classmethod
    def _iso_date(cls, v: Any) -> Any:
        if v is None or isinstance(v, date):
            return v
        if not isinstance(v, str) or len(v) != 10 or v[4] != "-" or v[7] != "-":
            raise ValueError(f"dates must be written YYYY-MM-DD, got {v!r}")
        return v

    @model_validator(mode="after")
    def _period_ordered(self) -> RowBase:
        if self.expires is not None and self.expires < self.effective:
            raise ValueError(f"expires {self.expires} is before effective {self.effective}")
        return self

    def active_on(self, on: date) -> bool:
        return self.effective <= on and (self.expires is None or on <= self.expires)


R = TypeVar("R", bound=RowBase)


@dataclass(frozen=True)
class Schema(Generic[R]):
    """How one table is checked: its row model, its key and optional cross-table checks."""

    row_model: type[R]
    key: tuple[str, ...]
    # Called once all tables are loaded; returns (row label, message) pairs.
    crossref: Callable[[Tables], Iterable[tuple[str, str]]] | None = None


class MissingRuleError(MappingTableError):
    """A rule the engine needs has no row in force on the date of service (a table gap, never a default)."""

    def __init__(self, table: str, on: date | None, key: dict[str, object], why: str = "no row in force"):
        self.table = table
        self.on = on
        self.key = dict(key)
        when = on.isoformat() if on is not None else "an unknown date of service"
        label = ", ".join(f"{k}={v!r}" for k, v in key.items()) or "-"
        super().__init__([(table, label, f"{why} on {when}")])


@dataclass(frozen=True)
class Table:
    name: str
    version: str
    description: str
    file: str
    digest: str  # sha256 of the file's bytes, first 12 hex digits
    rows: tuple[Any, ...]  # instances of the schema's row model
    row_model: type[RowBase] = RowBase
    key: tuple[str, ...] = ()

    @property
    def version_tag(self) -> str:
        return f"{self.name}@{self.version}+{self.digest}"

    def active(self, on: date | None) -> tuple[Any, ...]:
        """Rows in force on ``on``; every row when ``on`` is None (date of service unknown)."""
        if on is None:
            return self.rows
        return tuple(r for r in self.rows if r.active_on(on))

    def as_of(self, on: date | None) -> tuple[Any, ...]:
        """Rows in force on ``on``; when ``on`` is None, the latest row (greatest ``effective``) per key."""
        if on is not None:
            return self.active(on)
        latest: dict[tuple[object, ...], Any] = {}
        for r in self.rows:
            k = tuple(hashable(getattr(r, f)) for f in self.key)
            if k not in latest or r.effective >= latest[k].effective:
                latest[k] = r
        keep = {id(v) for v in latest.values()}
        return tuple(r for r in self.rows if id(r) in keep)


@dataclass(frozen=True)
class Tables:
    tables: dict[str, Table] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Table:
        return self.tables[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tables

    def __iter__(self) -> Iterator[Table]:
        return iter(self.tables.values())

    def active(self, name: str, on: date | None) -> tuple[Any, ...]:
        return self.tables[name].active(on)

    def as_of(self, on: date | None) -> AsOf:
        """Typed lookups of the rules in force on ``on`` (see :class:`AsOf`)."""
        return AsOf(self, on)

    def table_of(self, model: type[RowBase]) -> Table:
        """The one loaded table whose rows are ``model``; an error when none or several are."""
        found = [t for t in self.tables.values() if t.row_model is model]
        if len(found) != 1:
            names = ", ".join(t.name for t in found) or "none loaded"
            raise MissingRuleError(
                model.__name__, None, {}, f"expected exactly one table of {model.__name__} ({names})"
            )
        return found[0]

    def versions(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((t.name, f"{t.version}+{t.digest}") for t in self.tables.values()))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for name, ver in self.versions():
            h.update(f"{name}={ver};".encode())
        return h.hexdigest()[:12]


@dataclass(frozen=True)
class AsOf:
    """The rules in force on one date of service, looked up by row model (typed).

    ``on=None`` (date of service unknown) gives the latest row per key of each table.
    """

    tables: Tables
    on: date | None

    def rows(self, model: type[R]) -> tuple[R, ...]:
        table = self.tables.table_of(model)
        return tuple(r for r in table.as_of(self.on) if isinstance(r, model))

    def find(self, model: type[R], **key: object) -> R | None:
        """The row whose fields equal ``key``, or None when the table has none (absence is meaningful)."""
        hits = self._matching(model, key)
        if len(hits) > 1:
            raise MissingRuleError(self.tables.table_of(model).name, self.on, key, "several rows in force")
        return hits[0] if hits else None

    def one(self, model: type[R], **key: object) -> R:
        """The row whose fields equal ``key``; :class:`MissingRuleError` when none is in force."""
        hit = self.find(model, **key)
        if hit is None:
            raise MissingRuleError(self.tables.table_of(model).name, self.on, key)
        return hit

    def _matching(self, model: type[R], key: dict[str, object]) -> list[R]:
        return [r for r in self.rows(model) if all(getattr(r, k) == v for k, v in key.items())]


def hashable(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, hashable(x)) for k, x in v.items()))
    return v


def first_uncovered(rows: Iterable[RowBase], start: date) -> date | None:
    """The first date on or after ``start`` on which none of ``rows`` is in force (None: covered for good)."""
    spans = sorted((r.effective, r.expires or date.max) for r in rows)
    day = start
    for eff, exp in spans:
        if eff > day:
            return day
        if exp >= day:
            if exp == date.max:
                return None
            day = date.fromordinal(exp.toordinal() + 1)
    return day
