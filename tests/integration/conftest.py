from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.support.azurite import azurite_binary, run_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Real Azurite queue and table services on free 127.0.0.1 ports (the queue, and the ops
    store's tables: run history, the poison book); yields their connection string."""
    binary = azurite_binary(ROOT)
    if binary is None:
        pytest.skip("Azurite is not installed: `make test` installs it with npm into node_modules")
    with run_azurite(binary, tables=True) as conn:
        yield conn
