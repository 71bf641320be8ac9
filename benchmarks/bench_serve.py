"""Serving throughput and latency: our FastAPI + onnxruntime server against `mlflow models serve`.

One run, one machine, one registered model (`churn@champion` in the MLflow store), one load generator
(wrk, POSTing the same body from benchmarks/wrk_post.lua), batch 1 and batch 64, three servers:

  serving       python -m serving, everything on: validation, prediction log (group commit), metrics
  serving-bare  the same server with the prediction log and metrics switched off
  mlflow        mlflow models serve --env-manager local, same registered model (its ONNX pyfunc cannot
                take the [batch, 1] inputs, so the native scikit-learn model logged beside it in the
                same run is served, as the issue asks)

Goals (issue): at batch 1, serving >= 20x mlflow's requests/s; serving >= 80% of serving-bare's
requests/s; serving's p99 <= 15 ms at concurrency 8. A benchmark, not a test: it prints, it does not fail.
Each server gets `--duration` seconds of load per batch size, cut into `--rounds` slices taken in turns
with its rival, so that the background load of a shared machine hits both alike.

    python benchmarks/bench_serve.py [--duration 15] [--rounds 3] [--connections 8] [--threads 2]
                                     [--batches 1,64] [--targets serving,serving-bare,mlflow] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LUA = Path(__file__).with_name("wrk_post.lua")
VENV_BIN = Path(sys.executable).parent
CSV_CANDIDATES = [os.environ.get("CHURN_DATA", ""), str(REPO.parent / "shared/data/telco-churn/Telco-Customer-Churn.csv"),
                  str(REPO / "data/raw/Telco-Customer-Churn.csv")]
START_TIMEOUT_SECONDS = 120
WARMUP_SECONDS = 2
GOAL_VS_MLFLOW, GOAL_OVERHEAD, GOAL_P99_MS = 20.0, 0.8, 15.0


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed on first use."""
    if not shutil.which("wrk"):
        print("wrk not found: installing it with apt-get (Debian package 'wrk')")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk")


def champion(name: str, alias: str) -> tuple[str, str]:
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as error:
        sys.exit(f"no {name}@{alias} in the MLflow store {uri} ({error}): run `make churn` first")
    return str(version.version), version.run_id


def customer_rows(n: int) -> list[dict]:
    """n real Telco rows as request records (feature columns + customerID)."""
    import pandas as pd

    from pipelines.churn import schema

    path = next(p for p in CSV_CANDIDATES if p and Path(p).is_file())
    frame = pd.read_csv(path, nrows=n, dtype={"TotalCharges": str})
    frame["TotalCharges"] = pd.to_numeric(frame["TotalCharges"].str.strip().replace("", "0"))
    return [{schema.ID_COLUMN: row[schema.ID_COLUMN]} | {c: str(row[c]) for c in schema.CATEGORICAL}
            | {c: float(row[c]) for c in schema.NUMERIC} for _, row in frame.iterrows()]


def write_bodies(directory: Path, rows: list[dict], batch: int) -> dict[str, Path]:
    """The same records in each server's request format."""
    ours, theirs = directory / f"serving-{batch}.json", directory / f"mlflow-{batch}.json"
    ours.write_text(json.dumps(rows[:batch]))
    theirs.write_text(json.dumps({"dataframe_records": [{k: v for k, v in r.items() if k != "customerID"} for r in rows[:batch]]}))
    return {"serving": ours, "serving-bare": ours, "mlflow": theirs}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def server(command: list[str], ready_url: str, env: dict[str, str], log_file: Path):
    """Start a server, wait until `ready_url` answers 200, stop it (SIGTERM, then SIGKILL) afterwards."""
    with open(log_file, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[:3]} exited ({process.returncode}); see {log_file}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{ready_url} not ready after {START_TIMEOUT_SECONDS} s; see {log_file}")
                time.sleep(0.5)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_wrk(wrk: str, url: str, body: Path, seconds: float, threads: int, connections: int) -> dict:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA), url]
    out = subprocess.run(command, env={**os.environ, "WRK_BODY": str(body)}, capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("WRK_JSON "))
    return json.loads(line.removeprefix("WRK_JSON "))


