"""Batch scoring: Ray Data on N CPUs against one process, over the same synthetic churn file.

    python benchmarks/bench_score.py [--rows 10000000] [--cpus 2] [--bad-share 0.001] [--sample 1000]
                                     [--contenders single,ray] [--rounds 2] [--config configs/score.yaml]
    make bench-score ROWS=10000000

1. The input: `--rows` synthetic customers (pipelines/churn/batch_input.py), `--bad-share` of them with a
   tenure the contract refuses, written once to data/generated/ and reused while its row count matches.
2. The model: `churn@champion` from the MLflow store the other commands use; without one, the tests' churn
   model (tests/factories.py: a logistic regression on real Telco rows) registered into a temporary
   store, loudly.
3. Each contender runs in its own process, scoring the whole file into Parquet (scored rows and rejects):
     single process  pyarrow record batches -> the same BatchScorer (codec validation, onnxruntime, one
                     thread) -> the same two Parquet writers: the job without Ray (Arrow in, Arrow out:
                     a pandas round trip would only slow the baseline down)
     ray data        `python -m pipelines.score`'s job (pipelines/score/job.py) on a local Ray runtime of
                     `--cpus` CPUs, one actor per CPU
   Wall time and rows/s include starting Ray (and for both, loading the model). Peak memory is the largest
   sum of PSS (proportional set size: shared pages such as Ray's object store counted once) over the
   contender's process and all its children (Ray's raylet, GCS and workers), sampled every 0.2 s; CPU
   seconds are the whole tree's (user + system), the work done whatever else runs on the machine.
   The contenders take `--rounds` turns (single, ray, single, ray, ...), so that the background load of a
   shared machine hits both alike; each is reported by its fastest round (its peak memory: the largest).
4. Parity: `--sample` scored rows of the last contender's output are scored again through
   `modelpkg.runtime.Predictor`, the path the server scores a request on (request record -> validation ->
   feeds -> graph); the largest probability difference must be <= 1e-6. The rejected rows are counted by
   the column named at fault.
A benchmark, not a test: it prints, it does not fail. Other processes on a shared machine take cores too;
the load average is printed beside the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GENERATED = REPO / "data" / "generated"
SAMPLE_PERIOD_S = 0.2  # how often the memory of a contender's process tree is read
PARITY_ATOL = 1e-6  # batch probabilities vs the serving path's
SPEEDUP_GOAL = 1.6  # issue 19: Ray Data on 2 cores vs one process
MEMORY_GOAL_MB = 2048  # issue 19: peak memory for 10M rows
CONTENDERS = ("single", "ray")
LABELS = {"single": "single process", "ray": "ray data"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--bad-share", type=float, default=0.001)
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--config", default=str(REPO / "configs" / "score.yaml"))
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="which to run, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="turns each contender takes")
    # a contender's own process (run by the benchmark itself)
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    return parser.parse_args()


# ------------------------------------------------------------------------------------- the contenders
def use_store() -> None:
    import mlflow

    from pipelines.common import tracking

    tracking.quiet_libraries()
    uri = tracking.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def score_in_one_process(job, package, config):
    """The job without Ray: one BatchScorer over the file's record batches, into the same writers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.score.rows import BatchScorer

    scorer = BatchScorer(package.files, job.identity, config.actor_threads)
    with job.sink() as sink:
        for path in job.files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=config.batch_rows):
                sink.write(scorer.score(pa.Table.from_batches([batch])))
    return sink.counts


def contender(args: argparse.Namespace) -> None:
    """Runs in the contender's own process: score the file, write what happened as JSON."""
    started = time.perf_counter()
    from modelpkg.package import load_model
    from pipelines.common.config import load_config
    from pipelines.score.job import ScoreConfig, plan, score_file

    use_store()
    config = load_config(args.config, ScoreConfig).model_copy(update={"num_cpus": args.cpus})
    package = load_model("churn", alias="champion")
    if args.contender == "ray":
        counts = score_file(args.input, args.output, package, config).counts
    else:
        counts = score_in_one_process(plan(args.input, args.output, package), package, config)
    Path(args.json).write_text(json.dumps({
        "rows_in": counts.rows_in, "scored": counts.scored, "rejected": counts.rejected,
        "startup": counts.first_written - started, "steady_rate": counts.steady_rate()}))


