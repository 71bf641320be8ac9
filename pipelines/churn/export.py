"""Export stage: the shipped churn pipeline as one ONNX graph, released through the common path.

What is churn's own: converting the scikit-learn pipeline (raw columns in, probabilities out), the
contract fields (the 19 inputs with the schema's rules plus numeric bounds from this run's data, the
labels, the tuned threshold, the customer id) and the rows as the package reads them (`labelled_rows`).
Everything else (parity on the whole test split, contract, monitoring reference, logging, registration,
the champion decision) is pipelines.common.release, the same for every project. The native scikit-learn
model is logged beside the ONNX one, for anyone who wants to load it with MLflow.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

from modelpkg.contract import LABEL, InputSpec
from pipelines.churn import schema
from pipelines.churn.features import features, target
from pipelines.churn.onnx_convert import PROBABILITY_OUTPUT, input_specs, to_onnx
from pipelines.churn.optimize import load_candidate
from pipelines.churn.train import load_split, log_sklearn_model
from pipelines.common import tracking
from pipelines.common.release import Candidate, Released, release
from pipelines.common.runner import StageContext


def bounded_inputs(data: pd.DataFrame, margin: float) -> list[InputSpec]:
    """The schema's input rules plus, for each number, bounds from `data` (every split this run validated,
    so no row it scores or simulates falls outside): its range widened by `margin` times its width."""
    return [spec if spec.categorical else
            spec.with_training_range(float(data[spec.name].min()), float(data[spec.name].max()), margin)
            for spec in input_specs()]


def contract_fields(candidate: dict, inputs: list[InputSpec]) -> dict:
    """`inputs`: bounded_inputs of the run's data (export), or the schema's rules alone (input_specs)."""
    return dict(kind="tabular_classifier", model_type=candidate["model_type"], inputs=inputs,
                probability_output=PROBABILITY_OUTPUT, labels=list(schema.LABEL_VALUES),
                positive_label=schema.LABEL_VALUES[1], threshold=candidate["threshold"], id_field=schema.ID_COLUMN)


def labelled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs and the true label (Yes/No): the rows of the reference and the holdout."""
    rows = frame[list(schema.FEATURES)].copy()
    rows[LABEL] = [schema.LABEL_VALUES[v] for v in target(frame)]
    return rows.reset_index(drop=True)


def onnx_signature(test: pd.DataFrame):
    """No input example: MLflow's ONNX pyfunc feeds 1-D columns, while the graph takes [batch, 1] per
    column (what skl2onnx needs); serving builds its feeds through the codec."""
    example = features(test).head(5).astype({name: "float32" for name in schema.NUMERIC})
    return mlflow.models.infer_signature(example, np.zeros((len(example), 2), dtype=np.float32))


def release_pipeline(ctx: StageContext, native, candidate: dict, valid: pd.DataFrame, test: pd.DataFrame, *,
                     train: pd.DataFrame) -> Released:
    """A fitted scikit-learn pipeline -> ONNX -> the common release path (tests build models through this too)."""
    config = ctx.config
    data = pd.concat([train, valid, test], ignore_index=True)
    return release(ctx, Candidate(
        onnx_bytes=to_onnx(native, name=ctx.project).SerializeToString(),
        contract_fields=contract_fields(candidate, bounded_inputs(data, config.export.input_bounds_margin)),
        native_test=native.predict_proba(features(test)),
        test=labelled_rows(test), valid=labelled_rows(valid),
        signature=onnx_signature(test), pip_requirements=tracking.pinned_requirements("onnxruntime"),
    ), config.export)


def run(ctx: StageContext) -> None:
    candidate = load_candidate(ctx)
    native = mlflow.sklearn.load_model(candidate["model_uri"])
    train, valid, test = (load_split(ctx, name) for name in ("train", "valid", "test"))
    release_pipeline(ctx, native, candidate, valid, test, train=train)
    log_sklearn_model(native, "native", features(test).head(5))
