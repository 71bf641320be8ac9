"""The from-scratch Keras CNN baseline (pipelines/vision/keras_cnn.py) on a slice of the real sklearn digits.

A real keras model on the torch backend, trained a few epochs on 16x16 three-channel digits: it learns,
its probabilities are probabilities, the same seed gives the same model, epochs land in the active MLflow
run, bad inputs and unknown config keys are errors that name the field, and importing the module loads
no keras.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

# find_spec, not importorskip: importing keras here, before fit_keras_cnn picks the backend, would load
# keras on its own default backend (tensorflow, not installed).
if importlib.util.find_spec("keras") is None:
    pytest.skip("keras is not installed (pip install -e '.[deep]')", allow_module_level=True)

from pipelines.common.config import ConfigError, load_config  # noqa: E402
from pipelines.vision.keras_cnn import KerasCnnConfig, fit_keras_cnn  # noqa: E402

TRAIN_ROWS, VALID_ROWS = 300, 100
UPSCALE = 2  # 8x8 -> 16x16
TINY = KerasCnnConfig(filters=[8, 16], dense=32, dropout=0.1, epochs=8, batch_size=32, learning_rate=1e-2, patience=8)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread while these tests run. Keras issues many small torch ops, and on a shared 2-core
    machine two spinning OpenMP threads per op made a fit 20-30x slower (1 s -> 20-35 s); on 1 thread, or
    with OMP_WAIT_POLICY=PASSIVE, it takes 1 s. The thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    """Real digits scaled 0..16 -> [0, 1], upscaled to 16x16, grey repeated into 3 channels: [N, 3, 16, 16]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.kron(data.images / 16.0, np.ones((UPSCALE, UPSCALE))).astype(np.float32)
    x = np.repeat(images[:, None], 3, axis=1)
    y = data.target.astype(np.int64)
    train, valid = slice(0, TRAIN_ROWS), slice(TRAIN_ROWS, TRAIN_ROWS + VALID_ROWS)
    return x[train], y[train], x[valid], y[valid]


@pytest.fixture(scope="module")
def fitted(digits):
    return fit_keras_cnn(*digits, classes=10, settings=TINY, seed=0)


def test_learns_digits_and_returns_probabilities(digits, fitted):
    _, _, valid_x, valid_y = digits
    probabilities = fitted.predict_proba(valid_x)
    assert probabilities.shape == (VALID_ROWS, 10) and probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5) and (probabilities >= 0).all()
    assert (probabilities.argmax(axis=1) == valid_y).mean() > 0.6  # chance is 0.1
    assert fitted.backend == "torch" and fitted.parameters > 0


def test_history_has_every_epoch_and_the_model_holds_the_best(digits, fitted):
    _, _, valid_x, valid_y = digits
    history = fitted.history
    epochs = len(history["loss"])
    assert 1 <= epochs <= TINY.epochs
    assert all(len(history[key]) == epochs for key in ("accuracy", "val_loss", "val_accuracy"))
    accuracy = (fitted.predict_proba(valid_x).argmax(axis=1) == valid_y).mean()
    assert fitted.best_epoch == int(np.argmax(history["val_accuracy"]))
    assert accuracy == pytest.approx(history["val_accuracy"][fitted.best_epoch], abs=1e-6)  # best weights restored


def test_early_stopping_stops_at_the_first_epoch_without_improvement(digits):
    model = fit_keras_cnn(*digits, classes=10, settings=TINY.model_copy(update={"patience": 0}), seed=2)
    accuracy = model.history["val_accuracy"]
    assert len(accuracy) < TINY.epochs  # it did stop
    assert all(later > earlier for earlier, later in zip(accuracy[:-2], accuracy[1:-1]))  # improving until ...
    assert accuracy[-1] <= max(accuracy[:-1])  # ... the one epoch that did not
    assert model.best_epoch == len(accuracy) - 2


def test_the_same_seed_gives_the_same_probabilities(digits, fitted):
    """Keras on torch on CPU repeats itself exactly for the same seed and thread count (measured with 1 and 2
    threads; results differ between thread counts): the seed fixes the initial weights (python random), the
    shuffles (numpy) and dropout (keras' seed generator)."""
    valid_x = digits[2]
    again = fit_keras_cnn(*digits, classes=10, settings=TINY, seed=0)
    np.testing.assert_allclose(again.predict_proba(valid_x), fitted.predict_proba(valid_x), atol=1e-5, rtol=0)
    assert again.history == fitted.history


def test_epochs_go_to_the_active_mlflow_run(digits, tmp_mlflow):
    settings = TINY.model_copy(update={"epochs": 2, "patience": 2})
    mlflow.set_experiment("keras-cnn")  # not the experiment an earlier test left active in another store
    with mlflow.start_run() as run:
        model = fit_keras_cnn(*digits, classes=10, settings=settings, seed=1)
    client = MlflowClient()
    for name, keras_name in (("keras_train_loss", "loss"), ("keras_valid_accuracy", "val_accuracy")):
        logged = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
        assert [m.step for m in logged] == [0, 1]
        assert [m.value for m in logged] == pytest.approx(model.history[keras_name])


def test_bad_inputs_are_errors_that_name_the_argument(digits):
    train_x, train_y, valid_x, valid_y = digits
    with pytest.raises(ValueError, match="train_x: expected images"):
        fit_keras_cnn(train_x[:, 0], train_y, valid_x, valid_y, classes=10, settings=TINY, seed=0)
    with pytest.raises(ValueError, match="valid_y: class ids must lie in 0..9"):
        fit_keras_cnn(train_x, train_y, valid_x, valid_y + 1, classes=10, settings=TINY, seed=0)
    with pytest.raises(ValueError, match="filters: 5 conv blocks"):
        fit_keras_cnn(*digits, classes=10, settings=KerasCnnConfig(filters=[4] * 5), seed=0)


def test_unknown_or_invalid_config_keys_are_rejected(tmp_path):
    with pytest.raises(ValidationError, match="filter"):
        KerasCnnConfig(filter=[8, 16])
    with pytest.raises(ValidationError, match="dropout"):
        KerasCnnConfig(dropout=1.0)
    path = tmp_path / "cnn.yaml"
    path.write_text("filters: [8, 16]\nepoch: 3\n")
    with pytest.raises(ConfigError, match="epoch"):
        load_config(path, KerasCnnConfig)


def test_importing_the_module_loads_no_keras():
    code = "import sys, pipelines.vision.keras_cnn; print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
