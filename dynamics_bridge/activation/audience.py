"""Who may be marketed to, and what to change on a profile: only the differences.

Pure. A member without marketing consent, with protected identity or in an excluded register
status is never pushed; one that was pushed before (the state column holds what APSIS has) is
erased. For everyone else the desired attributes and tags are compared with that state, and only
what differs is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from dynamics_bridge.activation.config import ApsisFile, Audience

__all__ = [
    "ProfilePlan",
    "PushedState",
    "desired_attributes",
    "exclusion",
    "parse_state",
    "plan_profile",
]


@dataclass(frozen=True, slots=True)
class PushedState:
    """What APSIS holds for a member, as the bridge last pushed it."""

    attributes: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()

    def to_text(self) -> str:
        return json.dumps(
            {"a": dict(sorted(self.attributes.items())), "t": sorted(self.tags)},
            ensure_ascii=False,
            separators=(",", ":"),
        )


def parse_state(text: Any) -> PushedState | None:
    """The state column's value; None when the member was never pushed (or it is unreadable,
    which is treated the same: the next push sends everything again)."""
    if not text:
        return None
    try:
        raw = json.loads(str(text))
        return PushedState(dict(raw.get("a", {})), frozenset(raw.get("t", [])))
    except (ValueError, AttributeError, TypeError):
        return None


def exclusion(member: Mapping[str, Any], audience: Audience) -> str | None:
    """Why a member must not be marketed to, or None."""
    if audience.protected_column and member.get(audience.protected_column) is True:
        return "protected identity"
    for column, words in audience.excluded_statuses.items():
        if member.get(column) in words:
            return f"register status {member.get(column)}"
    if member.get(audience.consent_column) is not True:
        return "no marketing consent"
    return None


def _plain(value: Any) -> Any:
    if value is None or type(value) in (str, int, bool):  # the most common, at once
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def desired_attributes(
    member: Mapping[str, Any], apsis: ApsisFile, computed: Mapping[str, Any]
) -> dict[str, Any]:
    """Our attribute name -> value, from member columns (choices as words) and computed values."""
    values = {}
    for name, attribute in apsis.attributes.items():
        if attribute.column is not None:
            values[name] = _plain(member.get(attribute.column))
        else:
            values[name] = _plain(computed.get(str(attribute.computed)))
    return values


@dataclass(frozen=True, slots=True)
class ProfilePlan:
    """One member's push: erase, or create and/or these attribute values and tag changes;
    ``state`` is the state column's new value (None: clear it), ``changed`` whether it differs."""

    erase: bool = False
    create: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    tags_add: tuple[str, ...] = ()
    tags_remove: tuple[str, ...] = ()
    state: PushedState | None = None
    changed: bool = False
    excluded: str | None = None

    @property
    def sends(self) -> bool:
        return (
            self.erase or self.create or bool(self.attributes or self.tags_add or self.tags_remove)
        )


def plan_profile(
    previous: PushedState | None,
    attributes: Mapping[str, Any],
    tags: Iterable[str],
    excluded: str | None,
) -> ProfilePlan:
    """The difference between what APSIS holds and what it should hold."""
    if excluded is not None:
        erase = previous is not None
        return ProfilePlan(erase=erase, changed=erase, excluded=excluded)
    wanted = frozenset(tags)
    before = previous or PushedState()
    changed_attributes = {
        name: value for name, value in attributes.items() if before.attributes.get(name) != value
    }
    state = PushedState({k: v for k, v in attributes.items() if v is not None}, wanted)
    return ProfilePlan(
        create=previous is None,
        attributes=changed_attributes,
        tags_add=tuple(sorted(wanted - before.tags)),
        tags_remove=tuple(sorted(before.tags - wanted)),
        state=state,
        changed=previous != state,
    )
