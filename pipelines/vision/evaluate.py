"""Evaluate stage: the fine-tuned ResNet-18 on the test split, beside the classical baseline.

Logged: accuracy, macro-F1, per-class precision/recall (classification report), confusion matrix, a grid
of misclassified test images (true -> predicted), calibration (expected calibration error and a
reliability diagram), Grad-CAM maps for a few test images, and an RBF SVM on the raw pixels trained on the
same split: the network has to at least match that classical baseline.
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from sklearn.svm import SVC

from pipelines.common.evaluate import log_argmax_evaluation
from pipelines.common.metrics import softmax
from pipelines.common.plots import log_image_grid
from pipelines.common.runner import StageContext
from pipelines.vision.model import predict_logits, to_tensor
from pipelines.vision.train import load_split, load_trained, split_images


def class_ids(frame, classes: list[str]) -> np.ndarray:
    from modelpkg.runtime import class_indices

    return class_indices(frame["label"], classes, "the vision model")


def grad_cam(model: torch.nn.Module, images: torch.Tensor, targets: np.ndarray, layer: str) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): the layer's activations weighted by the mean gradient of the target
    class score, ReLU, upsampled to the input size, scaled to [0, 1] per image."""
    captured = {}
    module = dict(model.named_modules())[layer]
    forward = module.register_forward_hook(lambda m, i, out: captured.update(activation=out))
    backward = module.register_full_backward_hook(lambda m, gin, gout: captured.update(gradient=gout[0]))
    try:
        model.eval()
        inputs = images.clone().requires_grad_(True)
        scores = model(inputs)
        scores[torch.arange(len(targets)), torch.as_tensor(targets)].sum().backward()
    finally:
        forward.remove()
        backward.remove()
    weights = captured["gradient"].mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * captured["activation"]).sum(dim=1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    return (cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)).detach().numpy()


def svm_baseline(ctx: StageContext, train_images: np.ndarray, train_y: np.ndarray, test_images: np.ndarray,
                 test_y: np.ndarray) -> float:
    settings = ctx.config.evaluate
    flat = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255.0  # noqa: E731
    svm = SVC(C=settings.svm_C, gamma=settings.svm_gamma).fit(flat(train_images), train_y)
    return float((svm.predict(flat(test_images)) == test_y).mean())


def run(ctx: StageContext) -> None:
    config = ctx.config
    model, classes, settings = load_trained(ctx)
    test, train = load_split(ctx, "test"), load_split(ctx, "train")
    pictures, y = split_images(test), class_ids(test, classes)
    images = to_tensor(pictures, settings)
    probabilities = softmax(predict_logits(model, images))
    predicted = probabilities.argmax(axis=1)
    metrics = log_argmax_evaluation(y, probabilities, classes, config.evaluate.calibration_bins)
    metrics["test_svm_rbf_pixels_accuracy"] = svm_baseline(ctx, split_images(train), class_ids(train, classes), pictures, y)
    mlflow.log_metric("test_svm_rbf_pixels_accuracy", metrics["test_svm_rbf_pixels_accuracy"])
    wrong = np.flatnonzero(predicted != y)[:config.evaluate.misclassified]
    if len(wrong):
        log_image_grid(pictures[wrong], [f"{classes[y[i]]} -> {classes[predicted[i]]} ({probabilities[i].max():.2f})"
                                         for i in wrong], "evaluate/misclassified.png")
    shown = np.arange(min(config.evaluate.gradcam_examples, len(y)))
    if len(shown):
        maps = grad_cam(model, images[shown], predicted[shown], config.evaluate.gradcam_layer)
        log_image_grid(pictures[shown], [f"true {classes[y[i]]}, pred {classes[predicted[i]]}" for i in shown],
                       "evaluate/grad_cam.png", overlays=maps)
    ctx.summary |= {"test_accuracy": metrics["test_accuracy"], "test_macro_f1": metrics["test_macro_f1"],
                    "test_ece": metrics["test_ece"],
                    "test_svm_rbf_pixels_accuracy": metrics["test_svm_rbf_pixels_accuracy"],
                    "misclassified_test_images": int((predicted != y).sum())}
