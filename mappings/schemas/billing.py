"""Schemas of the billing rule tables (mappings/billing/*.yaml)."""

from typing import Any

from mappings.loader import Schema

SCHEMAS: dict[str, Schema[Any]] = {}
