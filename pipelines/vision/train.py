"""Train stage: load and validate the images, split them, get the source backbone, fine-tune ResNet-18 on
the target, and measure what the transfer buys (the learning curve and the baselines).

Outputs (artifacts of this stage's run, read by later stages through MLflow):
  splits/{train,valid,test}.parquet   image (PNG bytes), label, row
  model/resnet18.pt, model/meta.json  the fine-tuned weights, classes and preprocessing
  curve/curve.json, curve/curve.png   accuracy vs labels per class: transfer, scratch, pixel LR, Keras CNN
Every fit is a child run (the MLflow UI compares them side by side), every epoch's metrics logged.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time

import mlflow
import numpy as np
import pandas as pd
import torch

from modelpkg.codecs.image import ImagePreprocessing
from pipelines.common import tracking
from pipelines.common.metrics import argmax_metrics, softmax
from pipelines.common.runner import StageContext
from pipelines.common.torch_train import trainable_parameters
from pipelines.vision.config import VisionConfig
from pipelines.vision.curve import BaselineLines, learning_curve
from pipelines.vision.data import ImageData, images_frame, load_images, split_indices
from pipelines.vision.finetune import fine_tune
from pipelines.vision.model import (Backbone, checkpoint_state, imagenet_state, predict_logits, preprocessing,
                                    resnet18, to_tensor)
from pipelines.vision.pretrain import source_weights

log = logging.getLogger(__name__)
WEIGHTS_FILE, META_FILE = "resnet18.pt", "meta.json"


def data_spec(config: VisionConfig) -> str:
    return os.environ.get("VISION_DATA") or config.data.spec


def load_and_split(ctx: StageContext) -> tuple[ImageData, dict[str, np.ndarray]]:
    config = ctx.config
    data = load_images(data_spec(config), min_per_class=config.data.min_per_class)
    folder = data.source.removeprefix("imagefolder:") if data.source.startswith("imagefolder:") else None
    tracking.log_loaded_data(data.sha256, data.source, folder, len(data.labels), [], synthetic_warning="")
    splits = split_indices(data.labels, valid_fraction=config.split.valid_fraction,
                           test_fraction=config.split.test_fraction,
                           seed=config.seed if config.split.seed is None else config.split.seed)
    for name, rows in splits.items():
        tracking.log_split(images_frame(data, rows), name, targets="label")
        mlflow.log_metric(f"{name}_rows", len(rows))
    tracking.log_json({name: {data.classes[c]: int(n) for c, n in zip(*np.unique(data.labels[rows], return_counts=True))}
                       for name, rows in splits.items()}, "data/class_balance.json")
    ctx.summary["data"] = f"{data.source} ({len(data.labels)} images, {len(data.classes)} classes, sha256 {data.sha256[:12]})"
    return data, splits


def initial_weights(ctx: StageContext) -> Backbone | None:
    """The backbone to transfer from, as `model.weights` says (None: from scratch)."""
    weights = ctx.config.model.weights
    if weights == "none":
        return None
    if weights == "imagenet":
        return Backbone(imagenet_state())
    if weights == "source":
        backbone, facts = source_weights(ctx.config, ctx.project)
        mlflow.log_params({k: v for k, v in facts.items() if isinstance(v, str)})
        mlflow.log_metrics({k: v for k, v in facts.items() if not isinstance(v, str)})
        ctx.summary["source"] = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in facts.items())
        return backbone
    return Backbone(checkpoint_state(weights))


def fit_champion(ctx: StageContext, init: Backbone | None, classes: list[str], images: torch.Tensor, labels: np.ndarray,
                 splits) -> tuple[torch.nn.Module, dict]:
    """The model this pipeline ships: every training image, early stopping on validation."""
    config = ctx.config
    name = "resnet18_transfer" if init is not None else "resnet18_scratch"
    with tracking.child_run(name, project=ctx.project, model_name=name):
        mlflow.log_params({"weights": config.model.weights, "input_size": config.model.input_size})
        model = fine_tune(config, init, classes, images, labels, splits["train"], splits["valid"],
                          epochs=config.train.epochs, seed=config.seed)
        metrics = argmax_metrics("test", labels[splits["test"]], softmax(predict_logits(model, images[splits["test"]])))
        mlflow.log_metrics(metrics | {"total_parameters": trainable_parameters(model)[1]})
    return model, metrics


def save_model(model: torch.nn.Module, classes: list[str], settings: ImagePreprocessing, config: VisionConfig) -> None:
    with tracking.temporary_dir() as tmp:
        torch.save(model.state_dict(), tmp / WEIGHTS_FILE)
        (tmp / META_FILE).write_text(json.dumps({"classes": classes, "preprocessing": settings.model_dump(),
                                                 "weights": config.model.weights}))
        mlflow.log_artifacts(str(tmp), "model")


def run(ctx: StageContext) -> None:
    started = time.perf_counter()
    config = ctx.config
    torch.set_num_threads(config.optimize.threads)
    data, splits = load_and_split(ctx)
    settings = preprocessing(config.model.input_size, config.model.max_pixels)
    images = to_tensor(data.images, settings)
    lines = BaselineLines(ctx, images, data, splits)  # the curve's lines that need no source: started first
    try:
        lines.share_cores()
        init = initial_weights(ctx)
        lines.offer_transfer(init)  # the second process may fit transfer points once its own lines are done
        lines.share_cores()
        model, metrics = fit_champion(ctx, init, data.classes, images, data.labels, splits)
        save_model(model, data.classes, settings, config)
        mlflow.log_metrics(metrics)
        curve = learning_curve(ctx, init, images, data, splits, lines, champion_test_accuracy=metrics["test_accuracy"])
    finally:
        lines.close()
    ctx.summary |= {"test_accuracy": metrics["test_accuracy"], "test_macro_f1": metrics["test_macro_f1"],
                    "learning_curve": "Test accuracy by labels per class:\n" + curve.round(4).to_string()}
    mlflow.log_metric("train_stage_seconds", time.perf_counter() - started)


# ------------------------------------------------------------------------------ read by later stages
def load_split(ctx: StageContext, name: str) -> pd.DataFrame:
    return pd.read_parquet(ctx.artifact("train", tracking.split_artifact(name)))


def split_images(frame: pd.DataFrame) -> np.ndarray:
    """The stored PNG bytes back to uint8 arrays (lossless: the pixels training saw)."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(data))) for data in frame["image"]])


def load_trained(ctx: StageContext) -> tuple[torch.nn.Module, list[str], ImagePreprocessing]:
    folder = ctx.artifact("train", "model")
    meta = json.loads((folder / META_FILE).read_text())
    model = resnet18(len(meta["classes"]))
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval(), meta["classes"], ImagePreprocessing.model_validate(meta["preprocessing"])
