"""Retention analytics on a synthetic register with known structure: churn model, curves, themes.

1. A register of N fictitious members with three years of monthly history before TODAY
   (``dynamics_bridge.retention.synthetic``: planted churn drivers and four planted leaver
   groups, reasons and Swedish texts with noise).
2. Training with a time split (monthly cut-offs whose 90-day outcomes end by the split; the
   split is TODAY minus 90 days, tested on who left in the 90 days after it), from the records
   (their conversion to arrays included): held-out ROC AUC, PR AUC, Brier score and calibration
   beside the rule of thumb "a missed payment in the last 60 days".
3. Scoring every active member on TODAY, from the records: probability and top three reasons.
4. Retention curves (Kaplan-Meier, left-truncated at the start of the window) by method and
   member type, expected remaining months and lifetime value of every active member.
5. Winback themes of the members who left in the last 12 months, and how well they recover
   the planted groups (adjusted Rand index).

Ends with ``RESULT members=… auc=… baseline_auc=… brier=… ari=… train_s=… score_s=… peak_mb=…``
(peak_mb: the process's peak resident memory, the register itself included).

    .venv/bin/python bench/retention.py [--members 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date
from pathlib import Path

from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynamics_bridge.retention.features import HistoryArrays
from dynamics_bridge.retention.model import ChurnModel, train_churn
from dynamics_bridge.retention.survival import cohort_curves, lifetime_values, survival_curve
from dynamics_bridge.retention.synthetic import generate
from dynamics_bridge.retention.themes import fit_themes, recent_leavers

TODAY = date(2026, 11, 28)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def resident_mb() -> float:
    """The memory in use now (Linux), to tell the register's share from the peak's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    register = generate(args.members, today=TODAY, seed=args.seed)
    members = register.members
    leavers = sum(1 for m in members if m.ended_on is not None)
    payments = sum(len(m.payments) for m in members)
    activity = sum(len(m.activity) for m in members)
    print(
        f"register: {len(members):,} members ({leavers:,} left in three years), "
        f"{payments:,} payment rows, {activity:,} activity rows; generated in "
        f"{time.perf_counter() - started:.1f} s; {resident_mb():,.0f} MB in use "
        f"(peak so far {peak_mb():,.0f} MB)"
    )

    started = time.perf_counter()
    data = HistoryArrays.from_records(members)
    converted = time.perf_counter() - started
    model = train_churn(data, today=TODAY)
    train_s = time.perf_counter() - started
    evaluation = model.evaluation
    print(
        f"training: {train_s:.1f} s ({converted:.1f} s converting the records), "
        f"{evaluation.train_rows:,} member-months on {len(evaluation.cutoffs)} cut-offs "
        f"({evaluation.cutoffs[0]} to {evaluation.cutoffs[-1]}), {evaluation.train_leavers:,} "
        f"leavers; {len(model.feature_names)} features"
    )
    print(
        f"held out: {evaluation.model.members:,} members active on {evaluation.split}, "
        f"{evaluation.model.leavers:,} left within {evaluation.horizon_days} days"
    )
    for name, metrics in (("model", evaluation.model), ("baseline", evaluation.baseline)):
        print(
            f"  {name:9s} ROC AUC {metrics.roc_auc:.3f}  PR AUC {metrics.pr_auc:.3f}  "
            f"Brier {metrics.brier:.5f}"
        )
    print(f"  beats the baseline: {model.beats_baseline()}  (baseline: {evaluation.baseline_rule})")
    print("  calibration (decile: mean predicted / observed):")
    for row in evaluation.model.calibration:
        print(f"    {row.predicted:.4f} / {row.observed:.4f}  ({row.members:,})")
    print(
        "  largest weights: "
        + ", ".join(f"{name} {weight:+.2f}" for name, weight in model.weights()[:6])
    )
    stored = model.to_bytes()
    assert ChurnModel.from_bytes(stored).feature_names == model.feature_names
    print(f"  stored model: {len(stored):,} bytes")

    started = time.perf_counter()
    scores = model.score(members, TODAY)
    score_s = time.perf_counter() - started
    high = sum(1 for s in scores if s.probability >= 0.1)
    print(
        f"scoring: {len(scores):,} active members in {score_s:.1f} s (records included); "
        f"{high:,} at 10 % or more; e.g. {scores[0].probability:.3f} {scores[0].reasons}"
    )

    started = time.perf_counter()
    curve = survival_curve(data, TODAY, register.observed_from)
    by_method = cohort_curves(data, "method", TODAY, observed_from=register.observed_from)
    values = lifetime_values(data, TODAY, curve)
    mean_value = sum(v.value for v in values) / max(len(values), 1)
    mean_months = sum(v.remaining_months for v in values) / max(len(values), 1)
    print(
        f"retention: median tenure {curve.median() or float('nan'):.0f} months; by method "
        + ", ".join(f"{k} {c.median() or float('nan'):.0f}" for k, c in by_method.items())
        + f"; mean expected remaining months {mean_months:.1f}, "
        f"mean lifetime value {mean_value:,.0f} kr ({time.perf_counter() - started:.1f} s)"
    )

    started = time.perf_counter()
    themes = fit_themes(members, TODAY, curve=curve)
    recent = recent_leavers(members, TODAY, 12)
    assigned = themes.assign(recent)
    themes_s = time.perf_counter() - started
    ari = adjusted_rand_score(
        [register.groups[m.member_id] for m in recent], [assigned[m.member_id] for m in recent]
    )
    print(
        f"themes: {len(themes.themes)} themes of {len(recent):,} leavers (k by silhouette: "
        + ", ".join(f"{k} {v:.2f}" for k, v in themes.silhouettes.items())
        + f") in {themes_s:.1f} s; ARI against the planted groups {ari:.3f}"
    )
    for theme in themes.themes:
        print(
            f"  {theme.id} {theme.size:,} ({theme.share:.0%}) value "
            f"{theme.mean_value or 0:,.0f} kr: {', '.join(f'{r} {n}' for r, n in theme.reasons)}; "
            f"words {', '.join(theme.words[:4])}; behaviour "
            + ", ".join(f"{name} {smd:+.2f}" for name, smd in theme.behaviour)
        )

    print(
        f"RESULT members={args.members} auc={evaluation.model.roc_auc:.3f} "
        f"baseline_auc={evaluation.baseline.roc_auc:.3f} brier={evaluation.model.brier:.5f} "
        f"ari={ari:.3f} train_s={train_s:.1f} score_s={score_s:.1f} peak_mb={peak_mb():.0f}"
    )


if __name__ == "__main__":
    main()
