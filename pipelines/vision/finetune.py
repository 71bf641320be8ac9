"""Fine-tuning a ResNet-18 on the target: what the champion fit and every learning-curve fit share.

Transfer (a backbone given): a new head alone for `warmup_epochs` with the backbone frozen (a random
head's large gradients would otherwise wreck pretrained features in the first steps), then every layer
with discriminative learning rates (earlier layers hold general features: smaller steps). When the
target's classes are among the source's (digits), the head starts from the source's rows for them and
the warm-up is skipped: that head is trained already. Scratch: every layer from random weights for the
same number of epochs (the same budget). Seeded, augmented batches through the shared loop
(pipelines/common/torch_train.py: progress bars, every epoch to MLflow, early stopping).
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch

from pipelines.common.metrics import argmax_metrics, softmax
from pipelines.common.torch_train import adamw, fit
from pipelines.vision.config import VisionConfig
from pipelines.vision.model import (Backbone, augmented_batches, backbone_from_state, cross_entropy_loss,
                                    discriminative_groups, freeze_backbone, match_head, predict_logits, replace_head,
                                    resnet18)


def new_model(init: Backbone | None, classes: list[str], seed: int) -> tuple[torch.nn.Module, bool]:
    """The network to fine-tune, and whether its head came from the source's matching classes."""
    torch.manual_seed(seed)
    if init is None:
        return replace_head(resnet18(len(classes)), len(classes), seed), False
    model = backbone_from_state(init.state, len(classes), seed)
    return model, match_head(model, init.state, init.classes, classes)


def evaluation(images: torch.Tensor, labels: np.ndarray, split: str = "valid"):
    return lambda model: argmax_metrics(split, labels, softmax(predict_logits(model, images)))


def fine_tune(config: VisionConfig, init: Backbone | None, classes: list[str], images: torch.Tensor,
              labels: np.ndarray, train_rows: np.ndarray, valid_rows: np.ndarray, *, epochs: int, seed: int,
              restore_best: bool = True, early_stopping: bool = True) -> torch.nn.Module:
    """Transfer (init given): a new head alone for `warmup_epochs` with the backbone frozen (skipped when the
    head starts from the source's matching classes: it is trained already), then every layer with
    discriminative learning rates. Scratch (init None): every layer for the same number of epochs.
    Augmented, seeded batches; the shared loop logs every epoch and early-stops on validation."""
    settings = config.train
    model, matched = new_model(init, classes, seed)
    batch_size = min(settings.batch_size, len(train_rows))
    batches = augmented_batches(images, torch.as_tensor(labels), train_rows, batch_size=batch_size, seed=seed,
                                generator=torch.Generator().manual_seed(seed), settings=settings.augment)
    loss_of = cross_entropy_loss
    evaluate = evaluation(images[valid_rows], labels[valid_rows])
    if matched and mlflow.active_run():
        mlflow.log_metric("zero_shot_valid_accuracy", evaluate(model)["valid_accuracy"])
    warmup = min(settings.warmup_epochs, epochs - 1) if init is not None and not matched else 0
    selecting = early_stopping or restore_best  # else a fixed budget: one validation pass, at the end
    loop = settings.model_copy(update={"restore_best": restore_best,
                                       "patience": settings.patience if early_stopping else epochs,
                                       "evaluate_every": 1 if selecting else epochs})
    if warmup:
        freeze_backbone(model, True)
        head = adamw([p for p in model.parameters() if p.requires_grad], lr=settings.head_learning_rate)
        fit(model, head, settings=loop.model_copy(update={"epochs": warmup, "patience": warmup}), batches=batches,
            loss_of=loss_of, evaluate=evaluate, prefix="warmup_")
        freeze_backbone(model, False)
    if init is not None:
        groups = discriminative_groups(model, settings.learning_rate, settings.layer_decay)
    else:
        groups = [{"params": list(model.parameters()), "lr": settings.learning_rate}]
    optimizer = adamw(groups, weight_decay=settings.weight_decay)
    steps = (epochs - warmup) * -(-len(train_rows) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    fit(model, optimizer, settings=loop.model_copy(update={"epochs": epochs - warmup}), scheduler=scheduler,
        batches=batches, loss_of=loss_of, evaluate=evaluate, first_epoch=warmup)
    return model
