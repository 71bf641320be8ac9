"""Matplotlib figures -> MLflow artifacts. Headless (Agg) so it runs on servers and in CI."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402


def new_figure(width: float = 6.0, height: float = 4.5):
    return plt.subplots(figsize=(width, height), dpi=110)


def log_figure(fig, artifact_file: str) -> None:
    """Log and close: figures left open leak memory across many stages and trials."""
    fig.tight_layout()
    mlflow.log_figure(fig, artifact_file)
    plt.close(fig)
