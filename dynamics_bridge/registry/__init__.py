"""Population registers: SPAR PersonSok over SOAP (zeep), for member address checks.

Pure parts (no I/O): :mod:`.spar_mapping` (the answer as plain data -> :class:`AddressRecord`)
and :mod:`.spar_errors`. I/O: :mod:`.spar_contract` (the WSDL/XSD files, offline loading, XSD
validation) and :mod:`.spar` (the client). Build a client with
``SparClient.from_settings(load_settings().spar)`` and call ``lookup(personnummer)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamics_bridge._lazy import attach

if TYPE_CHECKING:  # imported on first use (PEP 562), so the pure modules stay pure
    from dynamics_bridge.registry.spar import SparClient, quiet_zeep_logging, session_for
    from dynamics_bridge.registry.spar_contract import BUNDLED_WSDL, SPAR_SCHEMA_URL, SparContract
    from dynamics_bridge.registry.spar_errors import (
        SparFaultError,
        SparNotFoundError,
        SparTooManyHitsError,
        SparUndantagError,
    )
    from dynamics_bridge.registry.spar_mapping import (
        AddressRecord,
        PersonName,
        PostalAddress,
        map_answer,
        spar_date,
    )

__all__ = [
    "BUNDLED_WSDL",
    "SPAR_SCHEMA_URL",
    "AddressRecord",
    "PersonName",
    "PostalAddress",
    "SparClient",
    "SparContract",
    "SparFaultError",
    "SparNotFoundError",
    "SparTooManyHitsError",
    "SparUndantagError",
    "map_answer",
    "quiet_zeep_logging",
    "session_for",
    "spar_date",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = attach(__name__, __file__)
