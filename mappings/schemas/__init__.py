"""Registry of table schemas. Each concern registers its tables in its own module."""

from typing import Any

from mappings.loader import Schema
from mappings.schemas import billing, classify, core

ALL_SCHEMAS: dict[str, Schema[Any]] = {**core.SCHEMAS, **classify.SCHEMAS, **billing.SCHEMAS}
