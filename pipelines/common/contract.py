"""The model contract: what training promises serving and monitoring about one exported model.

A registered model is a directory holding `model.onnx` and `contract.json`. Serving and monitoring read
only that directory; they never import pipeline code, scikit-learn, xgboost, torch or transformers.
This module imports nothing but pydantic and the standard library, so the serving process can use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ONNX_FILE = "model.onnx"
CONTRACT_FILE = "contract.json"
REFERENCE_ARTIFACT = "reference/reference.parquet"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(StrictModel):
    """One ONNX graph input. Tabular models take one input per raw column, shaped [batch, 1]."""

    name: str
    dtype: Literal["string", "float32", "int64", "uint8"]
    shape: list[int | None] = Field(default_factory=lambda: [None, 1])
    allowed: list[str] | None = None  # the categories a string input accepts
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False  # a float input that must hold whole numbers (e.g. tenure in months)
    description: str = ""


class ModelContract(StrictModel):
    contract_version: Literal[1] = 1
    name: str  # registered model name: churn, vision, text
    kind: Literal["tabular_classifier", "image_classifier", "text_classifier"]
    model_type: str  # what was trained, e.g. "xgboost" or "logistic_regression"
    inputs: list[InputSpec]
    probability_output: str  # ONNX output holding class probabilities, shape [batch, n_classes]
    labels: list[str]  # class label by class index
    positive_label: str | None = None  # binary models: the class the threshold applies to
    threshold: float | None = None  # binary models: predict positive when P(positive) >= threshold
    preprocessing: dict = Field(default_factory=dict)  # image mean/std, tokenizer settings, ...
    run_id: str  # the MLflow run that exported the model (holds the monitoring reference)
    reference_artifact: str = REFERENCE_ARTIFACT  # training sample + predictions, in that run
    data_sha256: str
    metrics: dict[str, float] = Field(default_factory=dict)  # test metrics measured at export
    created_at: str  # ISO-8601 UTC

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONTRACT_FILE
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ModelContract":
        return cls.model_validate_json((Path(directory) / CONTRACT_FILE).read_text())

    def input(self, name: str) -> InputSpec:
        return next(spec for spec in self.inputs if spec.name == name)
