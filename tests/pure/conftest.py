"""Shared fixtures of the pure tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import mappings.loader as loader
from mappings.loader import Tables
from mappings.schemas import billing as billing_schemas
from mappings.schemas import core as core_schemas


@pytest.fixture(scope="session")
def billing_tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    """Only the core and billing tables (copied and loaded strictly), so billing tests do not depend on
    the classification tables."""
    root = tmp_path_factory.mktemp("mappings")
    for sub in ("core", "billing"):
        (root / sub).mkdir()
        for f in (Path(loader.MAPPINGS_DIR) / sub).glob("*.yaml"):
            shutil.copy(f, root / sub / f.name)
    return loader.load_tables(root, schemas={**core_schemas.SCHEMAS, **billing_schemas.SCHEMAS})
