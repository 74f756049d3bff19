"""One synthetic register (20,000 members, three years, known structure) and its churn model,
shared by the retention tests: generating and training take about two seconds."""

from __future__ import annotations

from datetime import date

import pytest

from dynamics_bridge.retention.model import ChurnModel, train_churn
from dynamics_bridge.retention.synthetic import SyntheticRegister, generate

TODAY = date(2026, 11, 28)


@pytest.fixture(scope="session")
def register() -> SyntheticRegister:
    return generate(20_000, today=TODAY, seed=1)


@pytest.fixture(scope="session")
def churn_model(register: SyntheticRegister) -> ChurnModel:
    return train_churn(register.members, today=register.today)
