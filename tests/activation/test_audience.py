"""Consent, protected identity and the differences pushed to APSIS."""

from __future__ import annotations

from dynamics_bridge.activation.audience import (
    PushedState,
    exclusion,
    parse_state,
    plan_profile,
)

OK = {"mbr_marketingconsent": True, "mbr_protectedidentity": False}


def test_without_marketing_consent_a_member_is_excluded(config) -> None:
    audience = config.apsis.audience
    assert exclusion(OK, audience) is None
    assert exclusion({**OK, "mbr_marketingconsent": False}, audience) == "no marketing consent"
    assert exclusion({"mbr_marketingconsent": None}, audience) == "no marketing consent"


def test_protected_identity_excludes_even_with_consent(config) -> None:
    member = {**OK, "mbr_protectedidentity": True}
    assert exclusion(member, config.apsis.audience) == "protected identity"


def test_a_deceased_member_is_excluded_by_register_status(config) -> None:
    member = {**OK, "mbr_registerstatus": "deceased"}
    assert exclusion(member, config.apsis.audience) == "register status deceased"


def test_an_excluded_member_never_pushed_is_left_alone() -> None:
    plan = plan_profile(None, {"a": 1}, ["t"], "no marketing consent")
    assert not plan.sends
    assert not plan.erase


def test_an_excluded_member_pushed_before_is_erased_and_its_state_cleared() -> None:
    plan = plan_profile(
        PushedState({"a": 1}, frozenset({"t"})), {"a": 1}, ["t"], "protected identity"
    )
    assert plan.erase
    assert plan.sends
    assert plan.changed
    assert plan.state is None
    assert plan.attributes == {}
    assert plan.tags_add == ()


def test_a_new_member_is_created_with_every_attribute_that_has_a_value() -> None:
    plan = plan_profile(None, {"a": 1, "b": None}, ["t1"], None)
    assert plan.create
    assert plan.attributes == {"a": 1}
    assert plan.tags_add == ("t1",)
    assert plan.state == PushedState({"a": 1}, frozenset({"t1"}))


def test_only_differences_are_pushed() -> None:
    before = PushedState({"a": 1, "b": "x", "c": 3}, frozenset({"t1", "t2"}))
    plan = plan_profile(before, {"a": 1, "b": "y", "c": None}, ["t2", "t3"], None)
    assert not plan.create
    assert plan.attributes == {"b": "y", "c": None}  # None clears c in APSIS
    assert plan.tags_add == ("t3",)
    assert plan.tags_remove == ("t1",)


def test_nothing_differs_nothing_is_sent() -> None:
    before = PushedState({"a": 1}, frozenset({"t1"}))
    plan = plan_profile(before, {"a": 1}, ["t1"], None)
    assert not plan.sends
    assert not plan.changed


def test_the_state_column_round_trips_and_garbage_means_never_pushed() -> None:
    state = PushedState({"a": 1, "d": "2026-01-01"}, frozenset({"x"}))
    assert parse_state(state.to_text()) == state
    assert parse_state(None) is None
    assert parse_state("not json") is None
