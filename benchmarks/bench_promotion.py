"""Does the promotion rule promote what it should, and only that? Promotion rates over many decisions.

Each decision goes through the rule retraining uses (`pipelines.common.promotion.decide_promotion`, with
configs/monitoring.yaml's `retrain` thresholds and churn's outcome costs), on real Telco customers:

  equivalent   the champion's model (churn's XGBoost settings) on the champion's own training rows, with
               another seed: nothing to gain; target: promoted <= 5 % of the time
  better       the same model trained on the champion's rows plus `--extra-rows` recent customers it never
               saw (what retraining adds: the labelled traffic since the champion was trained); target:
               promoted >= 80 % of the time

The models are trained once (a handful: `--seeds` of each kind, plus the champion); each model's
threshold is the cost-optimal one on a validation split (as churn's optimize stage picks it) and its
"registered" test metrics are measured on a curated test split. The decisions differ by their judge
window: `--window-rows` labelled customers drawn with replacement from a pool no model trained on
(the judge window retraining uses holds recent_rows x eval_fraction = 1000). Cooldown is not measured
(no promotion recorded): it only delays. Beside the rule, the old one-sided rule (P(better) >= 0.9).

    python benchmarks/bench_promotion.py [--decisions 100] [--window-rows 1000] [--seeds 5] [--extra-rows 2000]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import beta

from monitoring.config import load_monitoring_config
from pipelines.churn.config import ChurnConfig
from pipelines.churn.data import load_customers
from pipelines.churn.features import features, target
from pipelines.churn.models import xgboost_pipeline
from pipelines.churn.threshold import best_threshold, cost_curve
from pipelines.common.bootstrap import log_loss, roc_auc
from pipelines.common.config import load_config
from pipelines.common.promotion import Evidence, Side, Verdict, decide_promotion

EQUIVALENT, BETTER = "equivalent", "better"
TARGETS = {EQUIVALENT: ("<=", 0.05), BETTER: (">=", 0.80)}
OLD_RULE_CONFIDENCE = 0.9  # the rule this one replaced: promote when P(challenger better) >= 0.9
CONFIDENCE = 0.95  # of the Clopper-Pearson interval printed beside each rate
TEST_SHARE, VALID_SHARE = 0.2, 0.1  # of the customers: curated test split, threshold selection
CHAMPION_SEED = 0


@dataclass(frozen=True)
class Model:
    name: str
    threshold: float
    test_metrics: dict[str, float]
    judge_pool: np.ndarray  # P(churn) on every row of the judge pool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=100, help="decisions per kind of challenger")
    parser.add_argument("--window-rows", type=int, default=1000, help="labelled rows per judge window")
    parser.add_argument("--seeds", type=int, default=5, help="challengers trained per kind (other seeds)")
    parser.add_argument("--champion-rows", type=int, default=1000, help="customers the champion trained on")
    parser.add_argument("--extra-rows", type=int, default=2000, help="more customers the better challenger saw")
    parser.add_argument("--seed", type=int, default=0, help="shuffles the customers and draws the windows")
    parser.add_argument("--churn-config", default="configs/churn.yaml")
    parser.add_argument("--config", default="configs/monitoring.yaml")
    return parser.parse_args()


def real_customers(config: ChurnConfig, seed: int) -> pd.DataFrame:
    """The real Telco CSV (CHURN_DATA, as the Makefile sets it), shuffled; synthetic data measures nothing."""
    data = load_customers(config.data.path, synthetic_rows=config.data.synthetic_rows, seed=config.seed)
    if data.source != "csv":
        raise SystemExit("no real Telco CSV: set CHURN_DATA (make bench-promotion sets it) or run `make data`")
    return data.frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def carve(customers: pd.DataFrame, champion_rows: int, extra_rows: int) -> dict[str, pd.DataFrame]:
    """Disjoint parts: curated test split, validation (thresholds), the champion's training rows, the extra
    rows only the better challenger saw, and the judge pool (no model trained on it)."""
    cuts = np.cumsum([int(len(customers) * TEST_SHARE), int(len(customers) * VALID_SHARE), champion_rows, extra_rows])
    if cuts[-1] >= len(customers):
        raise SystemExit(f"{len(customers)} customers cannot hold these parts ({cuts[-1]} before the judge pool)")
    bounds = zip([0, *cuts], [*cuts, len(customers)])
    names = ["test", "valid", "train", "extra", "pool"]
    return {name: customers.iloc[start:end].reset_index(drop=True) for name, (start, end) in zip(names, bounds)}


def train(name: str, rows: pd.DataFrame, seed: int, parts: dict[str, pd.DataFrame], config: ChurnConfig) -> Model:
    pipeline = xgboost_pipeline(config.models.xgboost, seed, n_jobs=1).fit(features(rows), target(rows))
    p = {part: pipeline.predict_proba(features(parts[part]))[:, 1] for part in ("test", "valid", "pool")}
    y_test = target(parts["test"]).to_numpy()
    metrics = {"test_roc_auc": roc_auc(y_test, p["test"]), "test_log_loss": log_loss(y_test, p["test"])}
    threshold = best_threshold(cost_curve(target(parts["valid"]), p["valid"], config.cost))
    return Model(name, threshold, metrics, p["pool"])


def side(model: Model, rows: np.ndarray) -> Side:
    p = model.judge_pool[rows]
    return Side(np.column_stack([1 - p, p]), (p >= model.threshold).astype(int), model.test_metrics)


def judge(champion: Model, challenger: Model, y_pool: np.ndarray, rows: np.ndarray, settings, costs,
          seed: int) -> Verdict:
    evidence = Evidence(y_pool[rows], side(champion, rows), side(challenger, rows), positive=1, now=time.time())
    return decide_promotion(evidence, settings, costs=costs, seed=seed)


def rate_interval(hits: int, n: int) -> tuple[float, float]:
    alpha = 1 - CONFIDENCE
    low = beta.ppf(alpha / 2, hits, n - hits + 1) if hits else 0.0
    high = beta.ppf(1 - alpha / 2, hits + 1, n - hits) if hits < n else 1.0
    return float(low), float(high)


def train_models(parts: dict[str, pd.DataFrame], seeds: int, churn: ChurnConfig) -> tuple[Model, dict[str, list[Model]]]:
    """The champion, and `seeds` challengers of each kind (other seeds of the same model)."""
    champion = train("champion", parts["train"], CHAMPION_SEED, parts, churn)
    more = pd.concat([parts["train"], parts["extra"]], ignore_index=True)
    others = range(CHAMPION_SEED + 1, CHAMPION_SEED + 1 + seeds)
    return champion, {EQUIVALENT: [train(f"equivalent seed {s}", parts["train"], s, parts, churn) for s in others],
                      BETTER: [train(f"better seed {s}", more, s, parts, churn) for s in others]}


def print_models(champion: Model, challengers: dict[str, list[Model]], y_pool: np.ndarray) -> None:
    """Each model's registered test metrics, threshold, and its true gain: ROC-AUC on the whole judge pool."""
    models = [champion, *challengers[EQUIVALENT], *challengers[BETTER]]
    base = roc_auc(y_pool, champion.judge_pool)
    print(f"{'model':<20} {'test roc_auc':>12} {'test log_loss':>13} {'threshold':>9} {'pool roc_auc':>12} {'gain':>7}")
    for model in models:
        pool = roc_auc(y_pool, model.judge_pool)
        print(f"{model.name:<20} {model.test_metrics['test_roc_auc']:>12.4f} "
              f"{model.test_metrics['test_log_loss']:>13.4f} {model.threshold:>9.2f} {pool:>12.4f} {pool - base:>+7.4f}")


