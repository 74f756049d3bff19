from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.support.azurite import azurite_binary, run_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A real Azurite queue service on a free 127.0.0.1 port; yields its connection string."""
    binary = azurite_binary(ROOT)
    if binary is None:
        pytest.skip("Azurite is not installed: `make test` installs it with npm into node_modules")
    with run_azurite(binary) as conn:
        yield conn
