"""Rule and mapping tables (YAML, one concern per file) and their strict loader."""

from mappings.loader import RowBase, Schema, Table, Tables, default_tables, load_tables

__all__ = ["RowBase", "Schema", "Table", "Tables", "default_tables", "load_tables"]
