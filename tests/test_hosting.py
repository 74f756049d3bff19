"""Facts of the Functions host as pure functions: queue options, the Dataverse concurrency
bound, the caller's address, unresolved Key Vault references."""

from __future__ import annotations

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.hosting import (
    QueueHostOptions,
    dataverse_concurrency,
    forwarded_client_ip,
    is_key_vault_reference,
    parse_timespan,
    queue_host_options,
    unresolved_key_vault_references,
)

HOST = {"extensions": {"queues": {"batchSize": 8, "newBatchThreshold": 0, "maxDequeueCount": 5}}}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00:30", 30), ("00:02:00", 120), ("1.00:00:00", 86400), ("00:00:00.5", 0.5)],
)
def test_timespans_as_host_json_writes_them(text: str, seconds: float) -> None:
    assert parse_timespan(text) == seconds


def test_a_timespan_that_is_not_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'30s'"):
        parse_timespan("30s")


def test_without_host_json_values_the_hosts_defaults_apply() -> None:
    options = queue_host_options({}, {})
    assert options == QueueHostOptions(16, 8, 5, 0.0)
    assert options.in_flight_per_instance == 24


def test_new_batch_threshold_defaults_to_half_the_batch() -> None:
    options = queue_host_options({"extensions": {"queues": {"batchSize": 4}}}, {})
    assert options.new_batch_threshold == 2


def test_app_settings_override_host_json_as_the_host_does() -> None:
    env = {
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "8",
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:45",
        "AzureFunctionsJobHost__logging__logLevel__default": "Debug",  # not a queue option
    }
    options = queue_host_options(HOST, env)
    assert (options.batch_size, options.max_dequeue_count) == (8, 8)
    assert options.visibility_timeout_seconds == 45


@pytest.mark.parametrize(
    "queues", [{"batchSize": 64}, {"maxDequeueCount": 0}, {"batchSize": "many"}]
)
def test_impossible_queue_options_are_config_errors(queues) -> None:
    with pytest.raises(ConfigError, match=r"extensions\.queues"):
        queue_host_options({"extensions": {"queues": queues}}, {})


def test_concurrency_is_instances_times_what_one_instance_runs_plus_timers() -> None:
    options = queue_host_options(HOST, {})
    assert dataverse_concurrency(options, max_instances=4, timer_jobs=3) == 35


def test_the_per_process_gate_caps_an_instance_below_its_batch() -> None:
    options = QueueHostOptions(batch_size=16, new_batch_threshold=8)
    assert dataverse_concurrency(options, max_instances=2, per_process_limit=8) == 16
    assert dataverse_concurrency(options, max_instances=2, worker_processes=4) == 48


@pytest.mark.parametrize(
    ("forwarded", "address"),
    [
        ("203.0.113.7:51234", "203.0.113.7"),
        ("198.51.100.1, 203.0.113.7:443", "203.0.113.7"),  # the last entry is the platform's
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::2", "2001:db8::2"),
        ("not-an-address", None),
        ("", None),
    ],
)
def test_the_caller_is_the_last_forwarded_address(forwarded: str, address: str | None) -> None:
    assert forwarded_client_ip({"X-Forwarded-For": forwarded}) == address


def test_without_the_header_there_is_no_caller_address() -> None:
    assert forwarded_client_ip({"Content-Type": "application/json"}) is None


def test_unresolved_key_vault_references_are_named() -> None:
    env = {
        "BRIDGE_APSIS__CLIENT_SECRET": "@Microsoft.KeyVault(VaultName=kv;SecretName=apsis)",
        "BRIDGE_BILLOGRAM__SIGN_KEY": "resolved-value",
        "OTHER": "@Microsoft.KeyVault(VaultName=kv;SecretName=x)",
    }
    assert unresolved_key_vault_references(env) == ["BRIDGE_APSIS__CLIENT_SECRET"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("@Microsoft.KeyVault(VaultName=kv;SecretName=x)", True),
        ("@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x/)", True),
        ("  @microsoft.keyvault(VaultName=kv;SecretName=x)", True),
        ("a secret that mentions @Microsoft.KeyVault(", False),
        ("", False),
        (None, False),
    ],
)
def test_a_key_vault_reference_is_recognised_by_its_prefix(value: object, expected: bool) -> None:
    assert is_key_vault_reference(value) is expected
