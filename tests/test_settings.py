"""Settings come from BRIDGE_* variables (and .env); every problem is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.settings import load_settings


def test_defaults_need_no_environment() -> None:
    s = load_settings()
    assert s.queue.backend == "memory"
    assert s.queue.name == "payment-events"
    assert s.queue.poison_queue_name == "payment-events-poison"
    assert s.billogram.tolerance_seconds == 300
    assert s.webhook.max_body_bytes == 1024 * 1024
    assert s.swish.allowed_ips == []


def test_nested_values_come_from_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")
    monkeypatch.setenv("BRIDGE_QUEUE__CONNECTION_STRING", "UseDevelopmentStorage=true")
    monkeypatch.setenv("BRIDGE_QUEUE__NAME", "union-events")
    monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", "k3y")
    monkeypatch.setenv("BRIDGE_BILLOGRAM__TOLERANCE_SECONDS", "60")
    monkeypatch.setenv("BRIDGE_SWISH__ALLOWED_IPS", "194.242.111.0/24, 2001:db8::/32")
    monkeypatch.setenv("BRIDGE_WEBHOOK__MAX_BODY_BYTES", "2048")
    s = load_settings()
    assert s.queue.connection_string is not None
    assert s.queue.connection_string.get_secret_value() == "UseDevelopmentStorage=true"
    assert s.queue.poison_queue_name == "union-events-poison"
    assert s.billogram.tolerance_seconds == 60
    assert s.swish.allowed_ips == ["194.242.111.0/24", "2001:db8::/32"]
    assert s.webhook.max_body_bytes == 2048


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BRIDGE_SWISH__CALLBACK_IDENTIFIER=from-dotenv\n")
    s = load_settings()
    assert s.swish.callback_identifier is not None
    assert s.swish.callback_identifier.get_secret_value() == "from-dotenv"


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", "very-secret-value")
    s = load_settings()
    assert "very-secret-value" not in repr(s)
    assert "very-secret-value" in s.secrets()


def test_every_problem_is_listed_by_its_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")
    monkeypatch.setenv("BRIDGE_QUEUE__NAME", "Not_Valid")
    monkeypatch.setenv("BRIDGE_SWISH__ALLOWED_IPS", "10.0.0.0/8,not-a-network")
    monkeypatch.setenv("BRIDGE_BILLOGRAM__TOLERANCE_SECONDS", "soon")
    monkeypatch.setenv("BRIDGE_SWISH__MEMBER_REF_PATTERN", r"^\d+$")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    named = {p.split(":")[0] for p in caught.value.problems}
    assert named == {
        "BRIDGE_QUEUE__CONNECTION_STRING",
        "BRIDGE_QUEUE__NAME",
        "BRIDGE_SWISH__ALLOWED_IPS",
        "BRIDGE_BILLOGRAM__TOLERANCE_SECONDS",
        "BRIDGE_SWISH__MEMBER_REF_PATTERN",
    }


def test_an_unknown_queue_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "kafka")
    with pytest.raises(ConfigError, match="BRIDGE_QUEUE__BACKEND"):
        load_settings()
