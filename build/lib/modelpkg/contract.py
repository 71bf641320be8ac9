"""The model contract: what training promises serving and monitoring about one exported model.

It also names the columns every project's monitoring reference shares, so the writer (a project's
export) and the readers (monitoring) take them from one place. Imports pydantic and the standard
library only: the serving process reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONTRACT_FILE = "contract.json"
KINDS = ("tabular_classifier", "image_classifier", "text_classifier")
Kind = Literal["tabular_classifier", "image_classifier", "text_classifier"]

# Columns of the monitoring reference (and of every window monitoring reads), beside the codec's own.
LABEL = "label"  # ground truth, as a class label string
PROBABILITY = "probability"  # binary: P(positive label); multi-class: P(predicted label)
PREDICTED_LABEL = "predicted_label"  # what serving answered: at the threshold, or the most likely class
CLASS_PROBABILITY_PREFIX = "probability__"  # multi-class: one column per class, `probability__<label>`
# Artifacts of the export run (found through the contract's run id).
REFERENCE_ARTIFACT = "reference/reference.parquet"  # held-out rows + label + this model's predictions
HOLDOUT_ARTIFACT = "reference/holdout.parquet"  # the test split, with labels: simulated traffic


def class_probability_column(label: str) -> str:
    return f"{CLASS_PROBABILITY_PREFIX}{label}"


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
    kind: Kind
    model_type: str  # what was trained, e.g. "xgboost" or "resnet18"
    inputs: list[InputSpec]
    probability_output: str  # ONNX output holding class probabilities, shape [batch, n_classes]
    labels: list[str] = Field(min_length=2)  # class label by class index
    positive_label: str | None = None  # binary models: the class the threshold applies to
    threshold: float | None = None  # binary models: predict positive when P(positive) >= threshold
    id_field: str | None = None  # a request field that names the record (logged, never fed), e.g. customerID
    preprocessing: dict = Field(default_factory=dict)  # read by the kind's codec: image size/mean/std, tokenizer
    assets: list[str] = Field(default_factory=list)  # files beside the graph the codec needs (tokenizer.json)
    run_id: str  # the MLflow run that exported the model (holds the monitoring reference)
    reference_artifact: str = REFERENCE_ARTIFACT
    data_sha256: str
    metrics: dict[str, float] = Field(default_factory=dict)  # test metrics measured at export
    created_at: str  # ISO-8601 UTC

    @model_validator(mode="after")
    def check_classes(self) -> "ModelContract":
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct: {self.labels}")
        if (self.positive_label is None) != (self.threshold is None):
            raise ValueError("positive_label and threshold go together (binary models at a tuned threshold)")
        if self.positive_label is not None:
            if len(self.labels) != 2:
                raise ValueError(f"a threshold needs exactly two labels, got {len(self.labels)}")
            if self.positive_label not in self.labels:
                raise ValueError(f"positive_label {self.positive_label!r} is not one of {self.labels}")
        return self

    @property
    def thresholded(self) -> bool:
        """Binary at a tuned threshold (churn); otherwise the most likely class wins."""
        return self.threshold is not None

    @property
    def positive_index(self) -> int:
        """The class whose probability is reported as `probability` for binary models (the last one when
        no positive label is named, as scikit-learn orders 0/1)."""
        return self.labels.index(self.positive_label) if self.positive_label else len(self.labels) - 1

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONTRACT_FILE
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "ModelContract":
        return cls.model_validate_json((Path(directory) / CONTRACT_FILE).read_text())

    def input(self, name: str) -> InputSpec:
        return next(spec for spec in self.inputs if spec.name == name)
