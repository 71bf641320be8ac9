"""Hyperparameter search engines: the churn XGBoost search with the same trial budget on Optuna in-process
and on Ray Tune at 1 and 2 concurrent trials, on a local runtime of `--cpus` CPUs.

    python benchmarks/bench_tune.py [--trials 20] [--cpus 2] [--config configs/churn.yaml]
    make bench-tune

Every engine runs the optimize stage's own search (pipelines/churn/optimize.py `search`: same split of the
training rows, same space, same seeded TPE sampler, trial 0 the config's hand-set start, no timeout) on the
real Telco CSV (else synthetic customers, loudly), logging into a throwaway MLflow store. XGBoost gets the
same cores in every row: all `--cpus` for the one trial at a time (Optuna; Ray with cpus_per_trial = cpus),
`cpus / 2` each for two at a time. Printed per engine: wall time (Ray's includes starting its runtime and
trial actors), the mean trial time (each trial's MLflow run, start to end), the best tune-slice ROC-AUC the
search found, and the valid ROC-AUC of XGBoost refitted on the training split with the best params (what
the stage's gate then judges). A benchmark, not a test: other processes on a shared machine take cores too;
the load average is printed beside the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Engine:
    label: str
    backend: str
    concurrent: int


def engines(cpus: int) -> list[Engine]:
    return [Engine("optuna, in process", "optuna", 1), Engine("ray tune, 1 at a time", "ray", 1),
            Engine(f"ray tune, {min(2, cpus)} at a time", "ray", min(2, cpus))]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--config", default=str(REPO / "configs" / "churn.yaml"))
    return parser.parse_args()


def splits(config):
    from pipelines.churn.data import load_customers, split_customers

    data = load_customers(config.data.path, synthetic_rows=config.data.synthetic_rows, seed=config.seed)
    print(f"data: {data.source} ({len(data.frame)} customers{', ' + data.path if data.path else ''})")
    return split_customers(data.frame, valid_fraction=config.split.valid_fraction,
                           test_fraction=config.split.test_fraction, seed=config.seed)


def engine_config(config, engine: Engine, trials: int, cpus: int):
    optimize = config.optimize.model_copy(update={
        "backend": engine.backend, "n_trials": trials, "timeout_seconds": None,
        "ray": config.optimize.ray.model_copy(update={
            "num_cpus": cpus, "max_concurrent_trials": engine.concurrent, "cpus_per_trial": cpus // engine.concurrent})})
    return config.model_copy(update={"optimize": optimize})


def trial_seconds(parent_run_id: str, experiment_id: str) -> float:
    from mlflow.tracking import MlflowClient

    runs = MlflowClient().search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    return statistics.mean((run.info.end_time - run.info.start_time) / 1000 for run in runs)


def run_engine(engine: Engine, config, data: dict) -> dict:
    import mlflow
    from sklearn.metrics import roc_auc_score

    from pipelines.churn.features import features, target
    from pipelines.churn.models import xgboost_pipeline
    from pipelines.churn.optimize import search
    from pipelines.common.runner import StageContext

    ctx = StageContext("churn", config, parent_run_id="bench")
    with mlflow.start_run(run_name=engine.label) as parent:
        best, result = search(ctx, data["train"])
    tuned = xgboost_pipeline(best, config.seed).fit(features(data["train"]), target(data["train"]))
    valid = roc_auc_score(target(data["valid"]), tuned.predict_proba(features(data["valid"]))[:, 1])
    return {"trials": len(result.trials), "wall": result.wall_seconds, "best": result.best_value, "valid": valid,
            "per_trial": trial_seconds(parent.info.run_id, parent.info.experiment_id)}


def table(rows: dict[Engine, dict]) -> str:
    lines = [f"{'engine':<24}{'trials':>7}{'concurrent':>11}{'wall s':>9}{'s/trial (run)':>15}"
             f"{'best tune AUC':>15}{'valid AUC':>11}"]
    for engine, found in rows.items():
        lines.append(f"{engine.label:<24}{found['trials']:>7}{engine.concurrent:>11}{found['wall']:>9.1f}"
                     f"{found['per_trial']:>15.2f}{found['best']:>15.4f}{found['valid']:>11.4f}")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    from pipelines.churn.config import ChurnConfig
    from pipelines.common import tracking
    from pipelines.common.config import load_config

    os.environ.pop("RAY_ADDRESS", None)  # this machine's cores, whatever the shell points at
    config = load_config(args.config, ChurnConfig)
    data = splits(config)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        tracking.configure_tracking("churn-bench-tune")
        rows = {engine: run_engine(engine, engine_config(config, engine, args.trials, args.cpus), data)
                for engine in engines(args.cpus)}
    print()
    print(table(rows))
    print(f"{args.trials} trials each, seed {config.seed}, {args.cpus} CPUs; load average (1 min) before: {load:.1f}, "
          f"after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other processes shared the CPUs")


if __name__ == "__main__":
    main()
