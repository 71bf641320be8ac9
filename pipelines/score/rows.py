"""One batch of stored rows: check each row as the server checks a request, score the good ones, name the
problems of the bad ones. No Ray here: the Ray actor and the single-process benchmark loop both call it.

A row becomes a request record through the codec's `request` (what a client would send), then passes the
codec's `validate` (the same rules `parse` applies to a request body), in chunks of the codec's batch
limit. A chunk that fails names its bad rows (`loc[0]`) and fields; those rows are set aside and the rest
validated again, so one bad row never costs its neighbours their answers. A stored null is a missing
value; a cell `request` cannot turn into the JSON type (text in a number column of a CSV) is named by
trying each column alone beside the codec's valid example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from modelpkg.codecs import Codec, InvalidRequest
from modelpkg.contract import ModelContract
from modelpkg.package import PackageFiles
from modelpkg.runtime import Predictor, SessionSettings, prediction_columns

REJECT_COLUMN = "reject_column"  # the input column(s) at fault, comma-separated ("" for a row-level problem)
REJECT_PROBLEM = "reject_problem"  # the codec's words for each problem, "; "-separated
MODEL_NAME, MODEL_VERSION, MODEL_RUN_ID = "model_name", "model_version", "model_run_id"
COLUMN_SEPARATOR, PROBLEM_SEPARATOR = ", ", "; "
CONVERSION_ERRORS = (TypeError, ValueError)  # what `request` raises on a cell it cannot convert


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answered: written on every output row."""

    name: str
    version: str
    run_id: str

    def columns(self, rows: int) -> dict[str, pa.Array]:
        return {key: pa.array([value] * rows, pa.string())
                for key, value in ((MODEL_NAME, self.name), (MODEL_VERSION, self.version), (MODEL_RUN_ID, self.run_id))}


@dataclass
class Checked:
    """A batch after validation: decoded records of the good rows (by row position) and the problems
    (codec-style error dicts: loc, msg) of the bad ones."""

    positions: list[int] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    problems: dict[int, list[dict]] = field(default_factory=dict)


def problem(column: str | None, message: str) -> dict:
    return {"loc": [column] if column else [], "msg": f"{column}: {message}" if column else message}


def input_names(codec: Codec) -> list[str]:
    return [spec.name for spec in codec.contract.inputs]


def unreadable(codec: Codec, row: Mapping[str, Any], error: Exception) -> list[dict]:
    """The columns whose cell `request` cannot convert, found by trying each beside the valid example."""
    found = []
    for name in input_names(codec):
        try:
            codec.request(codec.example | {name: row[name]})
        except CONVERSION_ERRORS as cell_error:
            found.append(problem(name, f"unreadable value {row[name]!r} ({cell_error})"))
    return found or [problem(None, f"unreadable row ({error})")]


def to_requests(codec: Codec, rows: list[Mapping[str, Any]], checked: Checked) -> dict[int, dict]:
    """Stored rows -> request records, by position; rows with a null or unreadable input go to `checked`."""
    names = input_names(codec)
    requests = {}
    for position, row in enumerate(rows):
        missing = [name for name in names if row.get(name) is None]
        if missing:
            checked.problems[position] = [problem(name, "missing value") for name in missing]
            continue
        try:
            requests[position] = codec.request(row)
        except CONVERSION_ERRORS as error:
            checked.problems[position] = unreadable(codec, row, error)
    return requests


def validate_chunk(codec: Codec, positions: list[int], requests: list[dict], checked: Checked) -> None:
    """Validate one chunk (at most the codec's batch limit); set bad rows aside until the rest passes."""
    while positions:
        try:
            records = codec.validate(requests)
        except InvalidRequest as error:
            bad: dict[int, list[dict]] = {}
            for found in error.errors:
                if not found["loc"] or not isinstance(found["loc"][0], int):
                    raise  # about the batch, not a row: a chunk this module built wrong
                bad.setdefault(positions[found["loc"][0]], []).append(found)
            checked.problems.update(bad)
            kept = [i for i, position in enumerate(positions) if position not in bad]
            positions, requests = [positions[i] for i in kept], [requests[i] for i in kept]
            continue
        checked.positions += positions
        checked.records += records
        return


