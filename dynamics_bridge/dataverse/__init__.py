"""Dataverse Web API: msal auth, a requests client, ``$batch``, metadata, pacing.

Pure parts (no I/O): :mod:`.policy` (error classification; retry timing is
:mod:`dynamics_bridge.http_policy`), :mod:`.batch` (multipart build, parse, correlate),
:mod:`.odata` (keys, binds, filters), :mod:`.metadata` (typed table metadata, provisioning
bodies), :mod:`.pacing` (per-app-user gate and pool). I/O: :mod:`.auth` (msal),
:mod:`.transport` (auth, pacing, retry, ``$batch``) and the namespaces :mod:`.rows`,
:mod:`.changes`, :mod:`.schema` that :mod:`.client` puts together. Build a client from settings
with ``DataverseClient.from_settings(settings.dataverse)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamics_bridge._lazy import attach

if TYPE_CHECKING:  # imported on first use (PEP 562), so the pure modules stay pure
    from dynamics_bridge.dataverse.batch import (
        BatchPart,
        BatchRequest,
        BatchResult,
        ChangeSet,
        OperationResult,
    )
    from dynamics_bridge.dataverse.client import (
        DataverseClient,
        Delta,
        RowResult,
    )
    from dynamics_bridge.dataverse.metadata import AlternateKey, ChoiceOption, Column, Table
    from dynamics_bridge.dataverse.odata import bind, bind_path, key_literal, key_path, odata_in
    from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserLane, AppUserPool
    from dynamics_bridge.dataverse.policy import classify
    from dynamics_bridge.http_policy import should_retry, sleep_for

__all__ = [
    "AlternateKey",
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

if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, __file__)
