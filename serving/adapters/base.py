"""What every model kind's adapter does, and the pieces classifiers share.

An adapter is the only model-specific code in the server. It turns a request body into validated
records (with field-level errors), records into ONNX feeds, and the ONNX outputs into one answer per
record. Everything else (routes, limits, logging, metrics, reload) is the same for every model, so
serving a new kind of model is one adapter module plus one line in `serving/adapters/__init__.py`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from pipelines.common.contract import ModelContract


class InvalidRequest(ValueError):
    """A request the model cannot take. `errors` are pydantic-style dicts: loc, msg, type (and input)."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


class Adapter(ABC):
    """One model kind: request -> records -> ONNX feeds -> ONNX outputs -> one answer per record."""

    media_type = "application/json"  # what the predict route documents as its request body

    def __init__(self, contract: ModelContract, *, max_batch: int, example: Any = None):
        self.contract = contract
        self.max_batch = max_batch
        self.example = example

    @abstractmethod
    def parse(self, body: bytes) -> list[Any]:
        """Validate a request body into records; raise InvalidRequest naming each bad field."""

    @abstractmethod
    def feeds(self, records: list[Any]) -> dict[str, np.ndarray]:
        """Records -> the ONNX graph's inputs, by input name."""

    @abstractmethod
    def request_schema(self) -> dict:
        """The JSON schema of a request body (with an example), for the OpenAPI docs."""

    def example_records(self) -> list[Any]:
        """The documented example, parsed like a request: the warm-up prediction at load time uses it."""
        return self.parse(json.dumps([self.example]).encode())

    def log_inputs(self, records: list[Any]) -> list[dict]:
        """What the prediction log stores as each record's inputs (JSON-serialisable)."""
        return records

    def outputs(self, onnx_outputs: dict[str, np.ndarray]) -> list[dict]:
        """ONNX outputs -> one answer per record (every kind so far is a classifier)."""
        return class_outputs(onnx_outputs[self.contract.probability_output], self.contract)

    @property
    def output_names(self) -> list[str]:
        return [self.contract.probability_output]


def class_outputs(probabilities: np.ndarray, contract: ModelContract) -> list[dict]:
    """Per row: the label and its probability. Binary models with a threshold report P(positive) and
    apply the tuned threshold; multi-class models take the most likely class and list every class."""
    if contract.positive_label is not None and contract.threshold is not None:
        positive = contract.labels.index(contract.positive_label)
        negative = contract.labels[1 - positive]
        p = probabilities[:, positive].tolist()
        return [{"label": contract.positive_label if value >= contract.threshold else negative,
                 "probability": value} for value in p]
    best = probabilities.argmax(axis=1).tolist()
    return [{"label": contract.labels[index], "probability": float(row[index]),
             "probabilities": dict(zip(contract.labels, row.tolist()))}
            for index, row in zip(best, probabilities)]
