"""Tabular records: one field per contract input, validated from the contract, one [batch, 1] feed each.

The record schema is built from the contract at load time (allowed categories, a flag's values, ranges
with the training data's bounds, whole numbers), never written by hand: a retrained model with a new
category is served without a code change. Those are the rules the training data was validated with
(`InputSpec`), so serving, batch scoring and the retraining judge (all through this codec) refuse what
training refused, each error naming the field. A record
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

NOT_BLANK = r"\S"  # a string holding something besides whitespace
BOUND_ERRORS = ("greater_than_equal", "less_than_equal")
NUMPY_DTYPES = {"string": object, "float32": np.float32, "int64": np.int64, "uint8": np.uint8}
PYTHON_TYPES = {"string": str, "float32": float, "int64": int, "uint8": int}


def whole_number(value: float) -> float:
    if not float(value).is_integer():
        raise PydanticCustomError("whole_number", "Input should be a whole number, got {value}", {"value": value})
    return value


def one_of(values: list[float]):
    """A validator: the number must be one of `values` (a flag's 0/1)."""
    def check(value: float) -> float:
        if value not in values:
            shown = ", ".join(f"{allowed:g}" for allowed in values)
            raise PydanticCustomError("not_allowed_value", "{value} is not an allowed value (allowed: {shown})",
                                      {"value": f"{value:g}", "shown": shown})
        return value
    return AfterValidator(check)


def field_type(spec: InputSpec) -> Any:
    """One contract input -> the type a request value must have (strict: "5" is not a number, null is no
    number, " One year" is no category)."""
    if spec.dtype == "string":
        return Literal[tuple(spec.allowed)] if spec.allowed else Annotated[str, Field(strict=True)]
    python_type = PYTHON_TYPES[spec.dtype]
    largest = float(np.finfo(np.float32).max) if spec.dtype == "float32" else int(np.iinfo(NUMPY_DTYPES[spec.dtype]).max)
    maximum = largest if spec.maximum is None else min(spec.maximum, largest)  # beyond: inf in the graph
    finite = {"allow_inf_nan": False} if python_type is float else {}
    schema_extra = ({"multipleOf": 1} if spec.integer else {}) | ({"enum": spec.values} if spec.values else {})
    documented = {"description": spec.description or None, "json_schema_extra": schema_extra or None}
    number = Annotated[python_type, Field(strict=True, ge=spec.minimum, le=maximum, **finite, **documented)]
    checks = ([AfterValidator(whole_number)] if spec.integer else []) + ([one_of(spec.values)] if spec.values else [])
    return Annotated[number, *checks] if checks else number


def category_problem(value: Any, allowed: list[str]) -> str:
    """What is wrong with a category, as the training validator words it: blank, padded or unknown."""
    listed = f"(allowed: {', '.join(allowed)})"
    if isinstance(value, str) and not value.strip():
        return f"blank value {listed}"
    if isinstance(value, str) and value.strip() in allowed:
        return f"{value!r} has leading/trailing whitespace {listed}"
    return f"unknown category {value!r} {listed}"


def bound_problem(error: dict, spec: InputSpec) -> str:
    """Out of range, and where the range comes from: the rules alone, or the training data plus a margin."""
    limits = error.get("ctx", {})
    side = f"below the minimum {limits['ge']:g}" if "ge" in limits else f"above the maximum {limits['le']:g}"
    seen = "" if spec.training_range is None else (
        f" (the training data held {spec.training_range[0]:g} to {spec.training_range[1]:g}, "
        "the bounds add the export's margin)")
    return f"{error['input']:g} is {side}{seen}"


def plain(value: Any, dtype: str) -> Any:
    """A stored value (numpy scalar, pandas cell) as the JSON type a client would send."""
    return PYTHON_TYPES[dtype](value.item() if isinstance(value, np.generic) else value)


class TabularCodec(Codec):
    kind = "tabular_classifier"

    def __init__(self, contract, *args, **kwargs):
        self.specs = [(spec.name, NUMPY_DTYPES[spec.dtype]) for spec in contract.inputs]
        self.allowed = {spec.name: spec.allowed for spec in contract.inputs if spec.allowed}
        self.inputs = {spec.name: spec for spec in contract.inputs}
        super().__init__(contract, *args, **kwargs)  # checks the example, whose errors read the two above

    def record_type(self) -> type:
        """Every contract input required, the id field optional, nothing else."""
        fields: dict[str, Any] = {spec.name: field_type(spec) for spec in self.contract.inputs}
        if self.contract.id_field:  # as training requires of an id: not blank
            fields[self.contract.id_field] = NotRequired[Annotated[str, Field(
                strict=True, pattern=NOT_BLANK, max_length=self.contract.id_max_length)]]
        record = TypedDict(f"{self.contract.name.capitalize()}Record", fields)  # type: ignore[misc]
        return with_config(ConfigDict(extra="forbid"))(record)

    def synthetic_example(self) -> dict:
        """First allowed category, first allowed value or smallest allowed number."""
        return {spec.name: (spec.allowed[0] if spec.allowed else "") if spec.dtype == "string"
                else PYTHON_TYPES[spec.dtype](spec.values[0] if spec.values else spec.minimum or 0)
                for spec in self.contract.inputs}

    def feeds(self, records: list[dict]) -> dict[str, np.ndarray]:
        """One [rows, 1] array per graph input, typed as the contract says."""
        rows = len(records)
        return {name: np.array([record[name] for record in records], dtype=dtype).reshape(rows, 1)
                for name, dtype in self.specs}

    def log_entry(self, record: dict) -> dict:
        return record

    @property
    def descriptors(self) -> list[Descriptor]:
        """Each input, compared as the contract says: a category (a string, a 0/1 flag) or a number."""
        return [Descriptor(spec.name, numeric=not spec.categorical) for spec in self.contract.inputs]

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
        """Every error on an input names the field; categories say what is allowed, bounds where they
        come from."""
        explained = super().explain(error)
        field = error["loc"][-1] if error["loc"] else None
        if error["type"] == "literal_error" and field in self.allowed:
            explained["msg"] = f"{field}: {category_problem(error['input'], self.allowed[field])}"
        elif error["type"] in BOUND_ERRORS and field in self.inputs:
            explained["msg"] = f"{field}: {bound_problem(error, self.inputs[field])}"
        elif error["type"] == "string_pattern_mismatch" and field == self.contract.id_field:
            explained["msg"] = f"{field}: blank value"
        if field in self.inputs and not explained["msg"].startswith(f"{field}: "):
            explained["msg"] = f"{field}: {explained['msg']}"
        return explained

    def fields_hint(self) -> str:
        extra = f", plus optional {self.contract.id_field!r}" if self.contract.id_field else ""
        return f"inputs: the {len(self.specs)} contract features{extra}"
