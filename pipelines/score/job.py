"""The scoring job on Ray Data: read -> `map_batches` on an actor pool (one onnxruntime session per actor)
-> the driver streams the scored and rejected rows into their Parquet files.

The model travels as bytes (the package's files, read once by the driver from the registry): workers need
no access to the tracking store, so the same job runs on a cluster `RAY_ADDRESS` names. Ray Data streams:
blocks are read, scored and written while later ones are still being read, with its backpressure bounding
what is in flight, so memory does not grow with the file.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from modelpkg.contract import ModelContract
from modelpkg.package import PackageFiles, RegisteredPackage, package_files
from pipelines.common.config import Config
from pipelines.common.environment import environment_variables
from pipelines.common.ray_runtime import MIB, ray_runtime
from pipelines.score.files import Counts, InputError, ScoredFiles, csv_as_text, default_rejects_path, input_files
from pipelines.score.rows import BatchScorer, ModelIdentity, added_fields

log = logging.getLogger(__name__)


class ScoreConfig(Config):
    num_cpus: int | None = Field(None, ge=1)  # cores of the local Ray runtime (None: all); a cluster has its own
    actors: int | None = Field(None, ge=1)  # scoring actors, one session each (None: one per CPU of the runtime)
    actor_threads: int = Field(1, ge=1)  # onnxruntime intra-op threads per actor
    batch_rows: int = Field(4096, ge=1)  # rows per map_batches call
    # CPUs the actors leave to Ray Data's read tasks (listing, decoding): a pool claiming every CPU starves them
    # and the job waits forever. The actors share the rest; they still use a core each (the claim is logical).
    read_cpus: float = Field(1.0, ge=0)
    block_mb: float = Field(8.0, gt=0)  # largest block Ray Data reads: small blocks spread one big file over the actors
    # Largest piece of a Parquet file (its compressed row groups) one read task takes. A read task decodes its
    # piece ahead of the actors, so this bounds the reader's memory whatever the file's size.
    read_unit_mb: float = Field(8.0, gt=0)
    # Object store of the local runtime: Ray Data reads ahead only as far as it allows, which bounds the job's
    # memory whatever the file's size (None: Ray's default, 30% of RAM).
    object_store_mb: int | None = Field(512, ge=100)


def actor_cpus(cluster_cpus: float, actors: int, read_cpus: float) -> float:
    """Each actor's CPU claim: what the read tasks leave, shared equally (0 when they leave nothing)."""
    return max(cluster_cpus - read_cpus, 0.0) / actors


# Ray Data 2.60 reads a Parquet file in read units of row groups bin-packed up to this many bytes (its knob
# is an environment variable, read when a read is planned); the default, 128 MiB, makes a 10M-row file of
# a few hundred MB one or two read tasks, each decoding far ahead of the actors.
READ_UNIT_ENV = "RAY_DATA_PARQUET_BIN_PACKING_BYTES"


