"""Field mappings in config: models, loader, JSON Schema export, and planning of writes."""

from __future__ import annotations

from dynamics_bridge.mapping.apply import (
    MemberPlan,
    ReplayStep,
    event_order,
    key_literal,
    out_of_order,
    payment_row,
    plan_member_update,
    plan_replay,
    state_columns,
)
from dynamics_bridge.mapping.loader import DEFAULT_MAPPING, load_mapping, parse_mapping
from dynamics_bridge.mapping.models import MappingFile

__all__ = [
    "DEFAULT_MAPPING",
    "MappingFile",
    "MemberPlan",
    "ReplayStep",
    "event_order",
    "key_literal",
    "load_mapping",
    "out_of_order",
    "parse_mapping",
    "payment_row",
    "plan_member_update",
    "plan_replay",
    "state_columns",
]
