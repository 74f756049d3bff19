"""The embedded demo: the main job end to end on local parts, no tenant needed."""

from __future__ import annotations
