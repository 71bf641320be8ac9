"""Text quality over several split seeds: rerun the text train stage per seed, print mean ± std per model.

Every seed gets its own split, its own baselines and its own LoRA fit, in a throwaway MLflow store (no
seed picking), plus one full fine-tune (every weight trains, learning rate `--full-lr`) on the first seed
for comparison: macro-F1, trainable parameters, wall time. Goals (issue 16): LoRA beats both baselines on
mean test macro-F1, reaches >= 0.93 and comes within 1 point of the full fine-tune.

    python benchmarks/bench_text.py [--config configs/text.yaml] [--seeds 0,1,2] [--full-lr 5e-5] [--no-full]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

MODELS = ("tfidf_logistic_regression", "linear_probe", "lora")


def run_train(config: dict, name: str, workdir: Path) -> dict:
    """The train stage alone (what the table compares), in its own store; returns test macro-F1 per model."""
    import json

    import mlflow

    from pipelines.common.runner import run_project

    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir}/{name}/mlflow.db"
    started = time.perf_counter()
    result = run_project("text", str(path), stages=["train"])
    seconds = time.perf_counter() - started
    train_run = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("text").experiment_id],
        f"tags.`mlflow.parentRunId` = '{result.parent_run_id}' and tags.stage = 'train'")[0]
    table = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=train_run.info.run_id,
                                                                artifact_path="baselines.json")).read_text())
    return {model: metrics["test_macro_f1"] for model, metrics in table.items()} | {
        "seconds": seconds, "trainable": next((v for k, v in result.summary.items() if k.endswith("trainable_parameters")), "")}


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/text.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--full-lr", type=float, default=5e-5)
    parser.add_argument("--no-full", action="store_true", help="skip the full fine-tune")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = yaml.safe_load(Path(args.config).read_text())
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        for seed in seeds:
            rows.append(run_train(base | {"seed": seed}, f"seed{seed}", Path(tmp)) | {"seed": seed})
            r = rows[-1]
            print(f"seed {seed}: " + "  ".join(f"{m} {r[m]:.4f}" for m in MODELS) + f"  ({r['seconds']:.0f} s)", flush=True)
        full = None
        if not args.no_full:
            config = base | {"seed": seeds[0], "lora": base.get("lora", {}) | {"enabled": False},
                             "train": base.get("train", {}) | {"learning_rate": args.full_lr}}
            full = run_train(config, "full", Path(tmp))
    print(f"\ntest macro-F1 over {len(seeds)} split seeds (mean ± std, no seed picking):")
    for model in MODELS:
        print(f"  {model:<28} {mean_std([r[model] for r in rows])}")
    lora = statistics.mean(r["lora"] for r in rows)
    best_baseline = max(statistics.mean(r[m] for r in rows) for m in MODELS[:2])
    print(f"LoRA trains {rows[0]['trainable']}; train stage {statistics.mean(r['seconds'] for r in rows):.0f} s per seed")
    print(f"goal LoRA > both baselines: {'MET' if lora > best_baseline else 'NOT MET'}; "
          f"goal mean >= 0.93: {'MET' if lora >= 0.93 else 'NOT MET'} ({lora:.4f})")
    if full is not None:
        print(f"full fine-tune (seed {seeds[0]}, lr {args.full_lr}): macro-F1 {full['full_finetune']:.4f}, trains "
              f"{full['trainable']}, {full['seconds']:.0f} s; LoRA on the same seed {rows[0]['lora']:.4f} "
              f"(goal within 1 point: {'MET' if full['full_finetune'] - rows[0]['lora'] <= 0.01 else 'NOT MET'})")


if __name__ == "__main__":
    main()
