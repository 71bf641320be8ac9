"""Tabular records: one field per contract input, validated from the contract, one [batch, 1] feed each.

The record schema is built from the contract at load time (allowed categories, ranges, whole numbers),
never written by hand: a retrained model with a new category is served without a code change. A record
is a plain dict (a pydantic-validated TypedDict): cheap to validate, to turn into feeds and to log.
Besides the inputs a record may carry the contract's `id_field` (`customerID` for churn): logged with
the inputs, never fed. Any other field is rejected, by name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping

import numpy as np
from pydantic import AfterValidator, ConfigDict, Field, with_config
from pydantic_core import PydanticCustomError
from typing_extensions import NotRequired, TypedDict

from modelpkg.codecs import Codec, Descriptor
from modelpkg.contract import InputSpec

NUMPY_DTYPES = {"string": object, "float32": np.float32, "int64": np.int64, "uint8": np.uint8}
PYTHON_TYPES = {"string": str, "float32": float, "int64": int, "uint8": int}


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


def plain(value: Any, dtype: str) -> Any:
    """A stored value (numpy scalar, pandas cell) as the JSON type a client would send."""
    return PYTHON_TYPES[dtype](value.item() if isinstance(value, np.generic) else value)


class TabularCodec(Codec):
    kind = "tabular_classifier"

    def __init__(self, contract, *args, **kwargs):
        self.specs = [(spec.name, NUMPY_DTYPES[spec.dtype]) for spec in contract.inputs]
        self.allowed = {spec.name: spec.allowed for spec in contract.inputs if spec.allowed}
        super().__init__(contract, *args, **kwargs)  # checks the example, whose errors read the two above

    def record_type(self) -> type:
        """Every contract input required, the id field optional, nothing else."""
        fields: dict[str, Any] = {spec.name: field_type(spec) for spec in self.contract.inputs}
        if self.contract.id_field:
            fields[self.contract.id_field] = NotRequired[Annotated[str, Field(strict=True)]]
        record = TypedDict(f"{self.contract.name.capitalize()}Record", fields)  # type: ignore[misc]
        return with_config(ConfigDict(extra="forbid"))(record)

    def synthetic_example(self) -> dict:
        """First allowed category, smallest allowed number."""
        return {spec.name: (spec.allowed[0] if spec.allowed else "") if spec.dtype == "string"
                else PYTHON_TYPES[spec.dtype](spec.minimum or 0) for spec in self.contract.inputs}

    def feeds(self, records: list[dict]) -> dict[str, np.ndarray]:
        """One [rows, 1] array per graph input, typed as the contract says."""
        rows = len(records)
        return {name: np.array([record[name] for record in records], dtype=dtype).reshape(rows, 1)
                for name, dtype in self.specs}

    def log_entry(self, record: dict) -> dict:
        return record

    @property
    def descriptors(self) -> list[Descriptor]:
        return [Descriptor(spec.name, spec.dtype != "string") for spec in self.contract.inputs]

    def training_row(self, entry: Mapping[str, Any]) -> dict:
        """Whole-number inputs back as ints, as the training data holds them."""
        return {spec.name: int(round(float(entry[spec.name]))) if spec.integer else entry[spec.name]
                for spec in self.contract.inputs}

    def request(self, row: Mapping[str, Any]) -> dict:
        record = {spec.name: plain(row[spec.name], spec.dtype) for spec in self.contract.inputs}
        if self.contract.id_field and self.contract.id_field in row:
            record[self.contract.id_field] = str(row[self.contract.id_field])
        return record

    def explain(self, error: dict) -> dict:
        explained = super().explain(error)
        field = error["loc"][-1] if error["loc"] else None
        if error["type"] == "literal_error" and field in self.allowed:
            explained["msg"] = f"{field}: unknown category {error['input']!r} (allowed: {', '.join(self.allowed[field])})"
        return explained

    def fields_hint(self) -> str:
        extra = f", plus optional {self.contract.id_field!r}" if self.contract.id_field else ""
        return f"inputs: the {len(self.specs)} contract features{extra}"
