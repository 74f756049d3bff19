"""Winback themes: what the members who left recently have in common, by cluster analysis.

Pure (numpy, scikit-learn, scipy). The members who left in the last ``months`` are described by
three blocks, each of about unit length, so that none drowns the others by its column count:

- the leaving reason's choice, one-hot (a vague choice such as ``other`` counts as none);
- the free text, read in terms of the choices: TF-IDF over a small Swedish vocabulary (stop
  words out), each word standing for the choices of the leavers who used it (smoothed
  co-occurrence). Phrasings that share no word but come with the same choice land together,
  and a text without a choice, or with ``other``, is placed by what its words usually mean.
  With no informative choice at all, the TF-IDF words themselves are the block;
- how they paid, took part and how long they stayed up to leaving (the churn features'
  ``payments``, ``engagement`` and ``tenure`` groups on their leaving day), standardised.

K-means clusters them; the number of clusters is the one with the best silhouette within
bounds (on samples, so a large register takes seconds). Each theme is described by what sets it
apart: the named features (``reason=…``, ``text=…``, ``word=…``, behaviour) whose means differ
most from the other leavers' (standardised mean difference), its common choices and words, its
size and its members' mean lifetime value. The free text stays inside the model's vocabulary
and these summaries: no member's text is kept, nothing is pushed anywhere.

The fitted vocabulary, word meanings, scaling and centroids are kept (and serialise to bytes,
no pickle), so new leavers are assigned to the existing themes by the nearest centroid; after
a refit, :func:`match_previous` gives the new themes the ids of the old ones they match
(Hungarian assignment on centroid distance), so a theme's id, and the name, priority and
message an admin gives it, survive the next run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import normalize

from dynamics_bridge.errors import ConfigError, InputError
from dynamics_bridge.mapping.retention import has_reason
from dynamics_bridge.retention.archive import pack, unpack
from dynamics_bridge.retention.features import FeatureBuilder, HistoryArrays, add_months
from dynamics_bridge.retention.records import MemberHistory, TooLittleHistory
from dynamics_bridge.retention.survival import MONTH_DAYS, SurvivalCurve

__all__ = [
    "BEHAVIOUR_GROUPS",
    "FORMAT",
    "FORMAT_VERSION",
    "SWEDISH_STOP_WORDS",
    "Theme",
    "ThemeConfig",
    "ThemeModel",
    "fit_themes",
    "match_previous",
    "recent_leavers",
]

FORMAT = "dynamics_bridge.retention.themes"
FORMAT_VERSION = 1
BEHAVIOUR_GROUPS = ("payments", "tenure", "engagement")
TOKEN = r"(?u)\b[^\W\d_]{2,}\b"  # noqa: S105 (words of two letters or more, å, ä, ö included)
FloatArray = npt.NDArray[np.float64]

_STOP_WORDS = """
alla allt att av blev bli blir bara de dem den denna deras dess det detta dig din dina ditt du
där då efter ej eller en er era ert ett från för ha hade han hans har henne hennes hon honom hur
här i icke ingen inom inte jag ju kan kunde man med mellan men mig min mina mitt mot mycket ni nu
när någon något några och om oss på samma sedan sig sin sina sitta själv skulle som så sådan
sådana till under upp ut utan vad var vara varför varit varje vars vart vem vi vid vilka vilken
vilket vår våra vårt än är åt över också mer just nog hej tack mvh ok okej tyvärr helt enkelt
"""
SWEDISH_STOP_WORDS = frozenset(_STOP_WORDS.split())
"""Common Swedish words (and greetings) that say nothing about why a member left."""


@dataclass(frozen=True)
class ThemeConfig:
    """How to find themes: which leavers (the last ``months``), the cluster count bounds, the
    vocabulary, the choices that say nothing, the samples for speed and the blocks' weights."""

    months: int = 12
    k_min: int = 2
    k_max: int = 8
    min_leavers: int = 30
    max_words: int = 200
    min_word_leavers: int = 3
    vague_reasons: tuple[str, ...] = ("other",)
    fit_sample: int = 20_000
    silhouette_sample: int = 4_000
    reason_weight: float = 1.0
    text_weight: float = 1.0
    behaviour_weight: float = 0.5
    smoothing: float = 1.0
    random_state: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 2 <= self.k_min <= self.k_max:
            problems.append(f"need 2 <= k_min <= k_max, not {self.k_min} and {self.k_max}")
        if self.months < 1:
            problems.append(f"months must be at least 1, not {self.months}")
        if min(self.reason_weight, self.text_weight, self.behaviour_weight) < 0:
            problems.append("the block weights may not be negative")
        if self.smoothing <= 0:
            problems.append(f"smoothing must be positive, not {self.smoothing}")
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class Theme:
    """One cluster of leavers. ``top_features`` are (feature, standardised mean difference
    against the other leavers), largest difference first: ``reason=too_expensive``,
    ``text=too_expensive``, ``word=avgiften``, ``payments.missed_365d``; ``behaviour`` the
    same for the behaviour features alone (reasons set themes apart most, and would hide how
    their members paid and took part). ``profile`` is the theme's mean in those named terms,
    which is what lets a later run recognise it."""

    id: str
    size: int
    share: float
    top_features: tuple[tuple[str, float], ...]
    behaviour: tuple[tuple[str, float], ...]
    reasons: tuple[tuple[str, int], ...]
    words: tuple[str, ...]
    mean_value: float | None
    profile: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "size": self.size,
            "share": self.share,
            "top_features": [list(p) for p in self.top_features],
            "behaviour": [list(p) for p in self.behaviour],
            "reasons": [list(p) for p in self.reasons],
            "words": list(self.words),
            "mean_value": self.mean_value,
            "profile": dict(self.profile),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Theme:
        return cls(
            id=str(raw["id"]),
            size=int(raw["size"]),
            share=float(raw["share"]),
            top_features=tuple((str(n), float(v)) for n, v in raw["top_features"]),
            behaviour=tuple((str(n), float(v)) for n, v in raw["behaviour"]),
            reasons=tuple((str(n), int(v)) for n, v in raw["reasons"]),
            words=tuple(raw["words"]),
            mean_value=None if raw["mean_value"] is None else float(raw["mean_value"]),
            profile={str(k): float(v) for k, v in raw["profile"].items()},
        )