# ---------------------------------------------------------------------------------------- the harness
@contextmanager
def model_store() -> Iterator[dict[str, str]]:
    """The environment that finds churn@champion: the usual store, else a temporary one holding the tests'
    churn model."""
    import mlflow

    from modelpkg.package import resolve_version

    use_store()
    try:
        version = resolve_version("churn", "champion")
        print(f"model: churn v{version} (champion) from {mlflow.get_tracking_uri()}")
        yield {}
        return
    except LookupError:
        pass
    with tempfile.TemporaryDirectory(prefix="bench-score-store-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        print(f"NOTE: no churn@champion in {mlflow.get_tracking_uri()}: scoring the tests' churn model "
              f"(logistic regression on real Telco rows), registered into {uri}")
        os.environ["MLFLOW_TRACKING_URI"] = uri
        use_store()
        from tests.factories import export_small_churn

        export_small_churn()
        yield {"MLFLOW_TRACKING_URI": uri}


def input_file(rows: int, bad_share: float) -> Path:
    import pyarrow.parquet as pq

    from pipelines.churn.batch_input import write_customers

    path = GENERATED / f"churn-score-{rows}-bad{bad_share:g}.parquet"
    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        print(f"input: {path} (reused)")
        return path
    started = time.perf_counter()
    write_customers(path, rows, bad_share=bad_share)
    print(f"input: {path} ({rows:,} rows written in {time.perf_counter() - started:.0f} s)")
    return path


def tree_sample(process, cpu: dict[int, float]) -> int:
    """PSS of a process and its descendants, in bytes (processes that end meanwhile count 0); records each
    one's CPU seconds so far in `cpu` (by pid: the last reading of a process that ends stays)."""
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_full_info().pss
            times = member.cpu_times()
            cpu[member.pid] = times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run_contender(name: str, args: argparse.Namespace, source: Path, out: Path, env: dict[str, str]) -> dict:
    import psutil

    report = out / f"{name}.json"
    command = [sys.executable, __file__, "--contender", name, "--input", str(source), "--output",
               str(out / f"{name}.parquet"), "--json", str(report), "--cpus", str(args.cpus), "--config", args.config]
    child_env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"} | env
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=child_env, stdout=subprocess.DEVNULL)
    watched, peak, cpu = psutil.Process(process.pid), 0, {}
    while process.poll() is None:
        peak = max(peak, tree_sample(watched, cpu))
        time.sleep(SAMPLE_PERIOD_S)
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed with exit status {process.returncode}")
    return json.loads(report.read_text()) | {"wall": time.perf_counter() - started, "peak_mb": peak / 2**20,
                                             "cpu": sum(cpu.values())}


def fastest(rounds: list[dict]) -> dict:
    """A contender's fastest round, with the largest peak memory of all its rounds."""
    return min(rounds, key=lambda found: found["wall"]) | {"peak_mb": max(found["peak_mb"] for found in rounds)}


def parity(output: Path, sample: int) -> float:
    """Largest |probability| difference between the batch output and the serving path, on a sample."""
    import numpy as np
    import pyarrow.parquet as pq

    from modelpkg.contract import PROBABILITY
    from modelpkg.package import load_model
    from modelpkg.runtime import Predictor

    package = load_model("churn", alias="champion")
    scored = pq.read_table(output).to_pandas()
    rows = scored.sample(n=min(sample, len(scored)), random_state=0)
    predictor = Predictor(package.files)
    served = predictor.score_rows(rows.to_dict("records"))[:, predictor.contract.positive_index]
    return float(np.abs(served - rows[PROBABILITY].to_numpy()).max())


