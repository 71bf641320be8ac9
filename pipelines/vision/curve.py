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
The lines that need no source weights start first, in a second process (BaselineLines, `curve.parallel`),
while this one pretrains the source and fits the champion and the transfer line. The transfer line's fits
are claimed one at a time from a shared counter by whichever process is free first, so the second
process, done with its own lines, takes what is left of the transfer line instead of idling.
"""

from __future__ import annotations

import logging
import math
from multiprocessing import get_context

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

from pipelines.common import tracking
from pipelines.common.environment import environment_variables
from pipelines.common.metrics import softmax
from pipelines.common.plots import log_figure, new_figure
from pipelines.common.runner import StageContext
from pipelines.vision.config import VisionConfig
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


def keras_cnn(config: VisionConfig, images: torch.Tensor, labels: np.ndarray, train_rows, valid_rows, test_rows,
              seed) -> float:
    """On one torch thread: Keras issues many small ops, and two spinning threads cost more than they
    save on them (10-30x slower on a busy 2-core machine, measured)."""
    x, threads = images.numpy(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cnn = fit_keras_cnn(x[train_rows], labels[train_rows], x[valid_rows], labels[valid_rows],
                            classes=int(labels.max()) + 1, settings=config.keras, seed=seed)
    finally:
        torch.set_num_threads(threads)
    return accuracy(cnn.predict_proba(x[test_rows]), labels[test_rows])


def resnet_accuracy(config: VisionConfig, init, images, data: ImageData, train_rows, splits, per_class, seed) -> float:
    labels = data.labels
    if per_class is None:
        model = fine_tune(config, init, data.classes, images, labels, train_rows, splits["valid"],
                          epochs=config.train.epochs, seed=seed)
    else:
        batches = math.ceil(len(train_rows) / min(config.train.batch_size, len(train_rows)))
        epochs = max(config.train.warmup_epochs + 1, math.ceil(config.curve.steps / batches))
        model = fine_tune(config, init, data.classes, images, labels, train_rows, splits["valid"], epochs=epochs,
                          seed=seed, restore_best=False, early_stopping=False)
    return accuracy(softmax(predict_logits(model, images[splits["test"]])), labels[splits["test"]])


def rows_of_the_curve(config: VisionConfig, data: ImageData, splits) -> list[tuple[int | None, int, np.ndarray]]:
    """(labels per class, seed, training rows) of every point: nested subsets per seed."""
    return [(per_class, seed, per_class_subset(splits["train"], data.labels, per_class, seed))
            for seed in config.curve.seeds for per_class in config.curve.labels_per_class]


def tag_of(per_class: int | None, seed: int) -> str:
    return f"{per_class or ALL}_per_class_seed{seed}"


def baseline_points(config: VisionConfig, project: str, images, data: ImageData, splits,
                    parent_run_id: str | None = None) -> list[dict]:
    """The lines that need no source weights (scratch, pixel logistic regression, Keras CNN), every point.
    Each fit is a child run of `parent_run_id` (default: of the active run)."""
    points = []
    for per_class, seed, rows in rows_of_the_curve(config, data, splits):
        tag, test = tag_of(per_class, seed), splits["test"]
        point = {"labels_per_class": per_class or ALL, "seed": seed, "train_images": len(rows)}
        with tracking.child_run(f"curve_scratch_{tag}", parent_run_id=parent_run_id, project=project):
            point["scratch"] = resnet_accuracy(config, None, images, data, rows, splits, per_class, seed)
            mlflow.log_metric("test_accuracy", point["scratch"])
        point["pixel_logreg"] = pixel_logreg(data, rows, test, config.curve.pixel_C)
        with tracking.child_run(f"curve_keras_cnn_{tag}", parent_run_id=parent_run_id, project=project):
            point["keras_cnn"] = keras_cnn(config, images, data.labels, rows, splits["valid"], test, seed)
            mlflow.log_metric("test_accuracy", point["keras_cnn"])
        log.info("learning curve %s: %s", tag, ", ".join(f"{k} {point[k]:.4f}" for k in LINES if k in point))
        points.append(point)
    return points


def champion_point(config: VisionConfig) -> tuple[None, int] | None:
    """(labels per class, seed) of the curve point the champion fit already is: every label, the run's own
    seed; None when the curve has no such point."""
    on_curve = None in config.curve.labels_per_class and config.seed in config.curve.seeds
    return (None, config.seed) if on_curve else None


def transfer_tasks(config: VisionConfig, data: ImageData, splits) -> list[tuple[int | None, int, np.ndarray]]:
    """The transfer line's fits: every point but the champion's own."""
    own = champion_point(config)
    return [(per_class, seed, rows) for per_class, seed, rows in rows_of_the_curve(config, data, splits)
            if (per_class, seed) != own]


def claim(counter, tasks: int) -> int | None:
    """The next unclaimed task's index (None: all taken), atomically across both processes."""
    with counter.get_lock():
        index = counter.value
        if index >= tasks:
            return None
        counter.value = index + 1
        return index


