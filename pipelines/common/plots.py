"""Matplotlib figures -> MLflow artifacts. Headless (Agg) so it runs on servers and in CI."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402


def new_figure(width: float = 6.0, height: float = 4.5):
    return plt.subplots(figsize=(width, height), dpi=110)


def log_figure(fig, artifact_file: str) -> None:
    """Log and close: figures left open leak memory across many stages and trials."""
    fig.tight_layout()
    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)


def log_confusion_matrix(matrix, labels: list[str], artifact_file: str) -> None:
    fig, ax = new_figure(1.2 + 0.6 * len(labels), 1.0 + 0.6 * len(labels))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    log_figure(fig, artifact_file)


def log_reliability_diagram(y, probabilities, bins: int, artifact_file: str) -> None:
    """Accuracy against confidence per bin: on the diagonal = calibrated, below = over-confident."""
    from pipelines.common.metrics import calibration_bins, expected_calibration_error

    table = calibration_bins(y, probabilities, bins)
    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1], "k:", label="calibrated")
    ax.plot([c for c, _, _ in table], [a for _, a, _ in table], "o-", label="model")
    ax.set(xlabel="confidence of the predicted class", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"Reliability (ECE {expected_calibration_error(y, probabilities, bins):.3f})")
    ax.legend()
    log_figure(fig, artifact_file)


def log_image_grid(pictures: np.ndarray, titles: list[str], artifact_file: str, overlays: np.ndarray | None = None,
                   columns: int = 8) -> None:
    """Grey uint8 pictures in a grid with a title each; `overlays` ([0, 1] heat maps, e.g. Grad-CAM) drawn
    over them, stretched to the picture's extent whatever their resolution."""
    rows = max(1, -(-len(pictures) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (ax, picture, title) in enumerate(zip(axes.ravel(), pictures, titles)):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255, extent=(0, 1, 0, 1))
        if overlays is not None:
            ax.imshow(overlays[i], cmap="jet", alpha=0.45, extent=(0, 1, 0, 1))
        ax.set_title(title, fontsize=7)
    log_figure(fig, artifact_file)
