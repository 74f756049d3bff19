"""dynamics_bridge: Swedish payment events into Dynamics 365 member records and APSIS One."""

from __future__ import annotations

__version__ = "0.1.0"
