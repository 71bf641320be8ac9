"""One codec per model kind: the only kind-specific code outside a project.

A codec speaks for a model's records everywhere a record travels:
  - `parse` / `validate`: a request body (JSON bytes) or plain dicts -> validated records, or an
    InvalidRequest naming each bad field (serving, batch scoring, export's parity run);
  - `feeds`: records -> the ONNX graph's inputs;
  - `log_entry`: what the prediction log keeps of a record (tabular: the inputs; image: a hash and
    descriptors, never the bytes; text: the text, truncated, and descriptors);
  - `describe`: a log entry -> the row the drift tests read (`descriptors` says which columns, numeric or
    categorical);
  - `request`: a stored row (a reference or holdout table, a batch file) -> the JSON record a client sends.
Serving adapters, monitoring (reference, window, drift), release and batch scoring all call these, so a
record means the same thing in every one of them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterator, Mapping

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError

from modelpkg.contract import ModelContract


DEFAULT_MAX_BATCH = 256  # records per call when the caller sets no limit (Predictor.score_rows chunks by it)


class InvalidRequest(ValueError):
    """Records a model cannot take. `errors` are pydantic-style dicts: loc, msg, type (and input)."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Descriptor:
    """One column of the frame the drift tests read."""

    name: str
    numeric: bool


