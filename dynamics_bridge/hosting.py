"""Facts about running under the Azure Functions host, as small pure functions.

The queue options come from ``host.json`` (``extensions.queues``) and may be overridden by app
settings (``AzureFunctionsJobHost__extensions__queues__batchSize=4``), so the function reads the
same values the host uses. The concurrency bound says how many Dataverse requests one app user
can see at once, for checking a ``host.json`` and an instance cap against Dataverse's limit
(reference azure-functions.md §6). Pure: no I/O here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dynamics_bridge.errors import ConfigError

__all__ = [
    "DATAVERSE_CONCURRENT_LIMIT",
    "HOST_SETTING_PREFIX",
    "QueueHostOptions",
    "dataverse_concurrency",
    "forwarded_client_ip",
    "is_key_vault_reference",
    "parse_timespan",
    "queue_host_options",
    "unresolved_key_vault_references",
]

#: Dataverse's documented concurrent requests per user (per web server): "52 or more".
DATAVERSE_CONCURRENT_LIMIT = 52
HOST_SETTING_PREFIX = "AzureFunctionsJobHost__"
_QUEUES = ("extensions", "queues")


@dataclass(frozen=True, slots=True)
class QueueHostOptions:
    """The storage-queue trigger's settings, with the host's defaults (Consumption/Flex)."""

    batch_size: int = 16
    new_batch_threshold: int = 8  # N * batchSize / 2 with N = 1 on Consumption and Flex
    max_dequeue_count: int = 5
    visibility_timeout_seconds: float = 0.0

    @property
    def in_flight_per_instance(self) -> int:
        """Messages one instance runs at once for one queue function."""
        return self.batch_size + self.new_batch_threshold


def parse_timespan(text: str) -> float:
    """``[d.]hh:mm:ss[.fff]`` (a .NET TimeSpan as host.json writes it) → seconds."""
    match = re.fullmatch(r"\s*(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)\s*", text)
    if not match:
        raise ConfigError(f"{text!r}: not a timespan like 00:00:30")
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


def queue_host_options(host_json: Mapping[str, Any], env: Mapping[str, str]) -> QueueHostOptions:
    """The queue options the host runs with: host.json, then app-setting overrides."""
    section: dict[str, Any] = dict(host_json.get("extensions", {}).get("queues", {}))
    prefix = HOST_SETTING_PREFIX + "__".join(_QUEUES) + "__"
    for key, value in env.items():
        if key.startswith(prefix):
            section[key[len(prefix) :]] = value
    lowered = {k.lower(): v for k, v in section.items()}
    try:
        batch = int(lowered.get("batchsize", 16))
        threshold = lowered.get("newbatchthreshold")
        options = QueueHostOptions(
            batch_size=batch,
            new_batch_threshold=batch // 2 if threshold is None else int(threshold),
            max_dequeue_count=int(lowered.get("maxdequeuecount", 5)),
            visibility_timeout_seconds=parse_timespan(
                str(lowered.get("visibilitytimeout", "00:00:00"))
            ),
        )
    except ValueError as exc:
        raise ConfigError(f"host.json extensions.queues: {exc}") from None
    if not 1 <= options.batch_size <= 32:
        raise ConfigError("host.json extensions.queues.batchSize: 1 to 32")
    if options.max_dequeue_count < 1:
        raise ConfigError("host.json extensions.queues.maxDequeueCount: at least 1")
    return options


def dataverse_concurrency(
    options: QueueHostOptions,
    *,
    max_instances: int,
    worker_processes: int = 1,
    per_process_limit: int = 8,
    timer_jobs: int = 0,
) -> int:
    """Worst-case Dataverse requests in flight for one app user.

    Each queue invocation makes one request at a time (the pipeline is sequential), so one
    instance has at most ``batchSize + newBatchThreshold`` in flight, and never more than its
    worker processes times ``BRIDGE_DATAVERSE__MAX_CONCURRENCY`` (each process gates its own).
    Instances multiply that; each timer job adds its own requests (one at a time each, on one
    instance: the host holds a lease per timer).
    """
    per_instance = min(options.in_flight_per_instance, worker_processes * per_process_limit)
    return max_instances * per_instance + timer_jobs


def forwarded_client_ip(headers: Mapping[str, str]) -> str | None:
    """The caller's address as the platform's front end saw it: the last ``X-Forwarded-For``
    entry (a caller can prepend anything, not append), without its port."""
    value = next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), None)
    if not value:
        return None
    last = value.split(",")[-1].strip()
    if last.startswith("["):  # [IPv6]:port
        last = last[1:].split("]", 1)[0]
    elif last.count(":") == 1:  # IPv4:port
        last = last.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


KEY_VAULT_REFERENCE_PREFIX = "@Microsoft.KeyVault("


def is_key_vault_reference(value: object) -> bool:
    """``@Microsoft.KeyVault(...)`` text: App Service leaves a reference it could not resolve
    (identity, role or secret missing) as the app setting's literal value."""
    return isinstance(value, str) and value.lstrip().lower().startswith(
        KEY_VAULT_REFERENCE_PREFIX.lower()
    )


def unresolved_key_vault_references(env: Mapping[str, str], prefix: str = "BRIDGE_") -> list[str]:
    """Settings still holding ``@Microsoft.KeyVault(...)``: the platform could not resolve them,
    and loading settings refuses them (``load_settings`` raises a ConfigError naming each)."""
    return sorted(k for k, v in env.items() if k.startswith(prefix) and is_key_vault_reference(v))
