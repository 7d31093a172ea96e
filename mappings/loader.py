"""Strict loader for the rule and mapping tables in this folder.

Every table is one YAML file with one concern::

    table: kx_thresholds          # unique name, used by code
    version: "2026.11.1"          # bumped by hand when rows change; written into Provenance
    description: ...
    rows:
      - year: 2026
        amount: 2480
        source: "NGS KX CY2026 article (third-party restatement) [SECONDARY]"
        effective: "2026-01-01"
        expires: "2026-12-31"     # or null: open-ended

Rules enforced (every problem is collected, then all are raised together in one MappingTableError):
  * YAML mapping keys are unique (a duplicated key in a row or file is an error, not a silent override);
  * dates stay strings in YAML and must be ``YYYY-MM-DD``; ``expires`` (if any) is not before ``effective``;
  * every row has a non-empty ``source``;
  * every table named in a file has a schema among those passed in, rows match it (pydantic,
    ``extra="forbid"``), and its key fields are unique among rows whose periods overlap;
  * every schema passed in has its table;
  * cross-reference checks registered by the schemas pass (e.g. a rule names an existing concept, a
    rule the billing engine needs is in force on every date billing rules cover).

``load_tables(directory, schemas)`` takes the schemas to check against (name -> ``Schema``); by default
the shipped registry ``mappings.schemas.ALL_SCHEMAS``. Tests pass a subset (e.g. only the core and
billing schemas) instead of patching this module.

Lookups: ``tables.active(name, on)`` (untyped rows) and ``tables.as_of(on)`` (typed, see mappings.tables).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from integration.errors import MappingTableError
from mappings.schemas import ALL_SCHEMAS
from mappings.tables import (
    AsOf,
    MissingRuleError,
    RowBase,
    Schema,
    Table,
    Tables,
    hashable,
)

__all__ = [
    "MAPPINGS_DIR",
    "AsOf",
    "MissingRuleError",
    "RowBase",
    "Schema",
    "Table",
    "Tables",
    "default_tables",
    "load_tables",
]

MAPPINGS_DIR = Path(__file__).resolve().parent

Problem = tuple[str, str, str]  # (file, row, message)


# --- YAML with duplicate-key rejection and dates kept as strings -----------------------------


class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Keep dates as strings so a typo like 2026-13-01 is reported by our validator with file and row.
_StrictLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _row_label(i: int, row: Any, key: tuple[str, ...]) -> str:
    if isinstance(row, dict):
        parts = [f"{k}={row.get(k)!r}" for k in key if k in row]
        if parts:
            return f"row {i + 1} ({', '.join(parts)})"
    return f"row {i + 1}"


def load_tables(
    directory: Path | str | None = None, schemas: Mapping[str, Schema[Any]] = ALL_SCHEMAS
) -> Tables:
    """Load and check every ``*.yaml`` table below ``directory`` (default: this package) against
    ``schemas`` (default: the shipped registry).

    Raises MappingTableError listing every problem; never returns a partly valid set.
    """
    root = Path(directory) if directory is not None else MAPPINGS_DIR
    problems: list[Problem] = []
    tables: dict[str, Table] = {}
    files = sorted(root.rglob("*.yaml"))
    if not files:
        raise MappingTableError([(str(root), "-", "no *.yaml mapping tables found")])
    for path in files:
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        raw_bytes = path.read_bytes()
        try:
            doc = yaml.load(raw_bytes, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
        except yaml.YAMLError as e:
            problems.append((rel, "-", f"YAML error: {e}"))
            continue
        if not isinstance(doc, dict):
            problems.append((rel, "-", "top level must be a mapping with table, version, rows"))
            continue
        extra = set(doc) - {"table", "version", "description", "rows"}
        if extra:
            problems.append((rel, "-", f"unknown top-level keys {sorted(extra)}"))
        name, version, rows = doc.get("table"), doc.get("version"), doc.get("rows")
        if not isinstance(name, str) or not name:
            problems.append((rel, "-", "missing 'table' name"))
            continue
        if not isinstance(version, str) or not version:
            problems.append((rel, "-", "missing 'version' (a quoted string)"))
        if not isinstance(rows, list) or not rows:
            problems.append((rel, "-", "missing or empty 'rows' list"))
            continue
        if name in tables:
            problems.append((rel, "-", f"table {name!r} already defined in {tables[name].file}"))
            continue
        schema = schemas.get(name)
        if schema is None:
            problems.append((rel, "-", f"no schema given for table {name!r} (see mappings/schemas)"))
            continue
        parsed: list[Any] = []
        for i, row in enumerate(rows):
            label = _row_label(i, row, schema.key)
            if not isinstance(row, dict):
                problems.append((rel, label, "row must be a mapping"))
                continue
            try:
                parsed.append(schema.row_model.model_validate(row))
            except ValidationError as e:
                for err in e.errors():
                    loc = ".".join(str(x) for x in err["loc"]) or "-"
                    problems.append((rel, label, f"{loc}: {err['msg']}"))
        # duplicate keys among rows whose periods overlap
        by_key: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
        for i, r in enumerate(parsed):
            k = tuple(hashable(getattr(r, f)) for f in schema.key)
            by_key.setdefault(k, []).append((i, r))
        for k, group in by_key.items():
            for a in range(len(group)):
                for b in range(a + 1, len(group)):
                    ra, rb = group[a][1], group[b][1]
                    if _overlap(ra, rb):
                        problems.append(
                            (
                                rel,
                                f"key {dict(zip(schema.key, k, strict=True))}",
                                f"duplicate key: rows {group[a][0] + 1} and {group[b][0] + 1} "
                                "overlap in time",
                            )
                        )
        tables[name] = Table(
            name=name,
            version=str(version),
            description=str(doc.get("description") or ""),
            file=rel,
            digest=hashlib.sha256(raw_bytes).hexdigest()[:12],
            rows=tuple(parsed),
            row_model=schema.row_model,
            key=schema.key,
        )
    missing = sorted(set(schemas) - set(tables))
    for name in missing:
        problems.append((str(root), "-", f"required table {name!r} has no file"))
    result = Tables(tables)
    if not problems:
        for name, schema in schemas.items():
            if schema.crossref is None or name not in tables:
                continue
            for label, msg in schema.crossref(result):
                problems.append((tables[name].file, label, msg))
    if problems:
        raise MappingTableError(problems)
    return result


def _overlap(a: RowBase, b: RowBase) -> bool:
    a_end = a.expires or date.max
    b_end = b.expires or date.max
    return a.effective <= b_end and b.effective <= a_end


@lru_cache(maxsize=1)
def default_tables() -> Tables:
    """The shipped tables, loaded once per process."""
    return load_tables(MAPPINGS_DIR)
