"""Schemas of the classification tables (mappings/classify/*.yaml)."""

from typing import Any

from mappings.loader import Schema

SCHEMAS: dict[str, Schema[Any]] = {}
