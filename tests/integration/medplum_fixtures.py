"""Pytest fixture for the Medplum test server (imported by conftest.py with one line).

    def test_x(medplum_server): ...                                   # profile "rules"

    @pytest.mark.parametrize("medplum_server", ["lenient", "rules", "rules-tx"], indirect=True)
    def test_y(medplum_server): ...

    @pytest.mark.parametrize("medplum_server", [{"profile": "rules-tx", "tx_max_updates": 3}], indirect=True)
    def test_z(medplum_server): ...

Skips (with the reason) only when ``node`` or the server's ``node_modules`` is missing; scripts/test.sh
installs both, so CI always runs these tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.medplum_server import MedplumServer, unavailable_reason


@pytest.fixture
def medplum_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MedplumServer]:
    param: Any = getattr(request, "param", "rules")
    options: dict[str, Any] = dict(param) if isinstance(param, dict) else {"profile": param}
    profile = str(options.pop("profile", "rules"))
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with MedplumServer(profile, log_dir=tmp_path / f"medplum-{profile}", **options) as srv:
        yield srv
