"""Tabular classifiers: a JSON list of records, one field per model input, validated from the contract.

The request schema is built from the model contract at load time (allowed categories, minimums, whole
numbers), never written by hand: a retrained model with a new category is served without a code change,
and the API docs always show the schema of the model that is actually loaded.

A record is a plain dict (a pydantic-validated TypedDict): cheap to validate, to turn into feeds and to
log. Besides the model inputs a record may carry one optional identifier field (`customerID` for churn);
it is logged with the inputs but never fed to the model. Any other field is rejected, by name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict

from pipelines.common.contract import InputSpec, ModelContract
from serving.adapters.base import Adapter, InvalidRequest

ID_FIELD = "customerID"  # the one non-input field a record may carry (logged, not fed to the model)
NUMPY_DTYPES = {"string": object, "float32": np.float32, "int64": np.int64, "uint8": np.uint8}
PYTHON_TYPES = {"float32": float, "int64": int, "uint8": int}


def whole_number(value: float) -> float:
    if not float(value).is_integer():
        raise PydanticCustomError("whole_number", "Input should be a whole number, got {value}", {"value": value})
    return value


def field_type(spec: InputSpec) -> Any:
    """One contract input -> the type a request value must have (strict: "5" is not a number)."""
    if spec.dtype == "string":
        return Literal[tuple(spec.allowed)] if spec.allowed else Annotated[str, Field(strict=True)]
    python_type = PYTHON_TYPES[spec.dtype]
    largest = float(np.finfo(np.float32).max) if spec.dtype == "float32" else int(np.iinfo(NUMPY_DTYPES[spec.dtype]).max)
    maximum = largest if spec.maximum is None else min(spec.maximum, largest)  # beyond: inf in the graph
    finite = {"allow_inf_nan": False} if python_type is float else {}
    documented = {"description": spec.description or None,
                  "json_schema_extra": {"multipleOf": 1} if spec.integer else None}
    number = Annotated[python_type, Field(strict=True, ge=spec.minimum, le=maximum, **finite, **documented)]
    return Annotated[number, AfterValidator(whole_number)] if spec.integer else number


def record_type(contract: ModelContract, example: dict | None) -> type:
    """The TypedDict of one record: every contract input required, the id field optional, nothing else."""
    fields: dict[str, Any] = {spec.name: field_type(spec) for spec in contract.inputs}
    fields[ID_FIELD] = NotRequired[Annotated[str, Field(strict=True)]]
    record = TypedDict(f"{contract.name.capitalize()}Record", fields)  # type: ignore[misc]
    config = ConfigDict(extra="forbid", json_schema_extra={"examples": [example]} if example else None)
    return with_config(config)(record)


def synthetic_example(contract: ModelContract) -> dict:
    """A valid record made from the contract alone (first allowed category, smallest allowed number)."""
    example: dict[str, Any] = {}
    for spec in contract.inputs:
        if spec.dtype == "string":
            example[spec.name] = spec.allowed[0] if spec.allowed else ""
        else:
            example[spec.name] = PYTHON_TYPES[spec.dtype](spec.minimum or 0)
    return example


class TabularClassifier(Adapter):
    """A JSON list of records in, one classification per record out (see the module docstring)."""

    def __init__(self, contract: ModelContract, *, max_batch: int, example: dict | None = None):
        super().__init__(contract, max_batch=max_batch, example=example)
        self.example = self._usable_example(example)
        self.record = record_type(contract, self.example)
        self.batch = TypeAdapter(Annotated[list[self.record], Field(min_length=1, max_length=max_batch)])
        self.specs = [(spec.name, NUMPY_DTYPES[spec.dtype]) for spec in contract.inputs]
        self.allowed = {spec.name: spec.allowed for spec in contract.inputs if spec.allowed}

    def _usable_example(self, example: dict | None) -> dict:
        """The configured example when the loaded contract accepts it, else one built from the contract."""
        if example is not None:
            try:
                TypeAdapter(record_type(self.contract, None)).validate_python(example)
                return example
            except ValidationError:
                pass
        return synthetic_example(self.contract)

    def parse(self, body: bytes) -> list[dict]:
        try:
            return self.batch.validate_json(body)
        except ValidationError as error:
            raise InvalidRequest([self._explain(e) for e in error.errors(include_url=False)]) from None

    def feeds(self, records: list[dict]) -> dict[str, np.ndarray]:
        """One [rows, 1] array per graph input, typed as the contract says."""
        rows = len(records)
        return {name: np.array([record[name] for record in records], dtype=dtype).reshape(rows, 1)
                for name, dtype in self.specs}

    def request_schema(self) -> dict:
        schema = self.batch.json_schema(ref_template="#/components/schemas/{model}")
        schema["examples"] = [[self.example]]
        return schema

    def _explain(self, error: dict) -> dict:
        """Pydantic's error, reworded where a user needs the allowed values or the offending name."""
        field = error["loc"][-1] if error["loc"] else None
        explained = {"type": error["type"], "loc": list(error["loc"]), "msg": error["msg"]}
        if error["type"] == "literal_error" and field in self.allowed:
            explained["msg"] = f"{field}: unknown category {error['input']!r} (allowed: {', '.join(self.allowed[field])})"
        elif error["type"] == "extra_forbidden":
            explained["msg"] = (f"unknown field {field!r}: not an input of model {self.contract.name!r} "
                                f"(inputs: the {len(self.specs)} contract features, plus optional {ID_FIELD!r})")
        elif error["type"] == "too_long":
            explained["msg"] = f"batch too large: at most {self.max_batch} records per request"
        if error["type"] != "missing" and _is_json_scalar(error.get("input")):
            explained["input"] = error["input"]
        return explained


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, bool)) or (isinstance(value, float) and np.isfinite(value))
