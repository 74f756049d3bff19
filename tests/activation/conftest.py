from __future__ import annotations

import pytest

from dynamics_bridge.activation.config import ActivationConfig
from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.mapping import MappingFile, load_mapping


@pytest.fixture(scope="session")
def mapping() -> MappingFile:
    return load_mapping()


@pytest.fixture(scope="session")
def config(mapping: MappingFile) -> ActivationConfig:
    """The shipped mappings/apsis.yaml, triggers.yaml and segments.yaml."""
    return load_activation(mapping)