def recent_leavers(
    members: Sequence[MemberHistory], as_of: date, months: int
) -> list[MemberHistory]:
    """The members who left in the ``months`` before ``as_of``."""
    since = add_months(as_of, -months)
    return [m for m in members if m.ended_on is not None and since <= m.ended_on < as_of]


@dataclass(frozen=True, eq=False)
class ThemeModel:
    """Fitted themes, and what places a leaver among them: the informative choices, the
    vocabulary with its IDF and each word's meaning (``text_map``: word -> text block
    column, named by ``text_names``), the behaviour features and their scaling, and the
    centroids (one row per theme, in :attr:`themes` order)."""

    themes: tuple[Theme, ...]
    centroids: FloatArray
    reasons: tuple[str, ...]
    vocabulary: tuple[str, ...]
    idf: FloatArray
    text_names: tuple[str, ...]
    text_map: FloatArray
    behaviour: FeatureBuilder
    behaviour_mean: FloatArray
    behaviour_scale: FloatArray
    weights: tuple[float, float, float]
    silhouettes: Mapping[int, float]
    fitted_on: date
    leavers: int
    next_number: int = 1

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.themes)

    @property
    def silhouette(self) -> float:
        return self.silhouettes[len(self.themes)]

    @property
    def names(self) -> list[str]:
        """The named features themes are described by (and matched on)."""
        return [
            *(f"reason={r}" for r in self.reasons),
            *self.text_names,
            *(f"word={w}" for w in self.vocabulary),
            *self.behaviour.names,
        ]

    def choices(self, members: Sequence[MemberHistory]) -> FloatArray:
        """The informative choice, one-hot (vague or unknown choices: all zero)."""
        index = {r: i for i, r in enumerate(self.reasons)}
        found = np.zeros((len(members), len(self.reasons)))
        for row, member in enumerate(members):
            if member.reason in index:
                found[row, index[member.reason]] = 1.0
        return found

    def words(self, members: Sequence[MemberHistory]) -> FloatArray:
        """The free texts as TF-IDF over the vocabulary (unit length; zero for no word)."""
        if not self.vocabulary:
            return np.zeros((len(members), 0))
        counts = CountVectorizer(
            vocabulary={w: i for i, w in enumerate(self.vocabulary)}, token_pattern=TOKEN
        ).transform([m.reason_text or "" for m in members])
        found: FloatArray = normalize(counts.multiply(self.idf).tocsr()).toarray()
        return found

    def texts(self, words: FloatArray) -> FloatArray:
        """The texts in terms of the word meanings (unit length; zero for no known word)."""
        found: FloatArray = normalize(words @ self.text_map)
        return found

    def completed(
        self, choices: FloatArray, texts: FloatArray
    ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """Each block filled in from the other where it is missing (a text's meaning stands
        for a missing choice, a choice for a missing text: both are in terms of the choices),
        and which leavers have a reason at all. Without that, leavers who wrote nothing
        would form a theme of their own, apart from those who chose the same and wrote."""
        has_choice = choices.sum(axis=1) > 0
        has_text = np.abs(texts).sum(axis=1) > 0
        if self.text_names == tuple(f"text={r}" for r in self.reasons):
            choices, texts = (
                np.where((has_text & ~has_choice)[:, None], texts, choices),
                np.where((has_choice & ~has_text)[:, None], choices, texts),
            )
        return choices, texts, has_choice | has_text

    def behaviour_of(self, members: Sequence[MemberHistory]) -> FloatArray:
        """The behaviour features of leavers on their leaving day (unscaled)."""
        missing = [m.member_id for m in members if m.ended_on is None]
        if missing:
            raise InputError(f"member {missing[0]} has not left: themes are for leavers")
        data = HistoryArrays.from_records(members)
        found: FloatArray = self.behaviour.build(data, data.ended).astype(np.float64)
        return found

    def place(self, choices: FloatArray, texts: FloatArray, behaviour: FloatArray) -> FloatArray:
        """The blocks (or their means) in the clustering space."""
        reason_weight, text_weight, behaviour_weight = self.weights
        scaled = (behaviour - self.behaviour_mean) / self.behaviour_scale
        width = max(behaviour.shape[1], 1)
        return np.hstack(
            [
                reason_weight * choices,
                text_weight * texts,
                behaviour_weight / np.sqrt(width) * scaled,
            ]
        )

    def vectors(self, members: Sequence[MemberHistory]) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """The leavers in the clustering space (where the centroids are), and which of them
        gave a reason (choice or text)."""
        choices, texts, known = self.completed(
            self.choices(members), self.texts(self.words(members))
        )
        return self.place(choices, texts, self.behaviour_of(members)), known

    def _nearest(self, vectors: FloatArray, known: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """The nearest centroid; for a leaver who gave no reason, by behaviour alone."""
        behaviour = slice(vectors.shape[1] - len(self.behaviour.names), vectors.shape[1])
        found = np.empty(vectors.shape[0], np.int64)
        for rows, columns in ((known, slice(None)), (~known, behaviour)):
            if rows.any():
                found[rows] = _argmin_distance(
                    vectors[rows][:, columns], self.centroids[:, columns]
                )
        return found

    def assign(self, members: Sequence[MemberHistory]) -> dict[str, str]:
        """Leaver id -> the id of the nearest theme."""
        found: dict[str, str] = {}
        for start in range(0, len(members), 50_000):
            chunk = members[start : start + 50_000]
            nearest = self._nearest(*self.vectors(chunk)).tolist()
            found.update(
                (m.member_id, self.themes[i].id) for m, i in zip(chunk, nearest, strict=True)
            )
        return found

    def project(self, profile: Mapping[str, float]) -> FloatArray:
        """A profile (a theme's named means) in this model's space: choices and text meanings
        by name (one this model does not know drops out), behaviour scaled as this model
        scales it. Each block is linear in its means, so a theme's own profile projects onto
        the mean of its members' vectors, its centroid."""

        def row(names: Sequence[str]) -> FloatArray:
            return np.array([[profile.get(n, 0.0) for n in names]])

        projected: FloatArray = self.place(
            row([f"reason={r}" for r in self.reasons]),
            row(self.text_names),
            row(self.behaviour.names),
        )[0]
        return projected

    def relabel(self, ids: Sequence[str]) -> ThemeModel:
        """The same themes under other ids (in the same order)."""
        if len(set(ids)) != len(ids) or len(ids) != len(self.themes):
            raise InputError(f"theme ids must be distinct, one per theme: {list(ids)}")
        themes = tuple(replace(t, id=i) for t, i in zip(self.themes, ids, strict=True))
        return replace(self, themes=themes)

    def to_dict(self) -> dict[str, Any]:
        """The themes and how they were found, for the report and the stored JSON."""
        return {
            "fitted_on": self.fitted_on.isoformat(),
            "leavers": self.leavers,
            "next_number": self.next_number,
            "silhouettes": {str(k): v for k, v in self.silhouettes.items()},
            "themes": [t.to_dict() for t in self.themes],
        }

    def to_bytes(self) -> bytes:
        """The model as a numpy archive of arrays and a JSON header, no pickle."""
        meta = {
            **self.to_dict(),
            "reasons": list(self.reasons),
            "vocabulary": list(self.vocabulary),
            "text_names": list(self.text_names),
            "behaviour_groups": list(self.behaviour.groups),
            "activity_kinds": list(self.behaviour.activity_kinds or ()),
            "weights": list(self.weights),
        }
        return pack(
            FORMAT,
            FORMAT_VERSION,
            meta,
            centroids=self.centroids,
            idf=self.idf,
            text_map=self.text_map,
            behaviour_mean=self.behaviour_mean,
            behaviour_scale=self.behaviour_scale,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ThemeModel:
        """A model saved by :meth:`to_bytes`; anything else is an :class:`InputError`."""
        meta, arrays = unpack(
            raw, FORMAT, FORMAT_VERSION, what="theme model", again="fit the themes again"
        )
        try:
            reason_weight, text_weight, behaviour_weight = (float(w) for w in meta["weights"])
            return cls(
                themes=tuple(Theme.from_dict(t) for t in meta["themes"]),
                centroids=arrays["centroids"],
                reasons=tuple(meta["reasons"]),
                vocabulary=tuple(meta["vocabulary"]),
                idf=arrays["idf"],
                text_names=tuple(meta["text_names"]),
                text_map=arrays["text_map"],
                behaviour=FeatureBuilder(
                    groups=tuple(meta["behaviour_groups"]),
                    levels={},
                    activity_kinds=tuple(meta["activity_kinds"]),
                ),
                behaviour_mean=arrays["behaviour_mean"],
                behaviour_scale=arrays["behaviour_scale"],
                weights=(reason_weight, text_weight, behaviour_weight),
                silhouettes={int(k): float(v) for k, v in meta["silhouettes"].items()},
                fitted_on=date.fromisoformat(meta["fitted_on"]),
                leavers=int(meta["leavers"]),
                next_number=int(meta["next_number"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"a stored theme model is incomplete: {error!r}") from None


def _vocabulary(texts: list[str], config: ThemeConfig) -> tuple[tuple[str, ...], FloatArray]:
    """The most frequent words (no stop words) written by at least ``min_word_leavers``
    leavers and by at most half of them, with their IDF; none when no text has one."""
    with_text = sum(1 for t in texts if t.strip())
    if with_text == 0:
        return (), np.zeros(0)
    counter = CountVectorizer(
        token_pattern=TOKEN,
        stop_words=sorted(SWEDISH_STOP_WORDS),
        max_features=config.max_words,
        min_df=min(config.min_word_leavers, with_text),
        max_df=0.5,
    )
    try:
        counts = counter.fit_transform(texts)
    except ValueError:  # every word a stop word, or too rare
        return (), np.zeros(0)
    words = tuple(str(w) for w in counter.get_feature_names_out())
    return words, np.asarray(TfidfTransformer().fit(counts).idf_, np.float64)


def _meanings(
    words: FloatArray, choices: FloatArray, reasons: tuple[str, ...], smoothing: float
) -> tuple[tuple[str, ...], FloatArray]:
    """What each word stands for: the share of each choice among the leavers who wrote it
    (TF-IDF weighted, smoothed towards the choices' overall shares). With no leaver having
    both a word and an informative choice, each word stands for itself."""
    both = (choices.sum(axis=1) > 0) & (words.sum(axis=1) > 0)
    if not reasons or not both.any():
        return (), np.eye(words.shape[1])
    weight, chosen = words[both], choices[both]
    prior = chosen.mean(axis=0)
    meaning = (weight.T @ chosen + smoothing * prior) / (weight.sum(axis=0)[:, None] + smoothing)
    return tuple(f"text={r}" for r in reasons), meaning


def _argmin_distance(vectors: FloatArray, centroids: FloatArray) -> npt.NDArray[np.int64]:
    distances = (
        (vectors**2).sum(axis=1)[:, None]
        - 2 * vectors @ centroids.T
        + (centroids**2).sum(axis=1)[None, :]
    )
    found: npt.NDArray[np.int64] = distances.argmin(axis=1)
    return found


def _smd(inside: FloatArray, outside: FloatArray) -> FloatArray:
    """Standardised mean difference per column (0 where neither side varies)."""
    pooled = np.sqrt((inside.var(axis=0) + outside.var(axis=0)) / 2)
    difference = inside.mean(axis=0) - outside.mean(axis=0)
    found: FloatArray = np.where(pooled > 1e-12, difference / np.where(pooled > 0, pooled, 1), 0)
    return found


def _sample(size: int, most: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    if size <= most:
        return np.arange(size)
    found: npt.NDArray[np.int64] = np.sort(rng.choice(size, most, replace=False))
    return found


def _choose_k(
    vectors: FloatArray, config: ThemeConfig, rng: np.random.Generator
) -> tuple[FloatArray, dict[int, float]]:
    """K-means for each k within bounds (on a sample); the centroids of the k with the best
    silhouette, and every k's silhouette."""
    sample = vectors[_sample(vectors.shape[0], config.fit_sample, rng)]
    scores: dict[int, float] = {}
    fitted: dict[int, FloatArray] = {}
    for k in range(config.k_min, min(config.k_max, sample.shape[0] - 1) + 1):
        kmeans = KMeans(n_clusters=k, n_init=4, random_state=config.random_state).fit(sample)
        if len(set(kmeans.labels_.tolist())) < 2:
            continue
        scores[k] = float(
            silhouette_score(
                sample,
                kmeans.labels_,
                sample_size=min(config.silhouette_sample, sample.shape[0]),
                random_state=config.random_state,
            )
        )
        fitted[k] = np.asarray(kmeans.cluster_centers_, np.float64)
    if not scores:
        raise TooLittleHistory("the leavers could not be told apart: every one looks the same")
    best = max(scores, key=lambda k: (scores[k], -k))
    return fitted[best], scores


def fit_themes(
    members: Sequence[MemberHistory],
    as_of: date,
    config: ThemeConfig | None = None,
    *,
    curve: SurvivalCurve | None = None,
) -> ThemeModel:
    """Themes of the members who left in the ``config.months`` before ``as_of``.

    ``curve`` (the register's retention curve) gives each theme the mean lifetime value of its
    leavers had they stayed: expected remaining months at their tenure on leaving x fee.
    Raises :class:`TooLittleHistory` for fewer than ``min_leavers`` leavers or when none of
    them has a leaving reason (the reason columns are empty or not mapped).
    """
    config = config or ThemeConfig()
    leavers = recent_leavers(members, as_of, config.months)
    since = add_months(as_of, -config.months)
    least = max(config.min_leavers, config.k_min + 1)
    if len(leavers) < least:
        raise TooLittleHistory(
            f"only {len(leavers)} member(s) left between {since} and {as_of}; themes need at "
            f"least {least} (min_leavers)"
        )
    if not any(has_reason(m.reason, m.reason_text) for m in leavers):
        raise TooLittleHistory(
            f"the leaving reason is empty for all {len(leavers)} members who left between "
            f"{since} and {as_of} (no choice, no text): map the reason columns and have the "
            "reason recorded when a member leaves; themes cluster on it"
        )
    rng = np.random.default_rng(config.random_state)
    data = HistoryArrays.from_records(leavers)
    behaviour = FeatureBuilder(groups=BEHAVIOUR_GROUPS).fit(data)
    raw = behaviour.build(data, data.ended).astype(np.float64)
    scale = raw.std(axis=0)
    scale[scale < 1e-9] = 1.0
    vague = set(config.vague_reasons)
    reasons = tuple(sorted({m.reason for m in leavers if m.reason and m.reason not in vague}))
    vocabulary, idf = _vocabulary([m.reason_text or "" for m in leavers], config)
    model = ThemeModel(
        themes=(),
        centroids=np.zeros((0, 0)),
        reasons=reasons,
        vocabulary=vocabulary,
        idf=idf,
        text_names=(),
        text_map=np.eye(len(vocabulary)),
        behaviour=behaviour,
        behaviour_mean=raw.mean(axis=0),
        behaviour_scale=scale,
        weights=(config.reason_weight, config.text_weight, config.behaviour_weight),
        silhouettes={},
        fitted_on=as_of,
        leavers=len(leavers),
    )
    choices, words = model.choices(leavers), model.words(leavers)
    text_names, text_map = _meanings(words, choices, reasons, config.smoothing)
    model = replace(
        model, text_names=text_names or tuple(f"word={w}" for w in vocabulary), text_map=text_map
    )
    choices, texts, known = model.completed(choices, model.texts(words))
    vectors = model.place(choices, texts, raw)
    # Leavers who gave no reason do not shape the themes; they join one by behaviour.
    centroids, scores = _choose_k(vectors[known], config, rng)
    labels = replace(model, centroids=centroids)._nearest(vectors, known)
    sizes = np.bincount(labels, minlength=centroids.shape[0])
    sizes[np.bincount(labels[known], minlength=sizes.size) == 0] = 0
    order = [int(c) for c in np.argsort(-sizes, kind="stable") if sizes[c] > 0]

    names = model.names
    named = np.hstack([choices, texts, words, raw])
    if model.text_names and model.text_names[0].startswith("word="):  # the words, once
        names = [*(f"reason={r}" for r in reasons), *model.text_names, *behaviour.names]
        named = np.hstack([choices, texts, raw])
    values = _values(leavers, curve)
    themes = []
    for number, cluster in enumerate(order, start=1):
        inside = labels == cluster
        smd = _smd(named[inside], named[~inside])
        top = np.argsort(-np.abs(smd))[:6]
        first = len(names) - raw.shape[1]
        doing = first + np.argsort(-np.abs(smd[first:]))[:3]
        means = named[inside & known].mean(axis=0)
        counted = Counter(m.reason or "(none)" for m, i in zip(leavers, inside, strict=True) if i)
        word_means = words[inside].mean(axis=0) if vocabulary else np.zeros(0)
        top_words = [vocabulary[i] for i in np.argsort(-word_means)[:6] if word_means[i] > 0]
        themes.append(
            Theme(
                id=f"t{number}",
                size=int(inside.sum()),
                share=float(inside.mean()),
                top_features=tuple((names[i], round(float(smd[i]), 3)) for i in top if smd[i]),
                behaviour=tuple((names[i], round(float(smd[i]), 3)) for i in doing if smd[i]),
                reasons=tuple(counted.most_common(3)),
                words=tuple(top_words),
                mean_value=None if values is None else float(values[inside].mean()),
                profile={n: float(v) for n, v in zip(names, means, strict=True) if v != 0},
            )
        )
    # The centroids are the means of each theme's members who gave a reason (K-means saw a
    # sample); they are where the themes' profiles project.
    return replace(
        model,
        themes=tuple(themes),
        centroids=np.stack([vectors[(labels == c) & known].mean(axis=0) for c in order]),
        silhouettes=scores,
        next_number=len(themes) + 1,
    )


def _values(leavers: Sequence[MemberHistory], curve: SurvivalCurve | None) -> FloatArray | None:
    if curve is None:
        return None
    tenure = np.array(
        [(m.ended_on - m.joined_on).days / MONTH_DAYS for m in leavers if m.ended_on is not None]
    )
    fees = np.array([m.monthly_fee for m in leavers])
    found: FloatArray = curve.remaining_months(tenure) * fees
    return found


_ID = re.compile(r"t(\d+)")


def match_previous(
    old: ThemeModel, new: ThemeModel, *, max_distance: float | None = None
) -> ThemeModel:
    """``new`` with the ids of the ``old`` themes it matches: both sets of themes are placed
    in the new model's space (by their profiles), and the pairs with the least total centroid
    distance are matched (Hungarian assignment). A new theme left unmatched (more themes than
    before, or farther than ``max_distance`` from its match) gets a fresh id; an old theme left
    unmatched is gone this run, and its id is not given to another theme later."""
    if not old.themes or not new.themes:
        return new
    before = np.stack([new.project(t.profile) for t in old.themes])
    after = np.stack([new.project(t.profile) for t in new.themes])
    cost = np.sqrt(((before[:, None, :] - after[None, :, :]) ** 2).sum(axis=2))
    rows, columns = linear_sum_assignment(cost)
    ids: list[str | None] = [None] * len(new.themes)
    for i, j in zip(rows.tolist(), columns.tolist(), strict=True):
        if max_distance is None or cost[i, j] <= max_distance:
            ids[j] = old.themes[i].id
    numbers = [int(m.group(1)) for t in old.themes if (m := _ID.fullmatch(t.id))]
    following = max([old.next_number, *(n + 1 for n in numbers)])
    chosen: list[str] = []
    for found in ids:
        if found is None:
            found = f"t{following}"
            following += 1
        chosen.append(found)
    return replace(new.relabel(chosen), next_number=following)
