"""The model contract: what training promises serving and monitoring about one exported model.

It also names the columns every project's monitoring reference shares, so the writer (a project's
export) and the readers (monitoring) take them from one place. Imports pydantic and the standard
library only: the serving process reads it.
"""

from __future__ import annotations

import json
import math
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
EMBEDDING_PREFIX = "embedding_"  # models with an embedding output: `embedding_1` .. `embedding_<k>`
# Artifacts of the export run (found through the contract's run id).
REFERENCE_ARTIFACT = "reference/reference.parquet"  # held-out rows + label + this model's predictions
HOLDOUT_ARTIFACT = "reference/holdout.parquet"  # the test split, with labels: simulated traffic


def class_probability_column(label: str) -> str:
    return f"{CLASS_PROBABILITY_PREFIX}{label}"


def embedding_columns(size: int) -> list[str]:
    return [f"{EMBEDDING_PREFIX}{i}" for i in range(1, size + 1)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(StrictModel):
    """One ONNX graph input. Tabular models take one input per raw column, shaped [batch, 1].

    A tabular input's fields are its column rules, written once (churn: pipelines/churn/schema.py): the
    training validator checks the data with them, export adds bounds from that data, and the tabular codec
    enforces them on every record served, batch-scored or judged. A category must be one of `allowed`
    exactly (no padding, no blank); a number must be a JSON number (no blank) within the rules below.
    Every rule field has a default, so a contract written before a rule existed still loads."""

    name: str
    dtype: Literal["string", "float32", "int64", "uint8"]
    shape: list[int | None] = Field(default_factory=lambda: [None, 1])
    allowed: list[str] | None = None  # the categories a string input accepts
    values: list[float] | None = None  # the only numbers a numeric input takes (a 0/1 flag): a category
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False  # a float input that must hold whole numbers (e.g. tenure in months)
    training_range: tuple[float, float] | None = None  # smallest and largest value in the training data
    description: str = ""

    @model_validator(mode="after")
    def check_rules(self) -> "InputSpec":
        numeric_rules = (self.values, self.minimum, self.maximum, self.training_range)
        if self.dtype == "string" and (self.integer or any(rule is not None for rule in numeric_rules)):
            raise ValueError(f"{self.name}: a string input takes `allowed` categories, not numeric rules")
        if self.dtype != "string" and self.allowed is not None:
            raise ValueError(f"{self.name}: `allowed` lists categories of a string input; a number takes `values`")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"{self.name}: minimum {self.minimum} > maximum {self.maximum}")
        if self.values is not None:
            self._check_values(self.values)
        return self

    def _check_values(self, values: list[float]) -> None:
        if not values or len(set(values)) != len(values):
            raise ValueError(f"{self.name}: values must be distinct and not empty: {values}")
        if self.integer and not all(float(value).is_integer() for value in values):
            raise ValueError(f"{self.name}: values of a whole-number input must be whole: {values}")
        low, high = self.minimum, self.maximum
        if any((low is not None and value < low) or (high is not None and value > high) for value in values):
            raise ValueError(f"{self.name}: values {values} outside [{low}, {high}]")

    @property
    def categorical(self) -> bool:
        """A category, not a quantity: a string, or a number from a fixed set of values (a 0/1 flag).
        Monitoring compares such columns by category counts (chi-square), never as numbers (KS)."""
        return self.dtype == "string" or self.values is not None

    def with_training_range(self, low: float, high: float, margin: float) -> "InputSpec":
        """These rules plus bounds from the training data: [low, high] widened by `margin` times its width on
        each side, never past the rules' own limits, and rounded outward for whole numbers. A categorical
        input is bounded by its categories already and comes back unchanged."""
        if self.categorical:
            return self
        if margin < 0 or not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"{self.name}: training range [{low}, {high}] with margin {margin} cannot bound it")
        pad = margin * (high - low)
        lower, upper = (math.floor(low - pad), math.ceil(high + pad)) if self.integer else (low - pad, high + pad)
        lower = lower if self.minimum is None else max(lower, self.minimum)
        upper = upper if self.maximum is None else min(upper, self.maximum)
        return InputSpec.model_validate(self.model_dump() | {
            "minimum": float(lower), "maximum": float(upper), "training_range": (float(low), float(high))})


class ModelContract(StrictModel):
    contract_version: Literal[1] = 1
    name: str  # registered model name: churn, vision, text
    kind: Kind
    model_type: str  # what was trained, e.g. "xgboost" or "resnet18"
    inputs: list[InputSpec]
    probability_output: str  # ONNX output holding class probabilities, shape [batch, n_classes]
    # Deep models: a second output, the penultimate layer projected onto its top principal directions on the
    # validation split ([batch, embedding_size]); logged with every prediction, drift-tested by monitoring.
    embedding_output: str | None = None
    embedding_size: int = Field(0, ge=0)
    labels: list[str] = Field(min_length=2)  # class label by class index
    positive_label: str | None = None  # binary models: the class the threshold applies to
    threshold: float | None = None  # binary models: predict positive when P(positive) >= threshold
    id_field: str | None = None  # a request field that names the record (logged, never fed), e.g. customerID
    # The longest id_field value a request may carry (longer: 422 naming the field). The prediction log
    # stores it with every row, so it must be bounded; a Telco customerID has 10 characters.
    id_max_length: int = Field(64, gt=0)
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
        if (self.embedding_output is None) != (self.embedding_size == 0):
            raise ValueError("embedding_output and embedding_size go together (a graph output of that width)")
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

    @property
    def embedding_columns(self) -> list[str]:
        """The monitoring columns of the embedding output (none for models without one)."""
        return embedding_columns(self.embedding_size)

    def input(self, name: str) -> InputSpec:
        return next(spec for spec in self.inputs if spec.name == name)
