"""A small CNN trained from scratch in Keras 3: the no-transfer baseline of the vision learning curve.

It answers "what does transfer learning buy?": the same splits and the same normalised arrays the ResNet
gets, a few Conv-BN-ReLU-MaxPool blocks, a dense layer, dropout, Adam, early stopping on validation
accuracy with the best epoch's weights restored.

Keras runs on the torch backend by default, so no second deep-learning stack is installed; set
KERAS_BACKEND=tensorflow (or jax) before the first keras import to use another. Keras is imported inside
`fit_keras_cnn`, so importing this module (for its config, say) loads no keras.

Layout: inputs arrive channels first, [N, C, H, W], as the ResNet takes them. On torch the model is built
channels first (torch's own layout: no transposes per layer); on other backends it is built channels last
and the arrays are transposed once, in `fit_keras_cnn` and in `predict_proba`, because TensorFlow has no
channels-first convolution or pooling on CPU.

Threads: keras issues many small torch ops, one OpenMP barrier each. On a CPU shared with other processes,
torch's spinning OpenMP threads made a fit 10-30x slower with 2 threads than with 1; set the thread count
(torch.set_num_threads) or OMP_WAIT_POLICY=PASSIVE (before torch loads) in the caller, as this function
leaves the process's threads alone.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
from pydantic import Field, PositiveInt

from pipelines.common.config import Config

log = logging.getLogger(__name__)
DEFAULT_BACKEND = "torch"
METRIC_PREFIX = "keras_"  # MLflow names: keras_train_loss, keras_valid_accuracy (step = epoch)


class KerasCnnConfig(Config):
    # One Conv-BN-ReLU-MaxPool block per entry. [16, 32] rather than [32, 64]: on full digits at 32x32 it is
    # as accurate (test accuracy 0.97-0.98 over three split seeds, either way) at about half the CPU time.
    filters: list[PositiveInt] = Field([16, 32], min_length=1)
    dense: int = Field(128, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)  # before the dense layer and before the head
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    patience: int = Field(5, ge=0)  # epochs without a better valid accuracy before stopping


@dataclass
class KerasCnn:
    """A fitted CNN: what the learning-curve table needs from it."""

    model: Any  # keras.Model
    data_format: str  # "channels_first" or "channels_last": how the model takes its input
    backend: str  # keras' backend: "torch", "tensorflow" or "jax"
    parameters: int
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy
    best_epoch: int  # 0-based: the epoch whose weights the model holds
    seconds: float = 0.0
    predict_batch_size: int = field(default=256, repr=False)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """[N, C, H, W] float32 images -> [N, classes] float32 class probabilities."""
        x = as_images(x, "x")
        return np.asarray(self.model.predict(to_layout(x, self.data_format), batch_size=self.predict_batch_size,
                                             verbose=0), dtype=np.float32)


# --------------------------------------------------------------------------------------- checks


def as_images(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected images [N, C, H, W] (channels first), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def as_labels(y: np.ndarray, rows: int, classes: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != rows:
        raise ValueError(f"{name}: expected {rows} class ids (one per image), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: expected integer class ids, got dtype {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"{name}: class ids must lie in 0..{classes - 1} (classes={classes}), "
                         f"got {y.min()}..{y.max()}")
    return y.astype(np.int64)


def check_depth(height: int, width: int, blocks: int) -> None:
    """Each block halves the image; an image pooled below 1x1 is a config error, not a keras shape error."""
    if min(height, width) // 2 ** blocks < 1:
        raise ValueError(f"filters: {blocks} conv blocks halve a {height}x{width} image below 1x1; "
                         f"use at most {int(np.log2(min(height, width)))} blocks or larger images")


# --------------------------------------------------------------------------------------- model


def import_keras():
    """keras on the torch backend unless KERAS_BACKEND says otherwise (the variable is read at first import)."""
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    import keras

    return keras


def data_format_for(backend: str) -> str:
    return "channels_first" if backend == "torch" else "channels_last"


def to_layout(x: np.ndarray, data_format: str) -> np.ndarray:
    """[N, C, H, W] -> what the model takes."""
    return x if data_format == "channels_first" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def build_cnn(keras, input_shape: tuple[int, ...], classes: int, settings: KerasCnnConfig, data_format: str):
    """Conv-BN-ReLU-MaxPool blocks (the conv has no bias: BatchNorm's shift replaces it), then dropout,
    dense, dropout and a softmax head."""
    layers = keras.layers
    channel_axis = 1 if data_format == "channels_first" else -1
    inputs = keras.Input(shape=input_shape)
    h = inputs
    for width in settings.filters:
        h = layers.Conv2D(width, 3, padding="same", use_bias=False, data_format=data_format)(h)
        h = layers.BatchNormalization(axis=channel_axis)(h)
        h = layers.ReLU()(h)
        h = layers.MaxPooling2D(2, data_format=data_format)(h)
    h = layers.Flatten(data_format=data_format)(h)
    h = layers.Dropout(settings.dropout)(h)
    h = layers.Dense(settings.dense, activation="relu")(h)
    h = layers.Dropout(settings.dropout)(h)
    outputs = layers.Dense(classes, activation="softmax")(h)
    return keras.Model(inputs, outputs, name="keras_cnn")


def mlflow_epoch_logger(keras):
    """Per-epoch training loss and valid accuracy into the active MLflow run, step = epoch."""
    def log_epoch(epoch: int, logs: dict) -> None:
        mlflow.log_metrics({f"{METRIC_PREFIX}train_loss": float(logs["loss"]),
                            f"{METRIC_PREFIX}valid_accuracy": float(logs["val_accuracy"])}, step=epoch)

    return keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)


# --------------------------------------------------------------------------------------- training


def fit_keras_cnn(train_x: np.ndarray, train_y: np.ndarray, valid_x: np.ndarray, valid_y: np.ndarray, *,
                  classes: int, settings: KerasCnnConfig, seed: int) -> KerasCnn:
    """Train from scratch on [N, C, H, W] float32 images (normalised as the ResNet's) and integer class ids.

    `keras.utils.set_random_seed(seed)` seeds Python, NumPy and torch globally (keras has no local seed for
    shuffling), so the caller's global random state changes. Metrics go to MLflow only inside an active run.
    """
    if classes < 2:
        raise ValueError(f"classes: need at least 2, got {classes}")
    train_x, valid_x = as_images(train_x, "train_x"), as_images(valid_x, "valid_x")
    if train_x.shape[1:] != valid_x.shape[1:]:
        raise ValueError(f"valid_x: images of shape {valid_x.shape[1:]} but train_x has {train_x.shape[1:]}")
    train_y = as_labels(train_y, len(train_x), classes, "train_y")
    valid_y = as_labels(valid_y, len(valid_x), classes, "valid_y")
    check_depth(*train_x.shape[2:], len(settings.filters))

    keras = import_keras()
    backend = keras.backend.backend()
    data_format = data_format_for(backend)
    keras.utils.set_random_seed(seed)
    train_x, valid_x = to_layout(train_x, data_format), to_layout(valid_x, data_format)
    model = build_cnn(keras, train_x.shape[1:], classes, settings, data_format)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=settings.patience,
                                               restore_best_weights=True)]
    if mlflow.active_run() is not None:
        callbacks.append(mlflow_epoch_logger(keras))

    started = time.perf_counter()
    fitted = model.fit(train_x, train_y, validation_data=(valid_x, valid_y), epochs=settings.epochs,
                       batch_size=settings.batch_size, shuffle=True, callbacks=callbacks,
                       verbose=1 if sys.stdout.isatty() else 0)
    seconds = time.perf_counter() - started
    history = {name: [float(v) for v in values] for name, values in fitted.history.items()}
    best_epoch = int(np.argmax(history["val_accuracy"]))  # first best, as EarlyStopping keeps it
    log.info("keras cnn (%s): %d parameters, %d epochs in %.1fs, best valid accuracy %.4f at epoch %d", backend,
             model.count_params(), len(history["loss"]), seconds, history["val_accuracy"][best_epoch], best_epoch + 1)
    return KerasCnn(model, data_format, backend, int(model.count_params()), history, best_epoch, seconds)
