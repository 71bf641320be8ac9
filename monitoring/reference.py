"""The model under watch and what it is compared with: its contract, its ONNX session, its reference rows.

Everything is found through the registry: alias -> version -> the MLflow ONNX model directory
(`model.onnx` + `extra_files/contract.json`) -> the contract's run id -> the reference artifacts logged
at export time. Monitoring never guesses a file path, so it always compares production with exactly what
the serving version was trained and validated on. Only the contract is read: no pipeline code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime as ort
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines.common.contract import CONTRACT_FILE, ONNX_FILE, ModelContract

# Columns the export stage adds to the reference beside the model inputs.
LABEL = "label"  # ground truth, as a class label string
PROBABILITY = "probability"  # P(positive class) by the exported model
PREDICTED_LABEL = "predicted_label"  # class label at the contract's threshold
EXTRA_FILES_DIR = "extra_files"  # where MLflow's ONNX flavour keeps the contract beside the model
NUMPY_DTYPES = {"float32": np.float32, "int64": np.int64, "uint8": np.uint8}


@dataclass(frozen=True)
class WatchedModel:
    """One registered version: its contract and its ONNX graph, scored without any pipeline code."""

    name: str
    version: str
    contract: ModelContract
    onnx_path: Path

    @property
    def features(self) -> list[str]:
        return [spec.name for spec in self.contract.inputs]

    @property
    def categorical(self) -> list[str]:
        return [spec.name for spec in self.contract.inputs if spec.dtype == "string"]

    @property
    def numerical(self) -> list[str]:
        return [spec.name for spec in self.contract.inputs if spec.dtype != "string"]

    @functools.cached_property
    def session(self) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # unused-initialiser warnings are noise here
        return ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])

    def feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Raw rows -> one [rows, 1] array per graph input, typed as the contract says."""
        if self.contract.kind != "tabular_classifier":
            raise NotImplementedError(f"scoring {self.contract.kind} models is not supported yet")
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise ValueError(f"rows lack model input column(s) {missing} of {self.name} v{self.version}")
        return {
            spec.name: (
                frame[spec.name].astype(str).to_numpy()
                if spec.dtype == "string"
                else frame[spec.name].to_numpy(dtype=NUMPY_DTYPES[spec.dtype])
            ).reshape(-1, 1)
            for spec in self.contract.inputs
        }

    def positive_probability(self, frame: pd.DataFrame) -> np.ndarray:
        """P(positive class) per row: what the champion/challenger comparison scores."""
        probabilities = self.session.run([self.contract.probability_output], self.feeds(frame))[0]
        return np.asarray(probabilities[:, self.positive_index], dtype=np.float64)

    def with_predictions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows plus `probability` and `predicted_label`, as serving would have logged them."""
        probability = self.positive_probability(frame)
        negative = next(label for label in self.contract.labels if label != self.contract.positive_label)
        return frame.assign(**{PROBABILITY: probability, PREDICTED_LABEL: np.where(
            probability >= self.contract.threshold, self.contract.positive_label, negative)})

    @property
    def positive_index(self) -> int:
        if self.contract.positive_label is None:
            raise ValueError(f"{self.name} v{self.version}: the contract names no positive label")
        return self.contract.labels.index(self.contract.positive_label)


def version_for(name: str, alias: str) -> str:
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        raise LookupError(
            f"no version of registered model '{name}' holds alias '{alias}' in {mlflow.get_tracking_uri()}: "
            f"train and register one first (make {name})"
        ) from error


def load_watched_model(name: str, *, alias: str | None = "champion", version: str | None = None) -> WatchedModel:
    """Resolve the alias once, then download that exact version (an alias may move meanwhile)."""
    version = version or version_for(name, alias or "champion")
    try:
        directory = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    except MlflowException as error:
        raise LookupError(f"no version {version} of registered model '{name}' in {mlflow.get_tracking_uri()}") from error
    contract_dir = directory / EXTRA_FILES_DIR
    if not (contract_dir / CONTRACT_FILE).is_file() or not (directory / ONNX_FILE).is_file():
        raise FileNotFoundError(
            f"{name} v{version}: expected {ONNX_FILE} and {EXTRA_FILES_DIR}/{CONTRACT_FILE} in {directory}"
        )
    return WatchedModel(name, version, ModelContract.load(contract_dir), directory / ONNX_FILE)


def download_frame(run_id: str, artifact_path: str) -> pd.DataFrame:
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path)
    except (MlflowException, OSError) as error:
        raise LookupError(f"artifact '{artifact_path}' not found in run {run_id}: {error}") from error
    return pd.read_parquet(local)


def require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing} (has: {', '.join(map(str, frame.columns))})")


def load_reference(model: WatchedModel) -> pd.DataFrame:
    """Held-out rows with this version's own predictions: the 'no drift' baseline for every window."""
    frame = download_frame(model.contract.run_id, model.contract.reference_artifact)
    require_columns(frame, [*model.features, LABEL, PROBABILITY, PREDICTED_LABEL],
                    f"reference {model.contract.reference_artifact} of {model.name} v{model.version}")
    return frame


def load_holdout(model: WatchedModel, artifact_path: str) -> pd.DataFrame:
    """The test split (inputs + label): the simulator's no-drift traffic and the base of its scenarios."""
    frame = download_frame(model.contract.run_id, artifact_path)
    require_columns(frame, [*model.features, LABEL], f"holdout {artifact_path} of {model.name} v{model.version}")
    return frame
