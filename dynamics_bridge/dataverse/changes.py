"""Change tracking, as ``client.changes``: rows new or changed and ids deleted since a delta link
(Dataverse's ``Prefer: odata.track-changes``), for the address refresh and the activation jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dynamics_bridge.dataverse.transport import Transport
from dynamics_bridge.errors import NotFoundError, PermanentError

__all__ = ["Changes", "Delta"]

log = logging.getLogger(__name__)


@dataclass
class Delta:
    """One change-tracking read: rows new or changed, ids deleted, and the link for next time.

    ``resynced``: the old delta link was refused (expired), so this is a full read.
    """

    changed: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    delta_link: str = ""
    resynced: bool = False


class Changes:
    """Change-tracking reads over one transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def since(
        self,
        entity_set: str,
        select: Sequence[str],
        delta_link: str | None = None,
        *,
        resync_on_expired: bool = True,
    ) -> Delta:
        """Rows changed and ids deleted since ``delta_link`` (None: every row), and the next link.

        A delta link Dataverse refuses (older than ``ExpireChangeTrackingInDays``) falls back to
        a full read with ``resynced=True`` unless ``resync_on_expired`` is off.
        """
        if delta_link:
            try:
                return self._delta(delta_link, None)
            except PermanentError as exc:
                if not resync_on_expired or isinstance(exc, NotFoundError):
                    raise
                log.warning(
                    "Dataverse refused a delta link (%s): reading %s again",
                    exc.code,
                    entity_set,
                    extra={"table": entity_set, "request_id": exc.request_id},
                )
                delta = self._delta(entity_set, {"$select": ",".join(select)})
                delta.resynced = True
                return delta
        return self._delta(entity_set, {"$select": ",".join(select)})

    def _delta(self, url: str, params: dict[str, str] | None) -> Delta:
        delta = Delta()
        page_size = self.transport.settings.page_size
        headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={page_size}"}
        while True:
            body = self.transport.request("GET", url, params=params, headers=headers).json()
            for row in body.get("value", []):
                if "$deletedEntity" in str(row.get("@odata.context", "")):
                    delta.deleted.append(str(row.get("id")))
                else:
                    delta.changed.append(row)
            if body.get("@odata.nextLink"):
                url, params = body["@odata.nextLink"], None
                continue
            delta.delta_link = str(body.get("@odata.deltaLink", ""))
            return delta
