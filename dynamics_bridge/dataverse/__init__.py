"""Dataverse Web API: msal auth, a requests + tenacity client, ``$batch``, metadata, pacing.

Pure parts (no I/O): :mod:`.policy` (error classification, retry timing), :mod:`.batch`
(multipart build, parse, correlate), :mod:`.odata` (keys, binds, filters), :mod:`.metadata`
(typed table metadata, provisioning bodies), :mod:`.pacing` (per-app-user gate and pool).
I/O: :mod:`.auth` (msal) and :mod:`.client`. Build a client from settings with
``DataverseClient.from_settings(settings.dataverse)``.
"""

from __future__ import annotations

from dynamics_bridge.dataverse.batch import (
    BatchPart,
    BatchRequest,
    BatchResult,
    ChangeSet,
    OperationResult,
)
from dynamics_bridge.dataverse.client import (
    AmbiguousWriteError,
    DataverseClient,
    Delta,
    RowResult,
)
from dynamics_bridge.dataverse.metadata import AlternateKey, ChoiceOption, Column, Table
from dynamics_bridge.dataverse.odata import bind, bind_path, key_literal, key_path, odata_in
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserLane, AppUserPool
from dynamics_bridge.dataverse.policy import classify, should_retry, sleep_for

__all__ = [
    "AlternateKey",
    "AmbiguousWriteError",
    "AppUserGate",
    "AppUserLane",
    "AppUserPool",
    "BatchPart",
    "BatchRequest",
    "BatchResult",
    "ChangeSet",
    "ChoiceOption",
    "Column",
    "DataverseClient",
    "Delta",
    "OperationResult",
    "RowResult",
    "Table",
    "bind",
    "bind_path",
    "classify",
    "key_literal",
    "key_path",
    "odata_in",
    "should_retry",
    "sleep_for",
]
