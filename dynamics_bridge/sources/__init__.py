"""One module per provider: verify (webhooks) and parse into canonical events. No network here."""

from __future__ import annotations
