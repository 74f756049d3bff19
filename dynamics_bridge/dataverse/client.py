"""The Dataverse Web API client: one transport and the operation namespaces over it, split the
way Microsoft's Dataverse Python SDK splits the same API.

::

    client = DataverseClient.from_settings(settings.dataverse)
    client.rows.query("contacts", select=["lastname"], filter="statecode eq 0")
    client.rows.create_only("mbr_payments", {"mbr_eventid": "e-1"}, {...})
    client.batch.execute([BatchRequest("PATCH", ...), ...])
    client.changes.since("contacts", ["address1_line1"], delta_link)
    client.schema.table("contact")

:mod:`.transport`: auth, pacing per app user, retry and ``$batch`` sending (``client.batch``);
:mod:`.rows`, :mod:`.changes`, :mod:`.schema`: what is asked. Configured by the one typed
``DataverseSettings`` section; the ``requests.Session`` is the one network seam.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from dynamics_bridge.dataverse.auth import msal_token_provider, session_for
from dynamics_bridge.dataverse.changes import Changes, Delta
from dynamics_bridge.dataverse.odata import bind, key_literal, key_path, odata_in
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserLane, AppUserPool
from dynamics_bridge.dataverse.rows import RowResult, Rows
from dynamics_bridge.dataverse.schema import Schema
from dynamics_bridge.dataverse.transport import MAX_BATCH_OPERATIONS, Batches, Transport
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.settings import AppUser, DataverseSettings

__all__ = [
    "MAX_BATCH_OPERATIONS",
    "AppUserGate",
    "DataverseClient",
    "Delta",
    "RowResult",
    "bind",
    "key_literal",
    "key_path",
    "odata_in",
]


class DataverseClient:
    """One Dataverse organisation over one or more app users: ``rows``, ``batch``, ``changes``
    and ``schema`` over one :class:`~.transport.Transport`."""

    rows: Rows
    batch: Batches
    changes: Changes
    schema: Schema

    def __init__(
        self, settings: DataverseSettings, session: requests.Session, pool: AppUserPool
    ) -> None:
        """``pool``: the app users to spread work over (``AppUserPool.single(token, gate)`` for
        one); :meth:`from_settings` builds it from the settings' app users."""
        if not settings.url:
            raise ConfigError("BRIDGE_DATAVERSE__URL: required")
        self.transport = Transport(settings, session, pool)
        self.rows = Rows(self.transport)
        self.batch = self.transport.batch
        self.changes = Changes(self.transport)
        self.schema = Schema(self.transport)

    @classmethod
    def from_settings(
        cls,
        settings: DataverseSettings,
        session: requests.Session | None = None,
        *,
        token_for: Callable[[AppUser], Callable[[], str]] | None = None,
    ) -> DataverseClient:
        """A client over every configured app user, each with its own gate and msal app."""
        if not settings.url:
            raise ConfigError("BRIDGE_DATAVERSE__URL: required")
        make_token = token_for or (lambda user: msal_token_provider(settings, user))
        users = settings.users()
        if not users:
            raise ConfigError("BRIDGE_DATAVERSE__CLIENT_ID (or __APP_USERS): required")
        pool = AppUserPool(
            [
                AppUserLane(
                    user.client_id,
                    make_token(user),
                    AppUserGate(max_concurrency=settings.max_concurrency),
                )
                for user in users
            ]
        )
        return cls(settings, session or session_for(settings), pool)

    @property
    def settings(self) -> DataverseSettings:
        return self.transport.settings

    @property
    def requests_sent(self) -> int:
        """Requests sent (retries and ``$batch`` POSTs included), for logs and benchmarks."""
        return self.transport.requests_sent

    @property
    def throttled(self) -> int:
        """429s seen over all app users."""
        return self.transport.throttled
