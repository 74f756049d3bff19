"""The managed identity for the Azure Storage adapters (queue, tables): one place that knows
azure-identity is an optional extra."""

from __future__ import annotations

from typing import Any

from dynamics_bridge.errors import ConfigError

__all__ = ["default_credential"]


def default_credential(setting: str) -> Any:
    """``DefaultAzureCredential`` (in Azure: the app's managed identity); ``setting`` names the
    account-URL setting that asked for it, so a missing extra says which one."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            f"{setting} needs azure-identity: pip install 'dynamics-bridge[functions]'"
        ) from None
    return DefaultAzureCredential()
