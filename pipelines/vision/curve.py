"""The learning curve: what transfer learning buys, measured at 5, 10, 20 and all labels per class.

Four lines on the same training subsets and the same test split:
  transfer      ResNet-18 from the configured weights (source / imagenet / checkpoint): warm-up, then unfrozen
  scratch       the same ResNet-18, same seeds, same optimizer steps, random initial weights
  pixel_logreg  logistic regression on the raw pixels (the classical floor)
  keras_cnn     a small Keras 3 CNN from scratch (its own early stopping on validation)
With few labels every ResNet fit runs `curve.steps` optimizer steps and keeps its last weights (no
selection on a validation split larger than the training set); the `all` row is the champion's own
protocol (train.epochs, early stopping), for transfer and scratch alike. Rows are nested subsets (the 5
chosen per class are among the 10), so the curve is one experiment, not unrelated draws.
"""

from __future__ import annotations

import logging
import math

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

from pipelines.common import tracking
from pipelines.common.metrics import softmax
from pipelines.common.plots import log_figure, new_figure
from pipelines.common.runner import StageContext
from pipelines.vision.data import ImageData, per_class_subset
from pipelines.vision.finetune import fine_tune
from pipelines.vision.keras_cnn import fit_keras_cnn
from pipelines.vision.model import predict_logits

log = logging.getLogger(__name__)
ALL = "all"
LINES = ("transfer", "scratch", "pixel_logreg", "keras_cnn")


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == labels).mean())


def pixel_logreg(data: ImageData, train_rows: np.ndarray, test_rows: np.ndarray, C: float) -> float:
    flat = data.images.reshape(len(data.images), -1).astype(np.float32) / 255.0
    model = LogisticRegression(C=C, max_iter=3000).fit(flat[train_rows], data.labels[train_rows])
    return accuracy(model.predict_proba(flat[test_rows]), data.labels[test_rows])


def keras_cnn(ctx: StageContext, images: torch.Tensor, labels: np.ndarray, train_rows, valid_rows, test_rows, seed) -> float:
    """On one torch thread: Keras issues many small ops, and two spinning threads cost more than they
    save on them (10-30x slower on a busy 2-core machine, measured)."""
    x, threads = images.numpy(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cnn = fit_keras_cnn(x[train_rows], labels[train_rows], x[valid_rows], labels[valid_rows],
                            classes=int(labels.max()) + 1, settings=ctx.config.keras, seed=seed)
    finally:
        torch.set_num_threads(threads)
    return accuracy(cnn.predict_proba(x[test_rows]), labels[test_rows])


def resnet_accuracy(ctx: StageContext, init, images, data: ImageData, train_rows, splits, per_class, seed) -> float:
    config, labels = ctx.config, data.labels
    if per_class is None:
        model = fine_tune(config, init, data.classes, images, labels, train_rows, splits["valid"],
                          epochs=config.train.epochs, seed=seed)
    else:
        batches = math.ceil(len(train_rows) / min(config.train.batch_size, len(train_rows)))
        epochs = max(config.train.warmup_epochs + 1, math.ceil(config.curve.steps / batches))
        model = fine_tune(config, init, data.classes, images, labels, train_rows, splits["valid"], epochs=epochs,
                          seed=seed, restore_best=False, early_stopping=False)
    return accuracy(softmax(predict_logits(model, images[splits["test"]])), labels[splits["test"]])


def curve_point(ctx: StageContext, init, images, data: ImageData, splits, per_class, seed, champion_test_accuracy):
    """One row of the table for one seed: every line on the same subset."""
    labels, test = data.labels, splits["test"]
    rows = per_class_subset(splits["train"], labels, per_class, seed)
    point = {"labels_per_class": per_class or ALL, "seed": seed, "train_images": len(rows)}
    tag = f"{per_class or ALL}_per_class_seed{seed}"
    if init is not None:
        with tracking.child_run(f"curve_transfer_{tag}", project=ctx.project):
            reuse = per_class is None and seed == ctx.config.seed and champion_test_accuracy is not None
            point["transfer"] = champion_test_accuracy if reuse else resnet_accuracy(
                ctx, init, images, data, rows, splits, per_class, seed)
            mlflow.log_metric("test_accuracy", point["transfer"])
    with tracking.child_run(f"curve_scratch_{tag}", project=ctx.project):
        point["scratch"] = resnet_accuracy(ctx, None, images, data, rows, splits, per_class, seed)
        mlflow.log_metric("test_accuracy", point["scratch"])
    point["pixel_logreg"] = pixel_logreg(data, rows, test, ctx.config.curve.pixel_C)
    with tracking.child_run(f"curve_keras_cnn_{tag}", project=ctx.project):
        point["keras_cnn"] = keras_cnn(ctx, images, labels, rows, splits["valid"], test, seed)
        mlflow.log_metric("test_accuracy", point["keras_cnn"])
    log.info("learning curve %s: %s", tag, ", ".join(f"{k} {point[k]:.4f}" for k in LINES if k in point))
    return point


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """Mean (and std over seeds, when there are several) per labels-per-class row."""
    lines = [line for line in LINES if line in points]
    grouped = points.groupby("labels_per_class", sort=False)[lines]
    table = grouped.mean()
    if points["seed"].nunique() > 1:
        table = table.join(grouped.std().add_suffix("_std"))
    if "transfer" in table:
        table["transfer_minus_scratch"] = table["transfer"] - table["scratch"]
    return table


def plot_curve(points: pd.DataFrame, artifact: str) -> None:
    fig, ax = new_figure()
    for line in (line for line in LINES if line in points):
        grouped = points.groupby("labels_per_class", sort=False)[line]
        mean, std = grouped.mean(), grouped.std().fillna(0)
        xs = [points.loc[points["labels_per_class"] == row, "train_images"].iloc[0] for row in mean.index]
        ax.errorbar(xs, mean.values, yerr=std.values, marker="o", capsize=3, label=line)
    ax.set_xscale("log")
    ax.set(xlabel="training images (labels per class x classes)", ylabel="test accuracy",
           title="Learning curve: transfer vs scratch vs baselines")
    ax.grid(alpha=0.3)
    ax.legend()
    log_figure(fig, artifact)


def learning_curve(ctx: StageContext, init, images: torch.Tensor, data: ImageData, splits,
                   champion_test_accuracy: float | None = None) -> pd.DataFrame:
    settings = ctx.config.curve
    points = pd.DataFrame([curve_point(ctx, init, images, data, splits, per_class, seed, champion_test_accuracy)
                           for seed in settings.seeds for per_class in settings.labels_per_class])
    table = summarise(points)
    mlflow.log_table(points, "curve/points.json")
    tracking.log_json(table.reset_index().to_dict(orient="records"), "curve/curve.json")
    plot_curve(points, "curve/curve.png")
    for row, values in table.iterrows():
        mlflow.log_metrics({f"curve_{row}_{k}": float(v) for k, v in values.items() if np.isfinite(v)})
    return table
