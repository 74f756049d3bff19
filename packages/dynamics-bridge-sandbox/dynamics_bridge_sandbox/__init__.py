"""Local stand-ins for Entra ID and the Dataverse Web API, for the demo, tests and benchmarks."""

from __future__ import annotations