def rejects_by_column(output: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    from pipelines.score.files import default_rejects_path
    from pipelines.score.rows import REJECT_COLUMN

    return pq.read_table(default_rejects_path(output), columns=[REJECT_COLUMN]).to_pandas()[REJECT_COLUMN] \
        .value_counts().to_dict()


def table(results: dict[str, dict], cpus: int) -> str:
    """Wall time and rows/s end to end (process start to exit), the time to the first written batch
    (imports, model, Ray and its actors), the rows/s from then on, and peak memory."""
    lines = [f"{'contender':<22}{'rows in':>11}{'scored':>11}{'rejected':>9}{'wall s':>8}{'rows/s':>9}"
             f"{'to 1st batch s':>15}{'rows/s after':>13}{'CPU s':>7}{'peak MB':>9}"]
    for name, found in results.items():
        label = LABELS[name] + (f" ({cpus} CPUs)" if name == "ray" else "")
        lines.append(f"{label:<22}{found['rows_in']:>11,}{found['scored']:>11,}{found['rejected']:>9,}"
                     f"{found['wall']:>8.1f}{found['rows_in'] / found['wall']:>9,.0f}{found['startup']:>15.1f}"
                     f"{found['steady_rate'] or 0:>13,.0f}{found['cpu']:>7.0f}{found['peak_mb']:>9,.0f}")
    return "\n".join(lines)


def compare(results: dict[str, dict]) -> None:
    agree = all(results["ray"][key] == results["single"][key] for key in ("rows_in", "scored", "rejected"))
    speedup = results["single"]["wall"] / results["ray"]["wall"]
    steady = (results["ray"]["steady_rate"] or 0) / (results["single"]["steady_rate"] or float("inf"))
    print(f"speed-up of Ray Data over one process: {speedup:.2f}x end to end, {steady:.2f}x after the first batch "
          f"(goal >= {SPEEDUP_GOAL}x on 2 cores)")
    print(f"both contenders agree on rows in, scored and rejected: {agree}")


def main() -> None:
    args = parse_args()
    if args.contender:
        contender(args)
        return
    chosen = [name for name in CONTENDERS if name in args.contenders.split(",")]
    load = os.getloadavg()[0]
    with model_store() as env:
        source = input_file(args.rows, args.bad_share)
        with tempfile.TemporaryDirectory(prefix="bench-score-", dir=GENERATED) as tmp:
            rounds: dict[str, list[dict]] = {name: [] for name in chosen}
            for _ in range(args.rounds):
                for name in chosen:
                    rounds[name].append(run_contender(name, args, source, Path(tmp), env))
            results = {name: fastest(found) for name, found in rounds.items()}
            gap = parity(Path(tmp) / f"{chosen[-1]}.parquet", args.sample)
            rejects = rejects_by_column(Path(tmp) / f"{chosen[-1]}.parquet")
    print()
    print(f"fastest of {args.rounds} round(s) each, taken in turns")
    print(table(results, args.cpus))
    if len(results) == len(CONTENDERS):
        compare(results)
    for name, found in results.items():
        print(f"peak memory (PSS of the process tree) of {LABELS[name]}: {found['peak_mb']:,.0f} MB"
              + (f" (goal < {MEMORY_GOAL_MB} MB at 10M rows)" if name == "ray" else ""))
    print(f"rejected rows by column at fault ({LABELS[chosen[-1]]}): {rejects}")
    print(f"serving parity: max |p_batch - p_predictor| over {args.sample} scored rows = {gap:.2e} "
          f"({'ok' if gap <= PARITY_ATOL else 'FAILS'} at {PARITY_ATOL:g})")
    print(f"load average (1 min) before: {load:.1f}, after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: "
          "other processes shared the CPUs")


if __name__ == "__main__":
    main()