def measure(args, wrk: str, urls: dict[str, str], bodies: dict[int, dict[str, Path]], batches: list[int]) -> list[dict]:
    """Per batch size: warm every target up, then `rounds` slices of duration/rounds seconds each, the
    targets taking turns (A B A B ...), so a change in the machine's background load hits all alike.
    requests/s = all requests / all seconds; p50 and p99 = the median over the slices."""
    results = []
    for batch in batches:
        for target, url in urls.items():
            body = bodies[batch][target]
            check = httpx.post(url, content=body.read_bytes(), headers={"content-type": "application/json"}, timeout=30)
            if check.status_code != 200:
                raise RuntimeError(f"{target}: probe request failed with {check.status_code}: {check.text[:300]}")
            run_wrk(wrk, url, body, WARMUP_SECONDS, args.threads, args.connections)
        slices: dict[str, list[dict]] = {target: [] for target in urls}
        for _ in range(args.rounds):
            for target, url in urls.items():
                slices[target].append(run_wrk(wrk, url, bodies[batch][target], args.duration / args.rounds,
                                              args.threads, args.connections))
        for target, runs in slices.items():
            requests = sum(run["requests"] for run in runs)
            rps = requests / (sum(run["duration_us"] for run in runs) / 1e6)
            results.append({"target": target, "batch": batch, "requests_per_s": rps, "rows_per_s": rps * batch,
                            "p50_ms": statistics.median(run["p50_us"] for run in runs) / 1000,
                            "p99_ms": statistics.median(run["p99_us"] for run in runs) / 1000,
                            "errors": sum(run["non_2xx"] + run["socket_errors"] for run in runs), "requests": requests,
                            "slices_requests_per_s": [round(run["requests"] / (run["duration_us"] / 1e6)) for run in runs]})
            r = results[-1]
            print(f"  {target:13s} batch {batch:3d}: {rps:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
                  f"errors {r['errors']}  (slices: {r['slices_requests_per_s']} req/s)", flush=True)
    return results


def bench_serving(args, wrk, bodies, workdir: Path, targets: list[str]) -> list[dict]:
    """Both variants of our server up at once and measured in turns (see measure): the ratio between
    them is the number that matters, and it must not depend on when each ran."""
    flags = {"serving": [], "serving-bare": ["--no-prediction-log", "--no-metrics"]}
    env = {**os.environ, "PREDICTION_LOG": str(workdir / "predictions.db"), "PYTHONPATH": str(REPO)}
    urls = {}
    with contextlib.ExitStack() as stack:
        for target in targets:
            port = free_port()
            command = [sys.executable, "-m", "serving", "--port", str(port)] + flags[target]
            stack.enter_context(server(command, f"http://127.0.0.1:{port}/ready", env, workdir / f"{target}.log"))
            urls[target] = f"http://127.0.0.1:{port}/v1/{args.model}/predict"
        return measure(args, wrk, urls, bodies, args.batches)


