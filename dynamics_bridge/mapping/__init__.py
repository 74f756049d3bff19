"""Field mappings in config: models, loader, JSON Schema export, and planning of writes."""

from __future__ import annotations

from dynamics_bridge.mapping.apply import MemberPlan, key_literal, payment_row, plan_member_update
from dynamics_bridge.mapping.loader import DEFAULT_MAPPING, load_mapping, parse_mapping
from dynamics_bridge.mapping.models import MappingFile

__all__ = [
    "DEFAULT_MAPPING",
    "MappingFile",
    "MemberPlan",
    "key_literal",
    "load_mapping",
    "parse_mapping",
    "payment_row",
    "plan_member_update",
]
