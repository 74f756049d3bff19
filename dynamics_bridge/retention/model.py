"""The churn model: each active member's probability of leaving within 90 days, with reasons.

Pure (numpy, scikit-learn). Trained on the union's own history with a time split: monthly
cut-offs whose 90-day label windows all end by the split date train it, and the members active
on the split date, followed for the next 90 days, test it. Nothing after a cut-off is seen in
its features, nothing after the split in training.

The model is a logistic regression on standardised features, its probabilities calibrated on
the latest training cut-off (the period nearest to the one it will score: Platt scaling by
default). A logistic model's per-member contributions, ``weight * (value - mean) / spread``,
are honest reasons: the three largest that raise a member's risk are given as feature names.

The held-out metrics (ROC AUC, PR AUC, Brier score, a calibration table by decile) are reported
beside those of a rule of thumb, *a missed payment in the last 60 days* (its probabilities are
the leaving rates of flagged and unflagged members in training). :meth:`ChurnModel.beats_baseline`
is the gate: a model that does not beat the rule must not be used.

A model serialises to bytes (a numpy archive of plain arrays and JSON, no pickle: loading a
stored model cannot run code) with its format version, feature names and metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from dynamics_bridge.errors import ConfigError, InputError
from dynamics_bridge.retention.archive import pack, unpack
from dynamics_bridge.retention.features import (
    GROUPS,
    FeatureBuilder,
    HistoryArrays,
    Snapshots,
    active_at,
    missed_within,
    snapshots,
    training_cutoffs,
)
from dynamics_bridge.retention.records import MemberHistory, TooLittleHistory

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CalibrationBin",
    "ChurnConfig",
    "ChurnModel",
    "Evaluation",
    "MemberRisk",
    "Metrics",
    "TooLittleHistory",
    "evaluate",
    "train_churn",
]

FORMAT = "dynamics_bridge.retention.churn"
FORMAT_VERSION = 1
CALIBRATIONS = ("sigmoid", "isotonic", "none")
FloatArray = npt.NDArray[np.float64]
Members = Sequence[MemberHistory] | HistoryArrays
_SCORE_CHUNK = 200_000


@dataclass(frozen=True)
class ChurnConfig:
    """How to train: horizon, split (default: ``today`` minus the horizon, the latest date
    whose outcome is known), training cut-offs, feature groups, the least number of leavers."""

    horizon_days: int = 90
    split: date | None = None
    train_months: int = 12
    groups: tuple[str, ...] = GROUPS
    min_leavers: int = 50
    max_rows: int = 1_500_000
    calibration: str = "sigmoid"
    regularisation: float = 1.0
    baseline_days: int = 60
    random_state: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.horizon_days < 1:
            problems.append(f"horizon_days must be at least 1, not {self.horizon_days}")
        if self.train_months < 2:
            problems.append(f"train_months must be at least 2, not {self.train_months}")
        if self.calibration not in CALIBRATIONS:
            problems.append(
                f"calibration must be one of {', '.join(CALIBRATIONS)}, not {self.calibration!r}"
            )
        if self.min_leavers < 1:
            problems.append(f"min_leavers must be at least 1, not {self.min_leavers}")
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """A decile of predicted probability: how many, mean predicted, share that left."""

    low: float
    high: float
    members: int
    predicted: float
    observed: float


@dataclass(frozen=True, slots=True)
class Metrics:
    """How well scores ranked and predicted who left, on the held-out period."""

    roc_auc: float
    pr_auc: float
    brier: float
    members: int
    leavers: int
    calibration: tuple[CalibrationBin, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Metrics:
        bins = tuple(CalibrationBin(**b) for b in raw["calibration"])
        return cls(**{**raw, "calibration": bins})


def evaluate(labels: npt.ArrayLike, probabilities: npt.ArrayLike, bins: int = 10) -> Metrics:
    """ROC AUC, PR AUC (average precision), Brier score and a calibration table (equal-count
    bins of predicted probability; fewer when scores tie, as the baseline's do)."""
    y = np.asarray(labels, bool)
    p = np.asarray(probabilities, np.float64)
    if y.all() or not y.any():
        raise TooLittleHistory(
            f"the held-out period needs both members who left and members who stayed "
            f"({int(y.sum())} of {y.size} left)"
        )
    distinct = np.unique(p)
    if distinct.size <= bins:  # a score of few values (the baseline's): a bin per value
        which = np.searchsorted(distinct, p)
        lows, highs = distinct, distinct
    else:
        edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
        which = np.searchsorted(edges[1:-1], p, side="right")
        lows, highs = edges[:-1], edges[1:]
    table = []
    for b in range(lows.size):
        inside = which == b
        if inside.any():
            table.append(
                CalibrationBin(
                    low=float(lows[b]),
                    high=float(highs[b]),
                    members=int(inside.sum()),
                    predicted=float(p[inside].mean()),
                    observed=float(y[inside].mean()),
                )
            )
    return Metrics(
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        brier=float(brier_score_loss(y, p)),
        members=int(y.size),
        leavers=int(y.sum()),
        calibration=tuple(table),
    )


@dataclass(frozen=True)
class Evaluation:
    """The held-out test: the split, the training cut-offs, the model's and the baseline's
    metrics, and how much it trained on."""

    split: date
    horizon_days: int
    cutoffs: tuple[date, ...]
    model: Metrics
    baseline: Metrics
    baseline_rule: str
    train_rows: int
    train_leavers: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split.isoformat(),
            "horizon_days": self.horizon_days,
            "cutoffs": [c.isoformat() for c in self.cutoffs],
            "model": self.model.to_dict(),
            "baseline": self.baseline.to_dict(),
            "baseline_rule": self.baseline_rule,
            "train_rows": self.train_rows,
            "train_leavers": self.train_leavers,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Evaluation:
        return cls(
            split=date.fromisoformat(raw["split"]),
            horizon_days=int(raw["horizon_days"]),
            cutoffs=tuple(date.fromisoformat(c) for c in raw["cutoffs"]),
            model=Metrics.from_dict(raw["model"]),
            baseline=Metrics.from_dict(raw["baseline"]),
            baseline_rule=raw["baseline_rule"],
            train_rows=int(raw["train_rows"]),
            train_leavers=int(raw["train_leavers"]),
        )


@dataclass(frozen=True, slots=True)
class MemberRisk:
    """A member's probability of leaving within the horizon and what raises it most."""

    member_id: str
    probability: float
    reasons: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class ChurnModel:
    """A trained, calibrated churn model with its held-out evaluation."""

    builder: FeatureBuilder
    mean: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: float
    calibration: str
    calibration_x: FloatArray
    calibration_y: FloatArray
    evaluation: Evaluation
    trained_on: date

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.builder.names

    def beats_baseline(self, margin: float = 0.0) -> bool:
        """Better than the rule of thumb on both ROC AUC and PR AUC by more than ``margin``."""
        model, baseline = self.evaluation.model, self.evaluation.baseline
        return model.roc_auc > baseline.roc_auc + margin and model.pr_auc > baseline.pr_auc + margin

    def weights(self) -> list[tuple[str, float]]:
        """Feature -> weight per standard deviation, largest effect first (for the report)."""
        pairs = zip(self.feature_names, self.coef.tolist(), strict=True)
        return sorted(pairs, key=lambda pair: -abs(pair[1]))

    def _decision(self, features: npt.NDArray[np.float32]) -> FloatArray:
        z = (features - self.mean) / self.scale
        found: FloatArray = z @ self.coef + self.intercept
        return found

    def _calibrate(self, decision: FloatArray) -> FloatArray:
        if self.calibration == "sigmoid":
            a, b = self.calibration_x
            found: FloatArray = 1.0 / (1.0 + np.exp(-(a * decision + b)))
        elif self.calibration == "isotonic":
            found = np.interp(decision, self.calibration_x, self.calibration_y)
        else:
            found = 1.0 / (1.0 + np.exp(-decision))
        return found

    def predict(self, features: npt.NDArray[np.float32]) -> FloatArray:
        """Calibrated probabilities for rows of :attr:`builder` features."""
        found = np.empty(features.shape[0])
        for start in range(0, features.shape[0], _SCORE_CHUNK):
            part = features[start : start + _SCORE_CHUNK]
            found[start : start + part.shape[0]] = self._calibrate(self._decision(part))
        return found

    def score(self, members: Members, as_of: date, *, reasons: int = 3) -> list[MemberRisk]:
        """Every member active on ``as_of``: probability of leaving within the horizon, and up
        to ``reasons`` features that raise it most (none when nothing raises it).

        A one-hot column counts as one reason, named by the member's own word
        (``membership.method=invoice``): being *not* in some other level is no reason to give."""
        data = _arrays(members)
        rows = active_at(data, as_of)
        found: list[MemberRisk] = []
        names = self.feature_names
        blocks = self.builder.blocks()
        into = np.zeros((len(names), len(blocks)))
        for b, (_name, columns, _hot) in enumerate(blocks):
            into[list(columns), b] = 1.0
        for start in range(0, rows.size, _SCORE_CHUNK):
            chunk = rows[start : start + _SCORE_CHUNK]
            features = self.builder.build(data, as_of, chunk)
            contributions = (features - self.mean) / self.scale * self.coef
            probabilities = self._calibrate(contributions.sum(axis=1) + self.intercept)
            per_block = contributions @ into
            top = _top(per_block, reasons)
            labels = np.take_along_axis(_reason_columns(features, blocks), top, axis=1)
            values = np.take_along_axis(per_block, top, axis=1)
            ids = data.ids
            for row, probability, columns, block, amounts in zip(
                chunk.tolist(),
                probabilities.tolist(),
                labels.tolist(),
                top.tolist(),
                values.tolist(),
                strict=True,
            ):
                why = tuple(
                    names[c] if c >= 0 else blocks[b][0]
                    for c, b, v in zip(columns, block, amounts, strict=True)
                    if v > 0
                )
                found.append(MemberRisk(ids[row], probability, why))
        return found

    def to_bytes(self) -> bytes:
        """The model as a numpy archive: plain arrays and a JSON header, no pickle."""
        meta = {
            "feature_names": list(self.feature_names),
            "groups": list(self.builder.groups),
            "min_level_count": self.builder.min_level_count,
            "levels": {k: list(v) for k, v in (self.builder.levels or {}).items()},
            "activity_kinds": list(self.builder.activity_kinds or ()),
            "intercept": self.intercept,
            "calibration": self.calibration,
            "trained_on": self.trained_on.isoformat(),
            "evaluation": self.evaluation.to_dict(),
        }
        return pack(
            FORMAT,
            FORMAT_VERSION,
            meta,
            mean=self.mean,
            scale=self.scale,
            coef=self.coef,
            calibration_x=self.calibration_x,
            calibration_y=self.calibration_y,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ChurnModel:
        """A model saved by :meth:`to_bytes`; anything else is an :class:`InputError`."""
        meta, arrays = unpack(
            raw, FORMAT, FORMAT_VERSION, what="churn model", again="train it again"
        )
        try:
            builder = FeatureBuilder(
                groups=tuple(meta["groups"]),
                min_level_count=int(meta["min_level_count"]),
                levels={k: tuple(v) for k, v in meta["levels"].items()},
                activity_kinds=tuple(meta["activity_kinds"]),
            )
            model = cls(
                builder=builder,
                mean=arrays["mean"],
                scale=arrays["scale"],
                coef=arrays["coef"],
                intercept=float(meta["intercept"]),
                calibration=meta["calibration"],
                calibration_x=arrays["calibration_x"],
                calibration_y=arrays["calibration_y"],
                evaluation=Evaluation.from_dict(meta["evaluation"]),
                trained_on=date.fromisoformat(meta["trained_on"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"a stored churn model is incomplete: {error!r}") from None
        if list(model.feature_names) != meta["feature_names"] or model.coef.size != len(
            model.feature_names
        ):
            raise InputError("a stored churn model's features do not match its columns")
        return model


def _reason_columns(
    features: npt.NDArray[np.float32], blocks: list[tuple[str, tuple[int, ...], bool]]
) -> npt.NDArray[np.int64]:
    """Per row and block, the column that names the reason: the column itself, or for a
    one-hot block the member's word (-1 when the member has none of the block's words)."""
    found = np.empty((features.shape[0], len(blocks)), np.int64)
    for b, (_name, columns, hot) in enumerate(blocks):
        if not hot:
            found[:, b] = columns[0]
            continue
        part = features[:, list(columns)]
        found[:, b] = np.where(part.max(axis=1) > 0, np.asarray(columns)[part.argmax(axis=1)], -1)
    return found


def _top(contributions: npt.NDArray[np.float64], count: int) -> npt.NDArray[np.intp]:
    """The columns of the ``count`` largest contributions per row, largest first."""
    count = min(count, contributions.shape[1])
    if count == 0:
        return np.zeros((contributions.shape[0], 0), np.intp)
    part = np.argpartition(-contributions, count - 1, axis=1)[:, :count]
    order = np.argsort(-np.take_along_axis(contributions, part, axis=1), axis=1)
    found: npt.NDArray[np.intp] = np.take_along_axis(part, order, axis=1)
    return found


def _arrays(members: Members) -> HistoryArrays:
    return members if isinstance(members, HistoryArrays) else HistoryArrays.from_records(members)


def _baseline_rates(
    data: HistoryArrays, seen: Sequence[Snapshots], days: int
) -> tuple[float, float]:
    """Leaving rates in training of members without and with a missed payment in the last
    ``days``: the rule of thumb's probabilities."""
    members = np.zeros(2)
    left = np.zeros(2)
    for shots in seen:
        flagged = _flags(data, shots, days).astype(np.int64)
        members += np.bincount(flagged, minlength=2)
        left += np.bincount(flagged, weights=shots.labels, minlength=2)
    rates = np.divide(left, members, out=np.zeros(2), where=members > 0)
    return float(rates[0]), float(rates[1])


def _moments(features: npt.NDArray[np.float32]) -> tuple[FloatArray, FloatArray]:
    """Column means and standard deviations in float64, a slice at a time (no full copy)."""
    total = np.zeros(features.shape[1])
    squares = np.zeros(features.shape[1])
    for start in range(0, features.shape[0], _SCORE_CHUNK):
        part = features[start : start + _SCORE_CHUNK].astype(np.float64)
        total += part.sum(axis=0)
        squares += (part**2).sum(axis=0)
    count = max(features.shape[0], 1)
    mean = total / count
    scale = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    scale[scale < 1e-9] = 1.0
    return mean, scale


def _flags(data: HistoryArrays, shots: Snapshots, days: int) -> npt.NDArray[np.bool_]:
    flags = np.zeros(shots.rows.size, bool)
    for index, cutoff in enumerate(shots.cutoffs):
        at = shots.cutoff == index
        flags[at] = missed_within(data, shots.rows[at], cutoff, days) > 0
    return flags


def train_churn(members: Members, *, today: date, config: ChurnConfig | None = None) -> ChurnModel:
    """Train and test on the register read on ``today``.

    Raises :class:`TooLittleHistory` when fewer than ``min_leavers`` members left in the
    training period or the held-out period has no leaver, and :class:`ConfigError` for a split
    whose outcome is not known yet or an unknown feature group.
    """
    config = config or ChurnConfig()
    horizon = config.horizon_days
    split = config.split or today - timedelta(days=horizon)
    if split + timedelta(days=horizon) > today:
        raise ConfigError(
            f"the split {split} is too recent: who left within {horizon} days after it is "
            f"known from {split + timedelta(days=horizon)}, the register was read {today}"
        )
    builder = FeatureBuilder(groups=config.groups)  # unknown groups fail before any work
    data = _arrays(members)
    cutoffs = training_cutoffs(split, config.train_months, horizon)
    first, last_day = cutoffs[0].toordinal(), split.toordinal()
    leavers = int(np.count_nonzero((data.ended >= first) & (data.ended < last_day)))
    if leavers < config.min_leavers:
        raise TooLittleHistory(
            f"only {leavers} member(s) left in the training period {cutoffs[0]} to {split}; "
            f"the churn model needs at least {config.min_leavers} (min_leavers): read a longer "
            "history (leaving dates of former members) or wait for more"
        )
    builder = builder.fit(data, np.flatnonzero(data.joined < last_day))
    rng = np.random.default_rng(config.random_state)
    calibrate = config.calibration != "none"
    fit_cutoffs = cutoffs[:-1] if calibrate else cutoffs
    share = len(fit_cutoffs) / len(cutoffs)
    train = snapshots(
        builder, data, fit_cutoffs, horizon, max_rows=int(config.max_rows * share), rng=rng
    )
    if not train.labels.any():
        raise TooLittleHistory(
            f"no member active on a training cut-off ({fit_cutoffs[0]} to {fit_cutoffs[-1]}) "
            f"left within {horizon} days: the history is too short to train on"
        )
    mean, scale = _moments(train.features)
    standardised = train.features  # in place, in float32: a million rows fit twice over
    standardised -= mean.astype(np.float32)
    standardised /= scale.astype(np.float32)
    regression = LogisticRegression(C=config.regularisation, max_iter=1000)
    regression.fit(standardised, train.labels)
    del standardised
    model = ChurnModel(
        builder=builder,
        mean=mean,
        scale=scale,
        coef=regression.coef_[0].astype(np.float64),
        intercept=float(regression.intercept_[0]),
        calibration="none",
        calibration_x=np.zeros(0),
        calibration_y=np.zeros(0),
        evaluation=_pending(split, horizon, cutoffs),
        trained_on=today,
    )
    seen = [train]
    if calibrate:
        held = snapshots(
            builder,
            data,
            cutoffs[-1:],
            horizon,
            max_rows=max(int(config.max_rows / len(cutoffs)), 1),
            rng=rng,
        )
        model = _calibrated(model, held, config.calibration)
        seen.append(held)
    test = snapshots(builder, data, [split], horizon)
    no_rule, rule = _baseline_rates(data, seen, config.baseline_days)
    flags = _flags(data, test, config.baseline_days)
    evaluation = Evaluation(
        split=split,
        horizon_days=horizon,
        cutoffs=tuple(cutoffs),
        model=evaluate(test.labels, model.predict(test.features)),
        baseline=evaluate(test.labels, np.where(flags, rule, no_rule)),
        baseline_rule=(
            f"a missed payment (failed or overdue) in the last {config.baseline_days} days"
        ),
        train_rows=sum(s.labels.size for s in seen),
        train_leavers=leavers,
    )
    return replace(model, evaluation=evaluation)


def _pending(split: date, horizon: int, cutoffs: list[date]) -> Evaluation:
    empty = Metrics(0.0, 0.0, 0.0, 0, 0, ())
    return Evaluation(split, horizon, tuple(cutoffs), empty, empty, "", 0, 0)


def _calibrated(model: ChurnModel, held: Snapshots, kind: str) -> ChurnModel:
    """The model with its probabilities mapped to the leaving rates of the latest cut-off."""
    if held.labels.all() or not held.labels.any():
        raise TooLittleHistory(
            f"the calibration cut-off {held.cutoffs[0]} needs both members who left and members "
            f"who stayed ({int(held.labels.sum())} of {held.labels.size} left)"
        )
    decision = model._decision(held.features)
    if kind == "sigmoid":
        platt = LogisticRegression(C=1e6, max_iter=1000)
        platt.fit(decision[:, None], held.labels)
        x = np.array([float(platt.coef_[0][0]), float(platt.intercept_[0])])
        y = np.zeros(0)
    else:
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        isotonic.fit(decision, held.labels.astype(np.float64))
        x = np.asarray(isotonic.X_thresholds_, np.float64)
        y = np.asarray(isotonic.y_thresholds_, np.float64)
    return replace(model, calibration=kind, calibration_x=x, calibration_y=y)
