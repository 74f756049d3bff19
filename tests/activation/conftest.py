from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dynamics_bridge.activation.config import ActivationConfig
from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.activation.service import Activation
from dynamics_bridge.mapping import MappingFile, load_mapping
from dynamics_bridge.settings import ActivationSettings
from tests.activation.fakes import FakeActivationStore, FakePlatform


@pytest.fixture(scope="session")
def mapping() -> MappingFile:
    return load_mapping()


@pytest.fixture(scope="session")
def config(mapping: MappingFile) -> ActivationConfig:
    """The shipped mappings/apsis.yaml, triggers.yaml and segments.yaml."""
    return load_activation(mapping)


# -- the jobs over the in-memory store and platform (tests/activation/fakes.py) ----------------

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ACTIVE, ENDED = 100000000, 100000001


class Clock:
    """The jobs' clock: fixed, moved on by the test."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(config: ActivationConfig) -> FakeActivationStore:
    """Three consenting active members (1001, 1002, 1003), not in APSIS yet."""
    store = FakeActivationStore(lease_minutes=config.triggers.outbox.lease_minutes)
    for key in ("1001", "1002", "1003"):
        store.add_member(
            key,
            mbr_marketingconsent=True,
            mbr_joinedon="2026-10-01",
            mbr_membershipstatus=ACTIVE,
        )
    return store


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def activation(
    store: FakeActivationStore,
    mapping: MappingFile,
    config: ActivationConfig,
    platform: FakePlatform,
    clock: Clock,
) -> Activation:
    """The three jobs over the fakes; a welcome goes with its payment (no hold) unless a test
    sets ``activation.triggers.options``."""
    options = ActivationSettings(first_payment_hold_minutes=0)
    return Activation(store, mapping, config, platform, clock=clock, options=options)