def decisions(champion: Model, models: list[Model], y_pool: np.ndarray, args, settings, costs,
              rng: np.random.Generator) -> list[Verdict]:
    """One verdict per judge window, drawn with replacement from the pool; the challengers take turns."""
    verdicts = []
    for i in range(args.decisions):
        rows = rng.integers(0, len(y_pool), args.window_rows)
        verdicts.append(judge(champion, models[i % len(models)], y_pool, rows, settings, costs, seed=i))
    return verdicts


def print_rates(kind: str, verdicts: list[Verdict]) -> None:
    hits = sum(v.passed for v in verdicts)
    low, high = rate_interval(hits, len(verdicts))
    sign, target_rate = TARGETS[kind]
    rate = hits / len(verdicts)
    ok = rate <= target_rate if sign == "<=" else rate >= target_rate
    old = np.mean([v.decision.p_better >= OLD_RULE_CONFIDENCE for v in verdicts])
    refused = pd.Series([rule for v in verdicts for rule in v.refused_by], dtype=str).value_counts().to_dict()
    print(f"{kind:<11} {hits:>8} {rate:>6.2f} {f'[{low:.2f}, {high:.2f}]':>15} {sign + format(target_rate, '.2f'):>7} "
          f"{'yes' if ok else 'NO':>3}  {old:>8.2f}  {refused or '-'}")


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    churn = load_config(args.churn_config, ChurnConfig)
    monitoring = load_monitoring_config(args.config)
    settings, costs = monitoring.retrain, monitoring.model("churn").costs
    parts = carve(real_customers(churn, args.seed), args.champion_rows, args.extra_rows)
    y_pool = target(parts["pool"]).to_numpy()
    champion, challengers = train_models(parts, args.seeds, churn)
    print(f"customers: test {len(parts['test'])}, valid {len(parts['valid'])}, champion train {len(parts['train'])}, "
          f"extra {len(parts['extra'])}, judge pool {len(parts['pool'])}; {1 + 2 * args.seeds} models in "
          f"{time.perf_counter() - started:.0f} s")
    print(f"rule: {settings.metric} lower bound at {settings.confidence:.0%} > {settings.min_gain}, test split "
          f"{settings.test_metrics} within {settings.test_tolerance}, cost within +{settings.cost_tolerance:.0%}, "
          f"judge rows >= {settings.min_judge_rows}; {settings.bootstrap_samples} resamples per decision\n")
    print_models(champion, challengers, y_pool)
    rng = np.random.default_rng(args.seed)
    verdicts = {kind: decisions(champion, models, y_pool, args, settings, costs, rng) for kind, models in challengers.items()}
    print(f"\n{args.decisions} decisions per kind, judge windows of {args.window_rows} rows "
          f"({time.perf_counter() - started:.0f} s in all; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)\n")
    print(f"{'challenger':<11} {'promoted':>8} {'rate':>6} {'95% interval':>15} {'target':>7} {'ok':>3}  "
          f"{'old rule':>8}  refused by (a decision may name several)")
    for kind, judged in verdicts.items():
        print_rates(kind, judged)


if __name__ == "__main__":
    main()