def check_rows(codec: Codec, rows: list[Mapping[str, Any]]) -> Checked:
    checked = Checked()
    requests = to_requests(codec, rows, checked)
    positions = list(requests)
    for start in range(0, len(positions), codec.max_batch):
        chunk = positions[start:start + codec.max_batch]
        validate_chunk(codec, chunk, [requests[p] for p in chunk], checked)
    return checked


def arrow_type(values: np.ndarray) -> pa.DataType:
    """Text (labels) as Arrow strings, numbers as their own type: never Arrow's null type, which an
    all-rejected batch would otherwise give a column."""
    return pa.string() if values.dtype == object else pa.from_numpy_dtype(values.dtype)


def spread(values: np.ndarray, positions: np.ndarray, rows: int) -> pa.Array:
    """Values of the scored rows at their positions in the batch, null elsewhere."""
    values = np.asarray(values)
    if values.dtype == object:
        full = np.full(rows, None, dtype=object)
        full[positions] = values
        return pa.array(full, arrow_type(values))
    full = np.zeros(rows, values.dtype)
    full[positions] = values
    absent = np.ones(rows, bool)
    absent[positions] = False
    return pa.array(full, mask=absent)


def reject_columns(problems: dict[int, list[dict]], rows: int) -> dict[str, pa.Array]:
    columns, messages = [None] * rows, [None] * rows
    for position, found in problems.items():
        fields = dict.fromkeys(str(e["loc"][-1]) for e in found if e["loc"] and isinstance(e["loc"][-1], str))
        columns[position] = COLUMN_SEPARATOR.join(fields)
        messages[position] = PROBLEM_SEPARATOR.join(e["msg"] for e in found)
    return {REJECT_COLUMN: pa.array(columns, pa.string()), REJECT_PROBLEM: pa.array(messages, pa.string())}


def empty_predictions(contract: ModelContract) -> dict[str, np.ndarray]:
    """The prediction columns of no rows: their names and types, from the one rule that writes them."""
    embeddings = np.zeros((0, contract.embedding_size), np.float32) if contract.embedding_output else None
    return prediction_columns(np.zeros((0, len(contract.labels)), np.float32), contract, embeddings)


def added_fields(contract: ModelContract) -> tuple[list[pa.Field], list[pa.Field], list[pa.Field]]:
    """What scoring adds to the input's columns: prediction, model identity and reject fields."""
    predictions = [pa.field(name, arrow_type(values)) for name, values in empty_predictions(contract).items()]
    identity = [pa.field(name, pa.string()) for name in (MODEL_NAME, MODEL_VERSION, MODEL_RUN_ID)]
    rejects = [pa.field(name, pa.string()) for name in (REJECT_COLUMN, REJECT_PROBLEM)]
    return predictions, identity, rejects


class BatchScorer:
    """A package ready to score batches: its Predictor (one onnxruntime session) and who it is."""

    def __init__(self, files: PackageFiles, identity: ModelIdentity, threads: int = 1):
        self.predictor = Predictor(files, settings=SessionSettings(intra_op_threads=threads, inter_op_threads=1))
        self.codec = self.predictor.codec
        self.contract = self.predictor.contract
        self.identity = identity
        self.read_columns = input_names(self.codec) + ([self.contract.id_field] if self.contract.id_field else [])

    def rows(self, table: pa.Table) -> list[dict]:
        """The cells `request` reads, as Python values (a null stays None)."""
        present = [name for name in self.read_columns if name in table.column_names]
        return table.select(present).to_pylist()

    def score(self, table: pa.Table) -> pa.Table:
        """The batch, every row kept, with the prediction columns (null where rejected), the model's
        identity and the reject columns (null where scored) added."""
        rows = table.num_rows
        checked = check_rows(self.codec, self.rows(table))
        scored = np.asarray(checked.positions, dtype=np.int64)
        if checked.records:
            probabilities, embeddings = self.predictor.scores(checked.records)
            predictions = prediction_columns(probabilities, self.contract, embeddings)
        else:
            predictions = empty_predictions(self.contract)
        added = {name: spread(values, scored, rows) for name, values in predictions.items()}
        added |= self.identity.columns(rows) | reject_columns(checked.problems, rows)
        for name, values in added.items():
            table = table.append_column(name, values)
        return table
