"""Winback themes on a register with four planted leaver groups: found, described, assigned
to, and recognised again in the next run."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

import pytest
from sklearn.metrics import adjusted_rand_score

from dynamics_bridge.errors import ConfigError, InputError
from dynamics_bridge.retention.features import add_months
from dynamics_bridge.retention.records import MemberHistory, TooLittleHistory
from dynamics_bridge.retention.survival import survival_curve
from dynamics_bridge.retention.synthetic import SyntheticRegister
from dynamics_bridge.retention.themes import (
    ThemeConfig,
    ThemeModel,
    fit_themes,
    match_previous,
    recent_leavers,
)

from .conftest import TODAY


@pytest.fixture(scope="module")
def themes(register: SyntheticRegister) -> ThemeModel:
    curve = survival_curve(register.members, TODAY, register.observed_from)
    return fit_themes(register.members, TODAY, curve=curve)


def ari(register: SyntheticRegister, assigned: Mapping[str, str]) -> float:
    ids = list(assigned)
    return float(adjusted_rand_score([register.groups[i] for i in ids], [assigned[i] for i in ids]))


def theme_of_group(register: SyntheticRegister, assigned: Mapping[str, str]) -> dict[str, str]:
    """Planted group -> the theme most of its leavers are in."""
    votes: dict[str, Counter[str]] = {}
    for member_id, theme in assigned.items():
        votes.setdefault(register.groups[member_id], Counter())[theme] += 1
    return {group: counted.most_common(1)[0][0] for group, counted in votes.items()}


def test_themes_recover_the_planted_leaver_groups(
    register: SyntheticRegister, themes: ThemeModel
) -> None:
    leavers = recent_leavers(register.members, TODAY, 12)
    assert themes.leavers == len(leavers) > 1000
    assert len(themes.themes) == 4  # chosen by silhouette among 2..8
    assert max(themes.silhouettes, key=lambda k: themes.silhouettes[k]) == 4
    assigned = themes.assign(leavers)
    assert ari(register, assigned) >= 0.7
    assert len(set(theme_of_group(register, assigned).values())) == 4


def test_each_theme_is_described_by_what_sets_it_apart(
    register: SyntheticRegister, themes: ThemeModel
) -> None:
    assert [t.id for t in themes.themes] == ["t1", "t2", "t3", "t4"]  # largest first
    assert sum(t.size for t in themes.themes) == themes.leavers
    assert [t.size for t in themes.themes] == sorted((t.size for t in themes.themes), reverse=True)
    by_choice = {t.reasons[0][0]: t for t in themes.themes}
    assert set(by_choice) == {"too_expensive", "dissatisfied", "changed_job", "retired"}
    price = by_choice["too_expensive"]
    assert price.top_features[0][0] in {"reason=too_expensive", "text=too_expensive"}
    assert price.top_features[0][1] > 1.0  # a standardised mean difference, well apart
    assert {"avgiften", "medlemsavgiften", "dyrt"} & set(price.words)
    assert {"pension", "pensionär"} & set(by_choice["retired"].words)
    # How they paid and took part, as planted: price leavers missed payments, service
    # leavers took little part.
    assert any(n.startswith("payments.missed") and v > 0.2 for n, v in price.behaviour)
    service = by_choice["dissatisfied"].behaviour
    assert any(
        (n.startswith("engagement.") and n.endswith("_365d") and v < -0.2)
        or (n == "engagement.none_365d" and v > 0.2)
        for n, v in service
    )
    assert all(t.mean_value is not None and t.mean_value > 0 for t in themes.themes)
    assert all(" " not in w for t in themes.themes for w in t.words)  # words, never texts


def test_new_leavers_are_assigned_to_the_existing_themes(register: SyntheticRegister) -> None:
    earlier = add_months(TODAY, -4)
    model = fit_themes(register.members, earlier)
    newer = [m for m in register.members if m.ended_on is not None and m.ended_on >= earlier]
    assert len(newer) > 300
    assigned = model.assign(newer)
    assert set(assigned.values()) <= set(model.ids)
    assert ari(register, assigned) >= 0.7


def test_a_leaver_with_a_vague_choice_is_placed_by_the_words_of_the_text(
    register: SyntheticRegister, themes: ThemeModel
) -> None:
    leavers = recent_leavers(register.members, TODAY, 12)
    price = theme_of_group(register, themes.assign(leavers))["price"]
    vague = dataclasses.replace(
        leavers[0], member_id="v", reason="other", reason_text="Avgiften blev för dyr för mig"
    )
    silent = dataclasses.replace(vague, member_id="s", reason=None, reason_text=None)
    placed = themes.assign([vague, silent])
    assert placed["v"] == price
    assert placed["s"] in themes.ids  # no reason at all: placed by behaviour alone


def test_theme_ids_stay_stable_between_runs(
    register: SyntheticRegister, themes: ThemeModel
) -> None:
    """A refit three months earlier (other leavers, another seed) numbers its themes by its
    own sizes; matched to this run's themes, each planted group keeps its theme id."""
    before = fit_themes(register.members, add_months(TODAY, -3), ThemeConfig(random_state=7))
    leavers = recent_leavers(register.members, TODAY, 12)
    now = theme_of_group(register, themes.assign(leavers))
    shuffled = themes.relabel(list(reversed(themes.ids)))
    assert theme_of_group(register, shuffled.assign(leavers)) != now
    matched = match_previous(themes, shuffled)
    assert theme_of_group(register, matched.assign(leavers)) == now
    earlier = theme_of_group(register, before.assign(leavers))
    rematched = match_previous(before, themes)
    assert theme_of_group(register, rematched.assign(leavers)) == earlier


