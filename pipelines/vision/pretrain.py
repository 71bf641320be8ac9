"""Source pretraining (weights: source): ResNet-18 on rendered characters, its own MLflow run, registered
as `vision-source`, and re-used while its config is unchanged.

The cache key is a hash of everything that shapes the weights (render settings, training settings, input
size and preprocessing, seed, torch and torchvision versions). A version of `vision-source` carries the
key as a tag; a pipeline whose key matches one downloads its weights instead of training (~minutes saved
on every `make vision` after the first). Change any of those numbers and a new version is trained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient

from pipelines.common import tracking
from pipelines.common.torch_train import adamw, fit
from pipelines.vision.config import VisionConfig
from pipelines.vision.model import (Backbone, augmented_batches, cross_entropy_loss, predict_logits, preprocessing,
                                    resnet18, to_tensor)
from pipelines.vision.source import render_source

log = logging.getLogger(__name__)
SOURCE_MODEL = "vision-source"
WEIGHTS_FILE, CLASSES_FILE = "resnet18_source.pt", "classes.json"
CONFIG_HASH_TAG = "config_hash"


def source_config_hash(config: VisionConfig) -> str:
    import torchvision

    shaping = {"source": config.source.model_dump(mode="json"), "input_size": config.model.input_size,
               "preprocessing": preprocessing(config.model.input_size, config.model.max_pixels).model_dump(mode="json"),
               "augment": config.train.augment.model_dump(mode="json"), "seed": config.seed,
               "torch": torch.__version__, "torchvision": torchvision.__version__}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def cached_version(config_hash: str):
    """The newest `vision-source` version trained with this config hash, or None."""
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{SOURCE_MODEL}'")
    except mlflow.exceptions.MlflowException:
        return None
    matching = [v for v in versions if v.tags.get(CONFIG_HASH_TAG) == config_hash]
    return max(matching, key=lambda v: int(v.version), default=None)


def load_version(version) -> Backbone:
    folder = Path(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="source"))
    return Backbone(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True),
                    json.loads((folder / CLASSES_FILE).read_text()))


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predict_logits(model, images).argmax(1) == labels.numpy()).mean())


def train_source(config: VisionConfig) -> tuple[Backbone, dict[str, float]]:
    """Render, pretrain, log and register; returns the weights and the run's metrics."""
    from sklearn.model_selection import train_test_split

    settings = config.source
    rendered = render_source(settings.render, seed=config.seed, workers=os.cpu_count() or 1)
    images = to_tensor(rendered.images, preprocessing(config.model.input_size, config.model.max_pixels))
    labels = torch.as_tensor(rendered.labels)
    train, valid = train_test_split(np.arange(len(labels)), test_size=settings.valid_fraction,
                                    stratify=rendered.labels, random_state=config.seed)
    mlflow.log_params({"source.classes": "".join(rendered.classes), "source.images": len(labels),
                       "source.fonts": len(rendered.fonts)})
    mlflow.log_text("\n".join(rendered.fonts), "source/fonts.txt")
    torch.manual_seed(config.seed)
    model = resnet18(len(rendered.classes))
    optimizer = adamw(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps = settings.epochs * -(-len(train) // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.learning_rate, total_steps=steps)
    batches = augmented_batches(images, labels, train, batch_size=settings.batch_size, seed=config.seed,
                                generator=torch.Generator().manual_seed(config.seed), settings=config.train.augment)

    history = fit(model, optimizer, settings=settings, scheduler=scheduler, batches=batches, prefix="source_",
                  loss_of=cross_entropy_loss,
                  evaluate=lambda m: {"valid_accuracy": accuracy(m, images[valid], labels[valid])})
    metrics = {"source_valid_accuracy": history.best_score, "source_train_seconds": history.seconds}
    if history.best_score < settings.min_accuracy:
        log.warning("source pretraining reached %.3f on its held-out split, below source.min_accuracy %.2f: "
                    "its features are weaker than intended (more epochs or images per class)",
                    history.best_score, settings.min_accuracy)
        mlflow.set_tag("source_below_min_accuracy", f"{history.best_score:.3f} < {settings.min_accuracy}")
    return Backbone(model.state_dict(), rendered.classes), metrics


def source_weights(config: VisionConfig, project: str) -> tuple[Backbone, dict[str, str | float]]:
    """The pretrained source backbone: from the registry when this config trained one before, else trained
    now in a child run of the train stage and registered as a new `vision-source` version."""
    key = source_config_hash(config)
    version = cached_version(key)
    if version is not None:
        log.info("source pretraining: cache hit, %s version %s (config hash %s)", SOURCE_MODEL, version.version, key)
        run = MlflowClient().get_run(version.run_id)
        return load_version(version), {"source_version": version.version, "source_cache": "hit",
                                       "source_valid_accuracy": run.data.metrics.get("source_valid_accuracy", float("nan"))}
    started = time.perf_counter()
    with tracking.child_run("source_pretraining", project=project, model_name=SOURCE_MODEL) as run:
        mlflow.set_tag(CONFIG_HASH_TAG, key)
        backbone, metrics = train_source(config)
        with tracking.temporary_dir() as tmp:
            torch.save(backbone.state, tmp / WEIGHTS_FILE)
            (tmp / CLASSES_FILE).write_text(json.dumps(backbone.classes))
            mlflow.log_artifacts(str(tmp), "source")
        mlflow.log_metrics(metrics)
        client = MlflowClient()
        if not client.search_registered_models(f"name = '{SOURCE_MODEL}'"):
            client.create_registered_model(SOURCE_MODEL, description="ResNet-18 backbones pretrained on rendered "
                                           "characters: the offline source for vision transfer learning")
        model_version = client.create_model_version(
            SOURCE_MODEL, source=f"{run.info.artifact_uri}/source", run_id=run.info.run_id,
            tags={CONFIG_HASH_TAG: key}, description="ResNet-18 pretrained on rendered characters (vision source task)")
    log.info("source pretraining: %.0f s, held-out accuracy %.4f, registered %s version %s",
             time.perf_counter() - started, metrics["source_valid_accuracy"], SOURCE_MODEL, model_version.version)
    return backbone, {"source_version": model_version.version, "source_cache": "miss", **metrics}