def claimed_transfer_points(config: VisionConfig, project: str, init, images, data: ImageData, splits, counter,
                            parent_run_id: str | None = None, before_each=lambda: None) -> list[dict]:
    """Fit transfer points until none is left to claim; each fit a child run of `parent_run_id`."""
    tasks, points = transfer_tasks(config, data, splits), []
    while (index := claim(counter, len(tasks))) is not None:
        per_class, seed, rows = tasks[index]
        before_each()
        with tracking.child_run(f"curve_transfer_{tag_of(per_class, seed)}", parent_run_id=parent_run_id, project=project):
            accuracy_ = resnet_accuracy(config, init, images, data, rows, splits, per_class, seed)
            mlflow.log_metric("test_accuracy", accuracy_)
        log.info("learning curve %s: transfer %.4f", tag_of(per_class, seed), accuracy_)
        points.append({"labels_per_class": per_class or ALL, "seed": seed, "transfer": accuracy_})
    return points


_COUNTER = None  # the second process's handle on the shared transfer counter (set by its pool initializer)


def inherit_counter(counter) -> None:
    global _COUNTER
    _COUNTER = counter


def in_second_process(tracking_uri: str, experiment_id: str, log_level: int) -> None:
    torch.set_num_threads(1)
    tracking.configure_logging(log_level)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)


def baseline_points_in_this_process(config: VisionConfig, project: str, images, data: ImageData, splits,
                                    tracking_uri: str, experiment_id: str, parent_run_id: str, log_level: int) -> list[dict]:
    """The second process's work: the baseline lines on one torch thread, each fit a child run of the
    train stage's run (which the first process holds open)."""
    in_second_process(tracking_uri, experiment_id, log_level)
    return baseline_points(config, project, images, data, splits, parent_run_id=parent_run_id)


def transfer_points_in_this_process(config: VisionConfig, project: str, init, images, data: ImageData, splits,
                                    tracking_uri: str, experiment_id: str, parent_run_id: str, log_level: int) -> list[dict]:
    """The second process's help once its own lines are done: transfer points the first has not claimed."""
    in_second_process(tracking_uri, experiment_id, log_level)
    return claimed_transfer_points(config, project, init, images, data, splits, _COUNTER, parent_run_id=parent_run_id)


