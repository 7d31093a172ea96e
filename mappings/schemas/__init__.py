"""Registry of table schemas. Each concern registers its tables in its own module.

``ALL_SCHEMAS`` (table name -> Schema) is what ``mappings.loader.load_tables`` checks the shipped tables
against; pass a subset to ``load_tables(directory, schemas)`` to load only some concerns.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from mappings.schemas import billing, classify, core
from mappings.tables import Schema

ALL_SCHEMAS: Mapping[str, Schema[Any]] = MappingProxyType(
    {**core.SCHEMAS, **classify.SCHEMAS, **billing.SCHEMAS}
)

__all__ = ["ALL_SCHEMAS", "billing", "classify", "core"]
