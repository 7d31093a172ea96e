"""Rule and mapping tables (YAML, one concern per file), their schemas and their strict loader."""

from mappings.loader import default_tables, load_tables
from mappings.tables import AsOf, MissingRuleError, RowBase, Schema, Table, Tables

__all__ = [
    "AsOf",
    "MissingRuleError",
    "RowBase",
    "Schema",
    "Table",
    "Tables",
    "default_tables",
    "load_tables",
]
