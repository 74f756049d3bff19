"""Adapters for payment providers' own APIs (network): the Swish API client."""

from __future__ import annotations
