"""The model under watch and what it is compared with: its package, its codec, its reference rows.

Everything is found through the registry (`modelpkg.package.load_model`): alias -> version -> the package
(graph, contract, the assets its codec needs) -> the contract's run id -> the reference artifacts its
export logged. Monitoring never guesses a file path, so it always compares production with exactly what
the serving version was validated on, and it runs the package through `modelpkg.runtime.Predictor`, the
session and decision rule the server uses: no pipeline code, and nothing here knows a model kind.

Monitoring never reads raw inputs, only what a model's codec *describes* of them: the columns the drift
tests read (`codec.descriptors`). A stored row (reference, holdout, a simulated window) reaches that
frame on the path a request takes through the server, `codec.request -> codec.validate ->
codec.log_entry` (what the prediction log keeps) `-> codec.describe`, so a reference row and a logged
row are described by one function. For a tabular model that is the inputs themselves; for an image it
is brightness, contrast, sharpness, size and format computed from the pixels; for a text its length,
share of capitals, of unknown tokens, ...
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from modelpkg.codecs import Codec, Descriptor, InvalidRequest, codec_for
from modelpkg.contract import LABEL, ModelContract
from modelpkg.package import RegisteredPackage, load_model
from modelpkg.runtime import Predictor, prediction_columns, stack_scores


def prediction_column_names(contract: ModelContract) -> list[str]:
    """The prediction columns of the reference and of every window (`probability`, `predicted_label`,
    and one `probability__<label>` per class for multi-class models): whatever
    `modelpkg.runtime.prediction_columns` writes, read off it so the names live in one place."""
    return list(prediction_columns(np.zeros((0, len(contract.labels)), np.float32), contract,
                                   np.zeros((0, contract.embedding_size), np.float32)))


@dataclass(frozen=True)
class Served:
    """Stored rows as serving would log them: the codec's log entries and the graph's outputs."""

    entries: list[dict]
    probabilities: np.ndarray | None = None
    embeddings: np.ndarray | None = None  # only for a graph with an embedding output

    def prediction_columns(self, contract: ModelContract) -> dict[str, Any]:
        return prediction_columns(self.probabilities, contract, self.embeddings)


@dataclass(frozen=True)
class WatchedModel(RegisteredPackage):
    """One registered version (name, version, package files), scored and described through its own codec."""

    @functools.cached_property
    def predictor(self) -> Predictor:
        """The onnxruntime session, opened on first use (drift alone never needs the graph)."""
        return Predictor(self.files)

    @functools.cached_property
    def codec(self) -> Codec:
        """The kind's codec, as the predictor's (same contract, same assets) but without a session."""
        return codec_for(self.contract, self.files.files_dir)

    @property
    def descriptors(self) -> list[Descriptor]:
        """The columns the drift tests read: what the codec describes of the inputs (numeric or categorical,
        as it says), then the embedding output's components (numeric) for a model that has one."""
        return self.codec.descriptors + [Descriptor(name, numeric=True) for name in self.contract.embedding_columns]

    @property
    def descriptor_names(self) -> list[str]:
        return [descriptor.name for descriptor in self.descriptors]

    @property
    def prediction_columns(self) -> list[str]:
        return prediction_column_names(self.contract)

    def serve(self, rows: list[Mapping[str, Any]], *, score: bool = True) -> "Served":
        """Stored rows -> what serving would log for them: the log entries and (when `score`) the
        [rows, classes] probabilities and embeddings, through request records, codec validation and the graph."""
        entries, parts = [], []
        for records in self.codec.validated_chunks(rows):
            entries += [self.codec.log_entry(record) for record in records]
            if score:
                parts.append(self.predictor.scores(records))
        if not score:
            return Served(entries)
        return Served(entries, *stack_scores(parts, self.contract))

    def describe(self, entries: list[Mapping[str, Any]]) -> pd.DataFrame:
        """Log entries -> the descriptor columns, typed by the codec (never guessed from values)."""
        return pd.DataFrame([self.codec.describe(entry) for entry in entries],
                            columns=self.codec.descriptor_names)

    def frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Stored rows -> the frame a window of their predictions would give: descriptors, this version's
        prediction columns, and the `label` where the rows carry one (the benchmark and tests judge
        simulated windows with it)."""
        served = self.serve(stored_rows(rows, self, "rows"))
        frame = self.describe(served.entries).assign(**served.prediction_columns(self.contract))
        if LABEL in rows.columns:
            frame[LABEL] = rows[LABEL].astype(str).to_numpy()
        return frame


def stored_rows(frame: pd.DataFrame, model: WatchedModel, what: str) -> list[dict]:
    """A table's rows as dicts, after checking that the codec can make a request of the first one (a
    missing column or a wrong type is named once, not as one error per row)."""
    rows = frame.to_dict(orient="records")
    if rows:
        try:
            model.codec.request(rows[0])
        except KeyError as error:
            raise ValueError(f"{what} of {model.name} v{model.version} lacks field {error} that its "
                             f"{model.contract.kind} codec reads (has: {', '.join(map(str, frame.columns))})") from None
        except InvalidRequest as error:
            raise ValueError(f"{what} of {model.name} v{model.version}: {error}") from None
    return rows


def load_watched_model(name: str, *, alias: str | None = "champion", version: str | None = None) -> WatchedModel:
    """Resolve the alias once (or take the version given), then download that exact version."""
    package = load_model(name, version=version) if version is not None else load_model(name, alias=alias or "champion")
    return WatchedModel(package.name, package.version, package.files)


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
    """Held-out rows with this version's own predictions (logged at export by the same package), described
    through the codec: the 'no drift' baseline of every window."""
    artifact = model.contract.reference_artifact
    what = f"reference {artifact}"
    raw = download_frame(model.contract.run_id, artifact)
    require_columns(raw, [LABEL, *model.prediction_columns], f"{what} of {model.name} v{model.version}")
    entries = model.serve(stored_rows(raw, model, what), score=False).entries
    predictions = raw[[*model.prediction_columns, LABEL]].reset_index(drop=True)
    return pd.concat([model.describe(entries), predictions.assign(**{LABEL: predictions[LABEL].astype(str)})],
                     axis=1)


def load_holdout(model: WatchedModel, artifact_path: str) -> pd.DataFrame:
    """The test split as stored rows + `label`: the simulator's no-drift traffic and its scenarios' base."""
    frame = download_frame(model.contract.run_id, artifact_path)
    what = f"holdout {artifact_path}"
    require_columns(frame, [LABEL], f"{what} of {model.name} v{model.version}")
    stored_rows(frame.head(1), model, what)
    return frame
