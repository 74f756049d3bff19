from __future__ import annotations

from pathlib import Path

import pytest
import requests

from dynamics_bridge.registry import SparClient, SparContract
from tests.conftest import shared_samples

ENDPOINT = "https://spar.test.invalid/2021.1/"


def make_client(contract: SparContract | None = None, **kw: object) -> SparClient:
    options: dict = {
        "endpoint": ENDPOINT,
        "customer_number": 500243,
        "assignment_id": 637,
        "end_user_id": "bridge:address-refresh",
        "timeout": 5.0,
        **kw,
    }
    return SparClient(requests.Session(), contract=contract, **options)


@pytest.fixture(scope="session")
def bundled_contract() -> SparContract:
    return SparContract.from_paths()


def spar_samples() -> Path:
    """SPAR's published 2021.1 contract in ../shared (skips when absent)."""
    return shared_samples("soap", "spar")


@pytest.fixture(params=["bundled", "spar"])
def contract(request: pytest.FixtureRequest, bundled_contract: SparContract) -> SparContract:
    """Each client test runs on our own contract and on SPAR's published one (when present)."""
    if request.param == "bundled":
        return bundled_contract
    return SparContract.from_paths(
        spar_samples() / "granssnitt" / "personsok" / "2021.1" / "personsok.wsdl"
    )