def test_a_theme_without_a_match_gets_a_fresh_id_never_used_before(
    register: SyntheticRegister, themes: ThemeModel
) -> None:
    three = fit_themes(register.members, TODAY, ThemeConfig(k_min=3, k_max=3))
    assert three.ids == ("t1", "t2", "t3")
    four = match_previous(three, themes)
    assert sorted(four.ids) == ["t1", "t2", "t3", "t4"]
    assert four.next_number == 5
    apart = match_previous(three, themes, max_distance=1e-6)  # nothing is that close
    assert set(apart.ids) == {"t4", "t5", "t6", "t7"}
    assert apart.next_number == 8


def test_an_empty_reason_column_is_a_clear_error(register: SyntheticRegister) -> None:
    blank = [
        dataclasses.replace(m, reason=None, reason_text="  " if i % 2 else None)
        for i, m in enumerate(register.members)
    ]
    with pytest.raises(TooLittleHistory, match=r"leaving reason is empty for all \d+ members"):
        fit_themes(blank, TODAY)


def test_too_few_leavers_is_a_clear_error(register: SyntheticRegister) -> None:
    with pytest.raises(TooLittleHistory, match=r"only \d+ member\(s\) left .* at least 5000"):
        fit_themes(register.members, TODAY, ThemeConfig(min_leavers=5000))


def test_texts_without_choices_still_make_themes(register: SyntheticRegister) -> None:
    """No reason choice mapped, only the free text: the words themselves are the block. Each
    planted group writes in several phrasings that share few words, so without the choices to
    tie them the themes are phrasings: better than chance, far from the groups."""
    texts_only: Sequence[MemberHistory] = [
        dataclasses.replace(m, reason=None) for m in recent_leavers(register.members, TODAY, 12)
    ]
    model = fit_themes(texts_only, TODAY)
    assert model.reasons == ()
    assert all(name.startswith("word=") for name in model.text_names)
    assert 2 <= len(model.themes) <= 8
    assert ari(register, model.assign(texts_only)) > 0.1


def test_serialisation_round_trip_assigns_identically(
    register: SyntheticRegister, themes: ThemeModel
) -> None:
    loaded = ThemeModel.from_bytes(themes.to_bytes())
    assert loaded.themes == themes.themes
    assert loaded.next_number == themes.next_number
    leavers = recent_leavers(register.members, TODAY, 12)
    assert loaded.assign(leavers) == themes.assign(leavers)
    with pytest.raises(InputError, match="not a stored theme model"):
        ThemeModel.from_bytes(b"\x00garbage")


def test_only_leavers_can_be_assigned(register: SyntheticRegister, themes: ThemeModel) -> None:
    stayer = next(m for m in register.members if m.ended_on is None)
    with pytest.raises(InputError, match=f"member {stayer.member_id} has not left"):
        themes.assign([stayer])


def test_bad_theme_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="k_min <= k_max"):
        ThemeConfig(k_min=5, k_max=3)


def test_recent_leavers_are_those_of_the_last_months(register: SyntheticRegister) -> None:
    leavers = recent_leavers(register.members, TODAY, 12)
    since = date(2025, 11, 28)
    assert all(since <= m.ended_on < TODAY for m in leavers if m.ended_on)
    assert len(leavers) == sum(
        1 for m in register.members if m.ended_on and since <= m.ended_on < TODAY
    )
    assert TODAY - timedelta(days=366) < since
