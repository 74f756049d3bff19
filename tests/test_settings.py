"""Settings come from BRIDGE_* variables (and .env); every problem is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.settings import load_settings, salvage_settings


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


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BRIDGE_APSIS__ATTRIBUTES", "notjson"),
        ("BRIDGE_APSIS__TAGS", "{not: json}"),
        ("BRIDGE_APSIS", "notjson"),
    ],
)
def test_a_complex_value_that_is_not_json_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # pydantic-settings raises SettingsError (not ValidationError) before validating these.
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("BRIDGE_APSIS__CLIENT_ID", "plain text is fine here")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert [p.split(":")[0] for p in caught.value.problems] == [variable]
    assert "not valid JSON" in caught.value.problems[0]


def test_a_complex_value_that_is_not_json_in_dotenv_is_named_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BRIDGE_APSIS__EVENT_TYPES=oops\n")
    with pytest.raises(ConfigError, match="BRIDGE_APSIS__EVENT_TYPES: not valid JSON"):
        load_settings()


def test_valid_json_for_a_complex_value_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_APSIS__ATTRIBUTES", '{"fee": "com.apsis1.attr.fee"}')
    assert load_settings().apsis.attributes == {"fee": "com.apsis1.attr.fee"}


def test_an_empty_value_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bicep and local.settings.json write "" for parts a union does not use."""
    for name in (
        "BRIDGE_SPAR__ENDPOINT",
        "BRIDGE_SPAR__CUSTOMER_NUMBER",
        "BRIDGE_SPAR__ASSIGNMENT_ID",
        "BRIDGE_SPAR__END_USER_ID",
        "BRIDGE_APSIS__SECTION",
        "BRIDGE_SWISH__ALLOWED_IPS",
        "BRIDGE_DATAVERSE__MAX_CONCURRENCY",
        "BRIDGE_DATAVERSE__APP_USERS",
    ):
        monkeypatch.setenv(name, "")
    s = load_settings()
    assert s.spar.endpoint is None
    assert s.spar.customer_number is None
    assert s.apsis.section is None
    assert s.swish.allowed_ips == []
    assert s.dataverse.max_concurrency == 8  # the default, not a validation error
    assert s.dataverse.app_users == []


def test_an_empty_value_in_dotenv_means_unset_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BRIDGE_SPAR__ASSIGNMENT_ID=\nBRIDGE_QUEUE__NAME=\n")
    s = load_settings()
    assert s.spar.assignment_id is None
    assert s.queue.name == "payment-events"


KV = "@Microsoft.KeyVault(VaultName=kv-bridge;SecretName=billogram-sign-key)"


def test_an_unresolved_key_vault_reference_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """App Service leaves the reference text as the value when it cannot resolve it: never
    use it as a sign key or client secret."""
    monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", KV)
    monkeypatch.setenv("BRIDGE_DATAVERSE__APP_USERS", KV.replace("billogram-sign-key", "users"))
    monkeypatch.setenv("BRIDGE_QUEUE__NAME", "Not_Valid")  # reported in the same error
    with pytest.raises(ConfigError) as caught:
        load_settings()
    named = [p.split(":")[0] for p in caught.value.problems]
    assert named == [
        "BRIDGE_BILLOGRAM__SIGN_KEY",
        "BRIDGE_DATAVERSE__APP_USERS",
        "BRIDGE_QUEUE__NAME",
    ]
    assert "unresolved Key Vault reference" in caught.value.problems[0]


@pytest.mark.parametrize("value", [KV, " @microsoft.keyvault(SecretUri=https://kv/secrets/x)"])
def test_a_key_vault_reference_in_dotenv_or_overrides_is_refused(
    tmp_path: Path, value: str
) -> None:
    (tmp_path / ".env").write_text(f"BRIDGE_SWISH__CALLBACK_IDENTIFIER={value}\n")
    with pytest.raises(ConfigError, match="BRIDGE_SWISH__CALLBACK_IDENTIFIER: an unresolved"):
        load_settings()
    (tmp_path / ".env").unlink()
    with pytest.raises(ConfigError, match="BRIDGE_APSIS__CLIENT_SECRET: an unresolved"):
        load_settings(apsis={"client_secret": value})


def test_resolved_secrets_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", "resolved-by-the-platform")
    s = load_settings()
    assert s.billogram.sign_key is not None
    assert s.billogram.sign_key.get_secret_value() == "resolved-by-the-platform"


def test_salvaged_settings_leave_only_the_refused_values_at_their_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What check reads the rest of the settings with when some fail validation."""
    monkeypatch.setenv("BRIDGE_DATAVERSE__URL", "union.crm4.dynamics.com")  # no https://
    monkeypatch.setenv("BRIDGE_DATAVERSE__TENANT_ID", "tenant")
    monkeypatch.setenv("BRIDGE_DATAVERSE__MAX_CONCURRENCY", "99")  # above 52
    monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", "@Microsoft.KeyVault(SecretUri=https://kv/x)")
    monkeypatch.setenv("BRIDGE_APSIS__CLIENT_ID", "apsis")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    salvaged = salvage_settings(refused.value.problems)
    assert salvaged is not None
    assert salvaged.dataverse.url is None
    assert salvaged.dataverse.max_concurrency == 8
    assert salvaged.billogram.sign_key is None
    assert salvaged.dataverse.tenant_id == "tenant"
    assert salvaged.apsis.client_id == "apsis"
    assert salvage_settings(["settings could not be read: …"]) is None