class Codec(ABC):
    """Records of one kind of model: validation, feeds, log entries, drift descriptors, requests."""

    kind: ClassVar[str]
    media_type: ClassVar[str] = "application/json"

    def __init__(self, contract: ModelContract, files_dir: Path | None = None, *, max_batch: int = DEFAULT_MAX_BATCH,
                 example: dict | None = None):
        self.contract = contract
        self.files_dir = Path(files_dir) if files_dir is not None else None
        self.max_batch = max_batch
        self.record = self.record_type()
        self.batch = TypeAdapter(Annotated[list[self.record], Field(min_length=1, max_length=max_batch)])
        self.example = self._usable_example(example)

    # ------------------------------------------------------------------------------- what kinds define
    @abstractmethod
    def record_type(self) -> type:
        """The pydantic-validated TypedDict of one request record (unknown fields forbidden)."""

    @abstractmethod
    def synthetic_example(self) -> dict:
        """A valid request record made from the contract alone (the API docs and the warm-up use it)."""

    @abstractmethod
    def feeds(self, records: list[Any]) -> dict[str, np.ndarray]:
        """Records -> the ONNX graph's inputs, by input name."""

    def graph_runs(self, records: list[Any]) -> list[np.ndarray]:
        """Row indices to feed the graph together, one run each: all rows at once, as inputs of one shape
        (tables, images) cost the same per row in any batch."""
        return [np.arange(len(records))]

    @abstractmethod
    def log_entry(self, record: Any) -> dict:
        """What the prediction log keeps of one record (JSON-serialisable)."""

    @property
    @abstractmethod
    def descriptors(self) -> list[Descriptor]:
        """The columns `describe` returns, in order."""

    @abstractmethod
    def request(self, row: Mapping[str, Any]) -> dict:
        """A stored row (reference, holdout, batch file) -> the JSON record a client would send."""

    def decode(self, index: int, record: dict) -> Any:
        """A schema-valid record -> what `feeds` and `log_entry` take. Kinds whose fields need more than
        a schema (an image that must decode) raise InvalidRequest here, naming record and field."""
        return record

    def describe(self, entry: Mapping[str, Any]) -> dict:
        """A log entry -> one row of the drift frame."""
        return {descriptor.name: entry[descriptor.name] for descriptor in self.descriptors}

    def training_row(self, entry: Mapping[str, Any]) -> dict:
        """A log entry -> the inputs a retraining run learns from."""
        raise NotImplementedError(f"{self.kind}: the prediction log does not keep what retraining needs")

    # ---------------------------------------------------------------------------------- shared by all
    @property
    def numeric_descriptors(self) -> list[str]:
        return [d.name for d in self.descriptors if d.numeric]

    @property
    def categorical_descriptors(self) -> list[str]:
        return [d.name for d in self.descriptors if not d.numeric]

    @property
    def descriptor_names(self) -> list[str]:
        return [d.name for d in self.descriptors]

    def parse(self, body: bytes) -> list[Any]:
        """A JSON request body -> decoded records, or InvalidRequest naming every bad field."""
        return self._checked(self.batch.validate_json, body)

    def validate(self, records: list[dict]) -> list[Any]:
        """Plain dicts (JSON types) -> decoded records, exactly as `parse` would take them."""
        return self._checked(self.batch.validate_python, records)

    def validated_chunks(self, rows: list[Mapping[str, Any]], chunk: int | None = None) -> Iterator[list[Any]]:
        """Stored rows -> decoded records, `chunk` (default max_batch) at a time, through the path a request
        takes (request record -> validation -> decoding): what export, monitoring and batch scoring score."""
        chunk = chunk or self.max_batch
        for start in range(0, len(rows), chunk):
            yield self.validate(self.requests(rows[start:start + chunk]))

    def _checked(self, schema_check, data) -> list[Any]:
        try:
            records = schema_check(data)
        except ValidationError as error:
            raise InvalidRequest([self.explain(e) for e in error.errors(include_url=False)]) from None
        return self._decode_all(records)

    def _decode_all(self, records: list[dict]) -> list[Any]:
        decoded, errors = [], []
        for index, record in enumerate(records):
            try:
                decoded.append(self.decode(index, record))
            except InvalidRequest as error:
                errors.extend(error.errors)
        if errors:
            raise InvalidRequest(errors)
        return decoded

    def requests(self, rows: list[Mapping[str, Any]]) -> list[dict]:
        return [self.request(row) for row in rows]

    def example_records(self) -> list[Any]:
        return self.parse(json.dumps([self.example]).encode())

    def request_schema(self) -> dict:
        schema = self.batch.json_schema(ref_template="#/components/schemas/{model}")
        schema["examples"] = [[self.example]]
        return schema

    def _usable_example(self, example: dict | None) -> dict:
        """The configured example when this contract accepts it, else one built from the contract."""
        if example is not None:
            try:
                self.validate([example])
                return example
            except InvalidRequest:
                pass
        return self.synthetic_example()

    def field_error(self, index: int, field: str, kind: str, message: str) -> InvalidRequest:
        return InvalidRequest([{"type": kind, "loc": [index, field], "msg": f"{field}: {message}"}])

    def explain(self, error: dict) -> dict:
        """Pydantic's error, reworded where a user needs the allowed values or the offending name."""
        field = error["loc"][-1] if error["loc"] else None
        explained = {"type": error["type"], "loc": list(error["loc"]), "msg": error["msg"]}
        if error["type"] == "extra_forbidden":
            explained["msg"] = f"unknown field {field!r}: not an input of model {self.contract.name!r} ({self.fields_hint()})"
        elif error["type"] == "too_long" and len(error["loc"]) == 0:
            explained["msg"] = f"batch too large: at most {self.max_batch} records per request"
        elif error["type"] == "too_short" and len(error["loc"]) == 0:
            explained["msg"] = "empty batch: send at least one record"
        if error["type"] != "missing" and _is_json_scalar(error.get("input")):
            explained["input"] = error["input"]
        return explained

    def fields_hint(self) -> str:
        fields = list(self.record.__annotations__)
        return f"fields: {', '.join(fields)}"


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, bool)) or (isinstance(value, float) and np.isfinite(value))


def codec_class(kind: str) -> type[Codec]:
    """The codec of a contract kind (imported on demand: a tabular server never loads PIL or tokenizers)."""
    if kind == "tabular_classifier":
        from modelpkg.codecs.tabular import TabularCodec as found
    elif kind == "image_classifier":
        from modelpkg.codecs.image import ImageCodec as found
    elif kind == "text_classifier":
        from modelpkg.codecs.text import TextCodec as found
    else:
        raise ValueError(f"no codec for model kind {kind!r}")
    return found


def codec_for(contract: ModelContract, files_dir: Path | None = None, *, max_batch: int = DEFAULT_MAX_BATCH,
              example: dict | None = None) -> Codec:
    return codec_class(contract.kind)(contract, files_dir, max_batch=max_batch, example=example)
