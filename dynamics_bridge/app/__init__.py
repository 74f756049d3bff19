"""The runtime room: the only code that wires ports together (wiring), and what runs on it:
handlers, the sync loop, ingest, timer jobs, health, the poison queue and the schema export."""

from __future__ import annotations