@contextmanager
def read_sizes(config: ScoreConfig) -> Iterator[None]:
    """Ray Data's block and read-unit sizes for the datasets planned meanwhile (each keeps a copy of the
    context it was made in), then the previous ones again."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved_block = context.target_max_block_size
    context.target_max_block_size = int(config.block_mb * MIB)
    try:
        with environment_variables(**{READ_UNIT_ENV: str(int(config.read_unit_mb * MIB))}):
            yield
    finally:
        context.target_max_block_size = saved_block


def package_blob(files: PackageFiles) -> dict[str, bytes]:
    """A package as bytes by file name (the flat bundle layout), to ship to actors on any node."""
    return {path.name: path.read_bytes() for path in files.all_files()}


def unpack(blob: dict[str, bytes], directory: Path) -> PackageFiles:
    for name, data in blob.items():
        (directory / name).write_bytes(data)
    return package_files(directory)


class ScoreActor:
    """One actor of the pool: the package unpacked and its session opened once, then batch after batch."""

    def __init__(self, blob: dict[str, bytes], identity: ModelIdentity, threads: int):
        self.folder = tempfile.TemporaryDirectory(prefix="score-model-")
        self.scorer = BatchScorer(unpack(blob, Path(self.folder.name)), identity, threads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.scorer.score(batch)


def identity_of(package: RegisteredPackage) -> ModelIdentity:
    return ModelIdentity(package.name, package.version, package.contract.run_id)


def input_schema(files: list[Path], kind: str) -> pa.Schema:
    if kind == "parquet":
        return pq.read_schema(files[0])
    return pa.schema([(name, pa.string()) for name in csv_as_text(files).column_types])


def check_columns(schema: pa.Schema, contract: ModelContract) -> None:
    """A file without a model input column has no row to score: say so before starting."""
    missing = [spec.name for spec in contract.inputs if spec.name not in schema.names]
    if missing:
        raise InputError(f"the input lacks column(s) {missing} that model {contract.name!r} takes")


def output_schemas(schema: pa.Schema, contract: ModelContract) -> tuple[pa.Schema, pa.Schema]:
    """(scored rows, rejected rows): the input's columns plus predictions and identity, or plus identity and
    the reject columns."""
    predictions, identity, rejects = added_fields(contract)
    taken = {f.name for f in predictions + identity + rejects} & set(schema.names)
    if taken:
        raise InputError(f"the input already has column(s) {sorted(taken)} that scoring writes")
    inputs = list(schema)
    return pa.schema(inputs + predictions + identity), pa.schema(inputs + identity + rejects)


def read_dataset(files: list[Path], kind: str):
    import ray.data

    paths = [str(path) for path in files]
    if kind == "parquet":
        return ray.data.read_parquet(paths)
    return ray.data.read_csv(paths, convert_options=csv_as_text(files))


@dataclass(frozen=True)
class Plan:
    """What a scoring run reads and writes, settled before any row is scored."""

    files: list[Path]
    kind: str  # parquet | csv
    output: Path
    rejects: Path
    scored_schema: pa.Schema
    rejects_schema: pa.Schema
    identity: ModelIdentity

    def sink(self) -> ScoredFiles:
        return ScoredFiles(self.output, self.rejects, self.scored_schema, self.rejects_schema)


def plan(input_path: str | Path, output: str | Path, package: RegisteredPackage,
         rejects: str | Path | None = None) -> Plan:
    """Check the input against the model and fix the outputs (rejects default: `<output>.rejects.parquet`)."""
    files, kind = input_files(input_path)
    schema = input_schema(files, kind)
    check_columns(schema, package.contract)
    scored_schema, rejects_schema = output_schemas(schema, package.contract)
    return Plan(files, kind, Path(output), Path(rejects) if rejects else default_rejects_path(output),
                scored_schema, rejects_schema, identity_of(package))


@dataclass(frozen=True)
class Summary:
    identity: ModelIdentity
    counts: Counts
    seconds: float
    output: Path
    rejects: Path

    def text(self) -> str:
        rate = self.counts.rows_in / self.seconds if self.seconds else 0.0
        return (f"model {self.identity.name} v{self.identity.version} (run {self.identity.run_id})\n"
                f"rows in {self.counts.rows_in}, scored {self.counts.scored}, rejected {self.counts.rejected} "
                f"in {self.seconds:.1f} s ({rate:,.0f} rows/s)\n"
                f"scored rows: {self.output}\nrejected rows: {self.rejects}")


def score_file(input_path: str | Path, output: str | Path, package: RegisteredPackage, config: ScoreConfig,
               rejects: str | Path | None = None) -> Summary:
    """Score every row of `input_path` with `package` on Ray Data; scored rows to `output`, rejected ones to
    `rejects`. The time reported includes starting (or joining) Ray."""
    started = time.perf_counter()
    job = plan(input_path, output, package, rejects)
    with ray_runtime(config.num_cpus, config.object_store_mb) as resources, read_sizes(config):
        from ray.data import ActorPoolStrategy

        cpus = resources.get("CPU", 1.0)
        actors = config.actors or max(1, int(cpus))
        scored = read_dataset(job.files, job.kind).map_batches(
            ScoreActor, batch_size=config.batch_rows, batch_format="pyarrow",
            compute=ActorPoolStrategy(size=actors), num_cpus=actor_cpus(cpus, actors, config.read_cpus),
            fn_constructor_kwargs={"blob": package_blob(package.files), "identity": job.identity,
                                   "threads": config.actor_threads})
        log.info("scoring %s with %d actors on %g CPUs", input_path, actors, cpus)
        with job.sink() as sink:
            for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
                sink.write(batch)
    return Summary(job.identity, sink.counts, time.perf_counter() - started, job.output, job.rejects)
