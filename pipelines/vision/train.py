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
from pipelines.common.torch_train import fit, seeded_order, trainable_parameters
from pipelines.vision.config import VisionConfig
from pipelines.vision.curve import learning_curve
from pipelines.vision.data import ImageData, images_frame, load_images, split_indices
from pipelines.vision.model import (augment, backbone_from_state, checkpoint_state, discriminative_groups,
                                    freeze_backbone, imagenet_state, predict_logits, preprocessing, replace_head,
                                    resnet18, to_tensor)
from pipelines.vision.pretrain import source_weights

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")
WEIGHTS_FILE, META_FILE = "resnet18.pt", "meta.json"


def data_spec(config: VisionConfig) -> str:
    return os.environ.get("VISION_DATA") or config.data.spec


def load_and_split(ctx: StageContext) -> tuple[ImageData, dict[str, np.ndarray]]:
    config = ctx.config
    data = load_images(data_spec(config), min_per_class=config.data.min_per_class)
    tracking.log_loaded_data(data.sha256, data.source, data.source.removeprefix("imagefolder:"), len(data.labels),
                             [], synthetic_warning="")
    splits = split_indices(data.labels, valid_fraction=config.split.valid_fraction,
                           test_fraction=config.split.test_fraction,
                           seed=config.seed if config.split.seed is None else config.split.seed)
    for name, rows in splits.items():
        tracking.log_frame(images_frame(data, rows), f"splits/{name}.parquet")
        mlflow.log_metric(f"{name}_rows", len(rows))
    tracking.log_json({name: {data.classes[c]: int(n) for c, n in zip(*np.unique(data.labels[rows], return_counts=True))}
                       for name, rows in splits.items()}, "data/class_balance.json")
    ctx.summary["data"] = f"{data.source} ({len(data.labels)} images, {len(data.classes)} classes, sha256 {data.sha256[:12]})"
    return data, splits


def initial_weights(ctx: StageContext) -> dict[str, torch.Tensor] | None:
    """The backbone to transfer from, as `model.weights` says (None: from scratch)."""
    weights = ctx.config.model.weights
    if weights == "none":
        return None
    if weights == "imagenet":
        return imagenet_state()
    if weights == "source":
        state, facts = source_weights(ctx.config, ctx.project)
        mlflow.log_params({k: v for k, v in facts.items() if isinstance(v, str)})
        mlflow.log_metrics({k: v for k, v in facts.items() if not isinstance(v, str)})
        ctx.summary["source"] = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in facts.items())
        return state
    return checkpoint_state(weights)


def new_model(init: dict[str, torch.Tensor] | None, classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return backbone_from_state(init, classes, seed) if init is not None else replace_head(resnet18(classes), classes, seed)


def evaluation(images: torch.Tensor, labels: np.ndarray, split: str = "valid"):
    return lambda model: argmax_metrics(split, labels, softmax(predict_logits(model, images)))


def fine_tune(config: VisionConfig, init: dict[str, torch.Tensor] | None, images: torch.Tensor, labels: np.ndarray,
              train_rows: np.ndarray, valid_rows: np.ndarray, *, epochs: int, seed: int, restore_best: bool = True,
              early_stopping: bool = True) -> torch.nn.Module:
    """Transfer (init given): the new head alone for `warmup_epochs` with the backbone frozen, then every layer
    with discriminative learning rates. Scratch (init None): every layer for the same number of epochs.
    Augmented, seeded batches; the shared loop logs every epoch and early-stops on validation."""
    settings = config.train
    model = new_model(init, int(labels.max()) + 1, seed)
    batch_size = min(settings.batch_size, len(train_rows))
    generator = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(labels)

    def batches(epoch: int):
        order = torch.as_tensor(train_rows)[seeded_order(len(train_rows), seed, epoch)]
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            yield augment(images[rows], generator, degrees=settings.augment.degrees,
                          translate=settings.augment.translate, scale=settings.augment.scale), y[rows]

    def loss_of(m, batch):
        return torch.nn.functional.cross_entropy(m(batch[0]), batch[1])

    evaluate = evaluation(images[valid_rows], labels[valid_rows])
    warmup = min(settings.warmup_epochs, epochs - 1) if init is not None else 0
    loop = settings.model_copy(update={"restore_best": restore_best,
                                       "patience": settings.patience if early_stopping else epochs})
    if warmup:
        freeze_backbone(model, True)
        head = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.head_learning_rate)
        fit(model, head, settings=loop.model_copy(update={"epochs": warmup, "patience": warmup}), batches=batches,
            loss_of=loss_of, evaluate=evaluate, prefix="warmup_")
        freeze_backbone(model, False)
        groups = discriminative_groups(model, settings.learning_rate, settings.layer_decay)
    else:
        groups = [{"params": list(model.parameters()), "lr": settings.learning_rate}]
    optimizer = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    steps = (epochs - warmup) * -(-len(train_rows) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    fit(model, optimizer, settings=loop.model_copy(update={"epochs": epochs - warmup}), scheduler=scheduler,
        batches=batches, loss_of=loss_of, evaluate=evaluate, first_epoch=warmup)
    return model


def fit_champion(ctx: StageContext, init, images: torch.Tensor, labels: np.ndarray, splits) -> tuple[torch.nn.Module, dict]:
    """The model this pipeline ships: every training image, early stopping on validation."""
    config = ctx.config
    name = "resnet18_transfer" if init is not None else "resnet18_scratch"
    with tracking.child_run(name, project=ctx.project, model_name=name):
        mlflow.log_params({"weights": config.model.weights, "input_size": config.model.input_size})
        model = fine_tune(config, init, images, labels, splits["train"], splits["valid"],
                          epochs=config.train.epochs, seed=config.seed)
        trainable, total = trainable_parameters(model)
        metrics = argmax_metrics("test", labels[splits["test"]], softmax(predict_logits(model, images[splits["test"]])))
        mlflow.log_metrics(metrics | {"total_parameters": total})
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
    init = initial_weights(ctx)
    model, metrics = fit_champion(ctx, init, images, data.labels, splits)
    save_model(model, data.classes, settings, config)
    mlflow.log_metrics(metrics)
    curve = learning_curve(ctx, init, images, data, splits, champion_test_accuracy=metrics["test_accuracy"])
    ctx.summary |= {"test_accuracy": metrics["test_accuracy"], "test_macro_f1": metrics["test_macro_f1"],
                    "learning_curve": "Test accuracy by labels per class:\n" + curve.round(4).to_string()}
    mlflow.log_metric("train_stage_seconds", time.perf_counter() - started)


# ------------------------------------------------------------------------------ read by later stages
def load_split(ctx: StageContext, name: str) -> pd.DataFrame:
    return pd.read_parquet(ctx.artifact("train", f"splits/{name}.parquet"))


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
