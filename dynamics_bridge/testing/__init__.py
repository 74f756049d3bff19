"""Helpers for tests and benchmarks that need real local parts (shipped so bench/ can use them)."""

from __future__ import annotations