def bench_mlflow(args, wrk, bodies, workdir: Path, run_id: str) -> tuple[list[dict], str]:
    """Serve what is registered; when its pyfunc cannot answer, the native model logged in the same run."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for model_uri in (f"models:/{args.model}@{args.alias}", f"runs:/{run_id}/native"):
        port = free_port()
        command = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                   "-h", "127.0.0.1", "-p", str(port)]
        with server(command, f"http://127.0.0.1:{port}/ping", env, workdir / "mlflow.log"):
            url = f"http://127.0.0.1:{port}/invocations"
            probe = httpx.post(url, content=bodies[args.batches[0]]["mlflow"].read_bytes(),
                               headers={"content-type": "application/json"}, timeout=60)
            if probe.status_code == 200:
                print(f"  mlflow serves {model_uri}", flush=True)
                return measure(args, wrk, {"mlflow": url}, bodies, args.batches), model_uri
            print(f"  mlflow cannot predict with {model_uri} ({probe.status_code}): {probe.text[:160]}", flush=True)
    raise RuntimeError("mlflow models serve could not serve the champion nor its native model")


def in_process(args, rows: list[dict], run_id: str) -> dict[str, float]:
    """One row, in process, no HTTP: onnxruntime on the served bundle against the native pipeline."""
    import timeit

    import mlflow
    import pandas as pd

    from serving.config import load_serving_config
    from serving.models import load_model
    from serving.sources import RegistrySource

    config = load_serving_config()
    model = load_model(RegistrySource(config.source.tracking_uri, config.source.cache_dir).resolve(args.model, args.alias),
                       config.model(args.model), config)
    records = model.adapter.parse(json.dumps(rows[:1]).encode())
    feeds = model.adapter.codec.feeds(records)
    timings = {"onnxruntime_run_us": min(timeit.repeat(lambda: model.session.run(None, feeds), number=200, repeat=5)) / 200 * 1e6}
    timings["serving_parse_predict_us"] = min(timeit.repeat(
        lambda: model.predict(model.adapter.parse(json.dumps(rows[:1]).encode())), number=200, repeat=5)) / 200 * 1e6
    with contextlib.suppress(Exception):
        native = mlflow.sklearn.load_model(f"runs:/{run_id}/native")
        frame = pd.DataFrame([{k: v for k, v in rows[0].items() if k != "customerID"}])
        timings["native_predict_proba_us"] = min(timeit.repeat(lambda: native.predict_proba(frame), number=20, repeat=5)) / 20 * 1e6
    return timings


def report(results: list[dict], timings: dict[str, float], served_by_mlflow: str) -> None:
    by = {(r["target"], r["batch"]): r for r in results}
    print("\n| server | batch | requests/s | rows/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['target']} | {r['batch']} | {r['requests_per_s']:.0f} | {r['rows_per_s']:.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
    print(f"\nmlflow served: {served_by_mlflow}")
    for batch in sorted({r["batch"] for r in results}):
        ours, bare, theirs = by.get(("serving", batch)), by.get(("serving-bare", batch)), by.get(("mlflow", batch))
        if ours and theirs:
            ratio = ours["requests_per_s"] / theirs["requests_per_s"]
            goal = f" (goal >= {GOAL_VS_MLFLOW:.0f}x: {'met' if ratio >= GOAL_VS_MLFLOW else 'MISSED'})" if batch == 1 else ""
            print(f"batch {batch}: serving / mlflow requests/s = {ratio:.1f}x{goal}")
        if ours and bare:
            ratio = ours["requests_per_s"] / bare["requests_per_s"]
            goal = f" (goal >= {GOAL_OVERHEAD:.0%}: {'met' if ratio >= GOAL_OVERHEAD else 'MISSED'})" if batch == 1 else ""
            print(f"batch {batch}: serving (log + metrics on) / serving-bare requests/s = {ratio:.0%}{goal}")
        if ours and batch == 1:
            print(f"batch 1: serving p99 = {ours['p99_ms']:.2f} ms (goal <= {GOAL_P99_MS:.0f} ms: "
                  f"{'met' if ours['p99_ms'] <= GOAL_P99_MS else 'MISSED'})")
    for name, value in timings.items():
        print(f"in process, one row: {name} = {value:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="churn")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per server and batch size")
    parser.add_argument("--rounds", type=int, default=3, help="slices of the duration, servers taking turns")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,64", type=lambda s: [int(b) for b in s.split(",")])
    parser.add_argument("--targets", default="serving,serving-bare,mlflow")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.chdir(REPO)  # relative paths in configs/serving.yaml and the default store are the repo's
    wrk = ensure_wrk()
    version, run_id = champion(args.model, args.alias)
    rows = customer_rows(max(args.batches))
    print(f"{args.model}@{args.alias} = version {version} (run {run_id}); wrk -t{args.threads} -c{args.connections}, "
          f"{args.duration:g} s per server and batch in {args.rounds} turns; {os.cpu_count()} CPUs", flush=True)
    targets = args.targets.split(",")
    results, served_by_mlflow = [], "-"
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        workdir = Path(tmp)
        bodies = {batch: write_bodies(workdir, rows, batch) for batch in args.batches}
        ours = [target for target in ("serving", "serving-bare") if target in targets]
        if ours:
            results += bench_serving(args, wrk, bodies, workdir, ours)
        if "mlflow" in targets:
            mlflow_results, served_by_mlflow = bench_mlflow(args, wrk, bodies, workdir, run_id)
            results += mlflow_results
    timings = in_process(args, rows, run_id)
    report(results, timings, served_by_mlflow)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "in_process": timings, "mlflow_served": served_by_mlflow}, indent=2))


if __name__ == "__main__":
    main()