class BaselineLines:
    """The learning curve's lines that need no source weights, started before the source is pretrained.

    With `curve.parallel` they run in a second process while this one pretrains the source, fits the
    champion and the transfer line, each process on one torch thread: at 32x32 a ResNet-18 training step
    takes 381 ms on two threads and 498 ms on one, so two one-thread processes do 1.4x the steps of one
    two-thread process on two cores (measured). `share_cores()` before each fit here gives this process
    both threads again once the other is done. `offer_transfer` queues a second task behind the lines: the
    second process then claims transfer fits too, so neither process idles while the other still has
    fits to do. Without `parallel` every line runs here, in turn."""

    def __init__(self, ctx: StageContext, images, data: ImageData, splits):
        self.ctx, self.images, self.data, self.splits = ctx, images, data, splits
        self.threads = torch.get_num_threads()
        context = get_context("spawn")
        self.next_transfer = context.Value("i", 0)  # the transfer line's next unclaimed fit, shared by both processes
        self.pool = self.pending = self.helping = None
        if ctx.config.curve.parallel and self.threads > 1:
            run = mlflow.active_run()
            self.second_process = (mlflow.get_tracking_uri(), run.info.experiment_id, run.info.run_id,
                                   logging.getLogger().getEffectiveLevel())
            with environment_variables(TQDM_DISABLE="1"):  # its progress bars would interleave with these
                self.pool = context.Pool(1, initializer=inherit_counter, initargs=(self.next_transfer,))
            self.pending = self.pool.apply_async(baseline_points_in_this_process, (
                ctx.config, ctx.project, images, data, splits, *self.second_process))

    def offer_transfer(self, init) -> None:
        """Once the source weights exist: let the second process, after its own lines, claim transfer fits."""
        if self.pool is not None and init is not None:
            self.helping = self.pool.apply_async(transfer_points_in_this_process, (
                self.ctx.config, self.ctx.project, init, self.images, self.data, self.splits, *self.second_process))

    def busy(self) -> bool:
        return any(task is not None and not task.ready() for task in (self.pending, self.helping))

    def share_cores(self) -> None:
        torch.set_num_threads(1 if self.busy() else self.threads)

    def points(self) -> list[dict]:
        if self.pending is None:
            return baseline_points(self.ctx.config, self.ctx.project, self.images, self.data, self.splits)
        try:
            return self.pending.get()  # re-raises the second process's error, if it had one
        finally:
            self.close()

    def helped_points(self) -> list[dict]:
        """The transfer points the second process claimed (none without one)."""
        return self.helping.get() if self.helping is not None else []

    def close(self) -> None:
        """Stop the second process (at once: after an error here its work is of no use) and take the threads back."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
        torch.set_num_threads(self.threads)


def transfer_points(ctx: StageContext, init, images, data: ImageData, splits, champion_test_accuracy: float,
                    lines: BaselineLines) -> list[dict]:
    """The transfer line, every point: the ones this process claims, the ones the second process claimed,
    and the `all` point of the run's own seed, which is the champion's accuracy."""
    points = claimed_transfer_points(ctx.config, ctx.project, init, images, data, splits, lines.next_transfer,
                                     before_each=lines.share_cores)
    points += lines.helped_points()
    if (point := champion_point(ctx.config)) is not None:
        per_class, seed = point
        with tracking.child_run(f"curve_transfer_{tag_of(per_class, seed)}", project=ctx.project):
            mlflow.log_metric("test_accuracy", champion_test_accuracy)
        points.append({"labels_per_class": ALL, "seed": seed, "transfer": champion_test_accuracy})
    return points


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


def learning_curve(ctx: StageContext, init, images: torch.Tensor, data: ImageData, splits, lines: BaselineLines,
                   champion_test_accuracy: float) -> pd.DataFrame:
    """Every line at every point (the baseline lines from `lines`, started earlier), as a plot, a table and
    metrics `curve_<labels per class>_<line>`."""
    transfer = transfer_points(ctx, init, images, data, splits, champion_test_accuracy, lines) if init is not None else []
    points = pd.DataFrame(lines.points())
    if transfer:
        points = points.merge(pd.DataFrame(transfer), on=["labels_per_class", "seed"], how="left")
    points = points[["labels_per_class", "seed", "train_images", *[line for line in LINES if line in points]]]
    table = summarise(points)
    mlflow.log_table(points, "curve/points.json")
    tracking.log_json(table.reset_index().to_dict(orient="records"), "curve/curve.json")
    plot_curve(points, "curve/curve.png")
    for row, values in table.iterrows():
        mlflow.log_metrics({f"curve_{row}_{k}": float(v) for k, v in values.items() if np.isfinite(v)})
    return table
