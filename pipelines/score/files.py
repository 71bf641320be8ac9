"""The files of a scoring job: which inputs it reads, and the two Parquet files it writes as it goes.

Inputs are Parquet or CSV, a file or a folder of them. A CSV's columns are read as text, so that a cell
no number can be read from (a typo, a stray word) reaches the codec and is rejected with its row, where
type inference would fail the whole read. Outputs are written batch by batch (the memory a job needs does
not grow with the file) under temporary names, renamed when the job ends: a crashed job leaves no
half-file under the name a reader waits for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import csv

from pipelines.score.rows import REJECT_PROBLEM

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
REJECTS_SUFFIX = ".rejects.parquet"
PARTIAL_SUFFIX = ".partial"


class InputError(ValueError):
    """An input the job cannot read at all (missing, unknown format, lacking a model input column)."""


def input_files(path: str | Path) -> tuple[list[Path], str]:
    """The files to read and their format, from a file or a folder of files of one format."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS) if path.is_dir() else [path]
    formats = {FORMATS.get(p.suffix.lower()) for p in files}
    if not files or None in formats or len(formats) > 1:
        raise InputError(f"input {path}: expected Parquet (.parquet, .pq) or CSV (.csv) files of one format")
    return files, formats.pop()


def csv_as_text(files: list[Path]) -> csv.ConvertOptions:
    """Every column as text, an empty cell as null (a missing value)."""
    names = csv.open_csv(files[0]).schema.names
    return csv.ConvertOptions(column_types={name: pa.string() for name in names}, strings_can_be_null=True)


def default_rejects_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name.removesuffix(output.suffix) + REJECTS_SUFFIX)


@dataclass
class Counts:
    rows_in: int = 0
    scored: int = 0
    rejected: int = 0
    # When the first batch was written (time.perf_counter) and its rows, and when the last was: the rate
    # once the job runs, apart from starting it (a runtime, actors, a model), which a benchmark shows apart.
    first_written: float | None = None
    first_rows: int = 0
    last_written: float | None = None

    def add(self, scored: int, rejected: int) -> None:
        self.rows_in += scored + rejected
        self.scored += scored
        self.rejected += rejected
        self.last_written = time.perf_counter()
        if self.first_written is None:
            self.first_written, self.first_rows = self.last_written, self.rows_in

    def steady_rate(self) -> float | None:
        """Rows per second after the first batch (None before a second one)."""
        if self.first_written is None or self.last_written == self.first_written:
            return None
        return (self.rows_in - self.first_rows) / (self.last_written - self.first_written)


@dataclass
class ScoredFiles:
    """The scored rows to `output`, the rejected ones to `rejects`, each with its own columns of the
    scored batch (see pipelines/score/rows.py: `BatchScorer.score`)."""

    output: Path
    rejects: Path
    scored_schema: pa.Schema
    rejects_schema: pa.Schema
    counts: Counts = field(default_factory=Counts)

    def __enter__(self) -> "ScoredFiles":
        for path in (self.output, self.rejects):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.writers = {path: pq.ParquetWriter(self.partial(path), schema)
                        for path, schema in ((self.output, self.scored_schema), (self.rejects, self.rejects_schema))}
        return self

    @staticmethod
    def partial(path: Path) -> Path:
        return path.with_name(path.name + PARTIAL_SUFFIX)

    def write(self, batch: pa.Table) -> None:
        rejected = pc.is_valid(batch[REJECT_PROBLEM])
        scored = batch.filter(pc.invert(rejected)).select(self.scored_schema.names).cast(self.scored_schema)
        rejects = batch.filter(rejected).select(self.rejects_schema.names).cast(self.rejects_schema)
        self.writers[self.output].write_table(scored)
        self.writers[self.rejects].write_table(rejects)
        self.counts.add(scored.num_rows, rejects.num_rows)

    def __exit__(self, kind, error, traceback) -> None:
        for path, writer in self.writers.items():
            writer.close()
            if error is None:
                self.partial(path).replace(path)
            else:
                self.partial(path).unlink(missing_ok=True)
