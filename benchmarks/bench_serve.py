"""Serving throughput and latency: our FastAPI + onnxruntime server against `mlflow models serve`, and
dynamic micro-batching off against on for the text and image models.

One run, one machine, one load generator (wrk, POSTing the same body from benchmarks/wrk_post.lua).

Churn (`churn@champion` in the MLflow store), batch 1 and batch 64, these servers (`--targets`):

  serving       python -m serving, everything on: validation, prediction log (group commit), metrics
  serving-full  the same with the log's `synchronous: FULL` (a commit survives a power cut, not only a
                crash of the process): its cost, side by side with `serving`
  serving-bare  the same server with the prediction log and metrics switched off
  serving-2w    `serving` with `server.workers: 2` (two uvicorn processes, a log file each, metrics in
                prometheus_client's multiprocess mode): beside `serving`, the 1- and 2-worker rows
  serving-shadow  `serving` with a shadow challenger (serving/shadow.py) scoring every request beside the
                champion: the champion's own version under the shadow alias `champion` (a challenger of the
                same size), so the row shows what shadowing costs (goal: >= 85% of serving's requests/s
                at batch 1)
  mlflow        mlflow models serve --env-manager local, same registered model (its ONNX pyfunc cannot
                take the [batch, 1] inputs, so the native scikit-learn model logged beside it in the
                same run is served, as the issue asks)

Without `churn@champion` in the store the mlflow row is skipped and the other servers serve the tests'
churn model (tests/factories.py: a logistic regression on real Telco rows, like the pipeline's), loudly.

Overload (`--overload-clients`, 256; 0: none): that many keep-alive clients, each POSTing one record
again as soon as it has an answer (a 503's Retry-After ignored: the worst case), for `--overload-seconds`,
against the server as configs/serving.yaml ships it; then the same with clients that wait as Retry-After
says (both for every `--overload-limits` value of `server.max_requests_in_flight`, default the shipped
one); then with the app's admission limit lifted (above the clients: only uvicorn's guard left).
Printed: answers by status and the p50/p99 latency of the 200s. A Python asyncio client
(tests/live_server.py `hammer`) on the same CPUs: wrk cannot split latencies by status.

Goals (issue): at batch 1, serving >= 20x mlflow's requests/s; serving >= 80% of serving-bare's
requests/s; serving's p99 <= 15 ms at concurrency 8.

Micro-batching (`--batching-models text,vision`): per model, `--batching-clients` (16) concurrent clients
each sending one record per request, against two servers of that model started from the same bundle with
every production feature on, one with `batching.enabled: false` and one with configs/serving.yaml's
batching settings (enabled). The registered `<model>@champion` is used when the store holds one; else the
toy model of that kind from tests/factories.py, with a loud note (a toy graph takes microseconds, so its
numbers say little about batching a real network). Goals (issue): batching >= 2x the requests/s of no
batching at 16 clients, p99 <= 50 ms. The CPU's flags are printed with the table.

A benchmark, not a test: it prints, it does not fail. Each server gets `--duration` seconds of load per
batch size, cut into `--rounds` slices taken in turns with its rival, so that the background load of a
shared machine hits both alike.

    python benchmarks/bench_serve.py [--duration 15] [--rounds 3] [--connections 8] [--threads 2]
                                     [--batches 1,64] [--targets serving,serving-full,serving-bare,mlflow]
                                     [--batching-models text,vision] [--batching-clients 16]
                                     [--overload-clients 256] [--overload-seconds 10]
                                     [--overload-limits 16,32,64] [--json PATH]

Only the 1- and 2-worker rows, briefly (about a minute):

    python benchmarks/bench_serve.py --targets serving,serving-2w --batches 1,64 --duration 8 --rounds 2 \
        --batching-models "" --overload-clients 0

Only the log's durability cost and the overload rows, briefly (about a minute):

    python benchmarks/bench_serve.py --targets serving,serving-full --batches 1 --duration 6 --rounds 2 \
        --batching-models "" --overload-seconds 5
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
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
LUA = Path(__file__).with_name("wrk_post.lua")
VENV_BIN = Path(sys.executable).parent
CSV_CANDIDATES = [os.environ.get("CHURN_DATA", ""), str(REPO.parent / "shared/data/telco-churn/Telco-Customer-Churn.csv"),
                  str(REPO / "data/raw/Telco-Customer-Churn.csv")]
START_TIMEOUT_SECONDS = 120
WARMUP_SECONDS = 2
SHADOW_ALIAS = "champion"  # serving-shadow: the champion shadows itself, a challenger of the same size
GOAL_SHADOW = 0.85  # issue 18 §3: shadowing costs at most 15% of requests/s at batch 1
GOAL_VS_MLFLOW, GOAL_OVERHEAD, GOAL_P99_MS = 20.0, 0.8, 15.0
GOAL_BATCHING_SPEEDUP, GOAL_BATCHING_P99_MS = 2.0, 50.0
TOY_OF = {"text": "toy_text", "vision": "toy_image"}  # the tests' toy model of each kind: the fallback


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed on first use."""
    if not shutil.which("wrk"):
        print("wrk not found: installing it with apt-get (Debian package 'wrk')")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk")


def store_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")


def registered(name: str, alias: str) -> tuple[str, str] | None:
    """(version, run id) of name@alias in the MLflow store, or None when the store has none."""
    import mlflow

    uri = store_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
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
    return {"serving": ours, "serving-full": ours, "serving-bare": ours, "serving-2w": ours, "serving-shadow": ours,
            "mlflow": theirs}


def serving_config(workdir: Path, name: str, **sections: dict) -> Path:
    """configs/serving.yaml with some keys changed (`prediction_log={"synchronous": "FULL"}`), as a file."""
    from serving.config import load_serving_config, with_overrides

    path = workdir / f"serving-{name}.yaml"
    path.write_text(yaml.safe_dump(with_overrides(load_serving_config(environ={}), **sections).model_dump(mode="json"),
                                   sort_keys=False))
    return path


def shadow_config(workdir: Path, model: str, source: list[str]) -> Path:
    """configs/serving.yaml with `model` shadowed by its own champion version (bundle mode: the bundle
    linked as <root>/<model>@champion/, where a bundle source looks for a shadow)."""
    from serving.config import load_serving_config

    if source:
        root = Path(source[-1])
        with contextlib.suppress(FileExistsError):
            (root / f"{model}@{SHADOW_ALIAS}").symlink_to(root / model)
    models = [entry | ({"shadow": {"enabled": True, "alias": SHADOW_ALIAS}} if entry["name"] == model else {})
              for entry in load_serving_config(environ={}).model_dump(mode="json")["models"]]
    return serving_config(workdir, "shadow", models=models)


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


def measure(args, wrk: str, urls: dict[str, str], bodies: dict[int, dict[str, Path]], batches: list[int],
            connections: int | None = None) -> list[dict]:
    """Per batch size: warm every target up, then `rounds` slices of duration/rounds seconds each, the
    targets taking turns (A B A B ...), so a change in the machine's background load hits all alike.
    requests/s = all requests / all seconds; p50 and p99 = the median over the slices."""
    connections = connections or args.connections
    results = []
    for batch in batches:
        for target, url in urls.items():
            body = bodies[batch][target]
            check = httpx.post(url, content=body.read_bytes(), headers={"content-type": "application/json"}, timeout=30)
            if check.status_code != 200:
                raise RuntimeError(f"{target}: probe request failed with {check.status_code}: {check.text[:300]}")
            run_wrk(wrk, url, body, WARMUP_SECONDS, args.threads, connections)
        slices: dict[str, list[dict]] = {target: [] for target in urls}
        for _ in range(args.rounds):
            for target, url in urls.items():
                slices[target].append(run_wrk(wrk, url, bodies[batch][target], args.duration / args.rounds,
                                              args.threads, connections))
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


def bench_serving(args, wrk, bodies, workdir: Path, targets: list[str], source: list[str]) -> list[dict]:
    """Every variant of our server up at once and measured in turns (see measure): the ratios between
    them are the numbers that matter, and they must not depend on when each ran. Each has its own log."""
    flags = {"serving": [], "serving-bare": ["--no-prediction-log", "--no-metrics"],
             "serving-full": ["--config", str(serving_config(workdir, "full", prediction_log={"synchronous": "FULL"}))],
             "serving-2w": ["--config", str(serving_config(workdir, "2w", server={"workers": 2}))],
             "serving-shadow": ["--config", str(shadow_config(workdir, args.model, source))]}
    urls = {}
    with contextlib.ExitStack() as stack:
        for target in targets:
            port = free_port()
            env = {**os.environ, "PREDICTION_LOG": str(workdir / f"{target}.db"), "PYTHONPATH": str(REPO)}
            command = [sys.executable, "-m", "serving", "--port", str(port), *source, *flags[target]]
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
        full, two = by.get(("serving-full", batch)), by.get(("serving-2w", batch))
        shadow = by.get(("serving-shadow", batch))
        if ours and shadow:
            ratio = shadow["requests_per_s"] / ours["requests_per_s"]
            goal = f" (goal >= {GOAL_SHADOW:.0%}: {'met' if ratio >= GOAL_SHADOW else 'MISSED'})" if batch == 1 else ""
            print(f"batch {batch}: serving-shadow / serving requests/s = {ratio:.0%}{goal} "
                  f"(p50 {shadow['p50_ms']:.2f} vs {ours['p50_ms']:.2f} ms)")
        if ours and two:
            print(f"batch {batch}: 2 workers / 1 worker requests/s = {two['requests_per_s'] / ours['requests_per_s']:.2f}x "
                  f"(p99 {two['p99_ms']:.2f} vs {ours['p99_ms']:.2f} ms; {os.cpu_count()} CPUs)")
        if ours and full:
            print(f"batch {batch}: synchronous FULL / NORMAL requests/s = {full['requests_per_s'] / ours['requests_per_s']:.0%} "
                  f"(p99 {full['p99_ms']:.2f} vs {ours['p99_ms']:.2f} ms)")
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


# ------------------------------------------------------------------------------------- micro-batching
@dataclass(frozen=True)
class BatchingSubject:
    """One model to measure with batching off and on: what is served, from where, with which request."""

    model: str  # the configured model (text, vision)
    served: str  # the name it is served under: the model's own, or its toy's
    bundles: Path  # the bundle root: <bundles>/<served>/
    entry: dict  # its configs/serving.yaml entry (a toy takes the model's settings under its own name)
    body: Path  # one request of one record (the model's example)
    origin: str  # where the model came from, for the table
    toy: bool


def champion_bundle(config, name: str, alias: str, root: Path) -> str:
    """The registered model, exported as a bundle (loaded and run once on the way)."""
    from serving.bundle import export_bundle

    bundle = export_bundle(config, name, alias, root / name)
    return f"{name}@{alias} version {bundle.version}"


def toy_bundle(name: str, root: Path, workdir: Path) -> str:
    """The tests' toy model of this kind, exported into a throwaway store, then bundled."""
    return factory_bundle(TOY_OF[name], root, workdir)


def factory_bundle(kind: str, root: Path, workdir: Path) -> str:
    """A model of tests/factories.py, exported into a throwaway store, then bundled as <root>/<kind>/."""
    sys.path.insert(0, str(REPO))  # tests/ is not an installed package
    from tests import factories

    with factories.environment(MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'toy-store' / 'mlflow.db'}"):
        released = factories.KINDS[kind].export()
        factories.bundle(kind, released.version, root / kind)
    return f"TOY {kind} (tests/factories.py)"


def batching_subject(args, name: str, workdir: Path) -> BatchingSubject:
    """The registered champion of `name` when the store holds one, else its toy, loudly."""
    from modelpkg.codecs import codec_for
    from modelpkg.package import package_files
    from serving.config import load_serving_config, with_overrides

    config = with_overrides(load_serving_config(), source={"cache_dir": str(workdir / "cache")})
    if name not in {model.name for model in config.models}:
        sys.exit(f"--batching-models: {name!r} is not a model of configs/serving.yaml")
    root = workdir / "bundles"
    if registered(name, args.alias):
        origin, served, toy = champion_bundle(config, name, args.alias, root), name, False
    elif name in TOY_OF:
        origin, served, toy = toy_bundle(name, root, workdir), TOY_OF[name], True
        print(f"\n{'!' * 100}\n!!! NO {name}@{args.alias} IN {store_uri()}: measuring the TOY model {served} from "
              f"tests/factories.py instead.\n!!! Its graph takes microseconds, so batching has little to save: "
              f"these rows show the machinery, not what\n!!! batching does for a real {name} model. Train one "
              f"(make {name}) or point MLFLOW_TRACKING_URI at a store that has it.\n{'!' * 100}\n", flush=True)
    else:
        sys.exit(f"no {name}@{args.alias} in {store_uri()} and no toy model of that kind to fall back on")
    entry = config.model(name).model_dump(mode="json") | {"name": served, "required": True}
    files = package_files(root / served)
    body = workdir / f"{served}-request.json"
    body.write_text(json.dumps([codec_for(files.contract, files.files_dir, example=entry.get("example")).example]))
    return BatchingSubject(name, served, root, entry, body, origin, toy)


def batching_config(subject: BatchingSubject, enabled: bool, path: Path) -> Path:
    """configs/serving.yaml serving only this model, its batching switched on or off (on: its own
    max_wait_ms and max_records)."""
    from serving.config import load_serving_config

    raw = load_serving_config(environ={}).model_dump(mode="json")
    raw["models"] = [subject.entry | {"batching": subject.entry["batching"] | {"enabled": enabled}}]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def batch_sizes(metrics_text: str, model: str) -> float | None:
    """Mean requests per batched graph call, from a server's /metrics."""
    values = {}
    for line in metrics_text.splitlines():
        for suffix in ("sum", "count"):
            prefix = f'serving_batch_requests_{suffix}{{model="{model}"}} '
            if line.startswith(prefix):
                values[suffix] = float(line[len(prefix):])
    return values["sum"] / values["count"] if values.get("count") else None


def bench_batching(args, wrk: str, subject: BatchingSubject, workdir: Path) -> list[dict]:
    """The model's two servers (batching off, on) up at once and measured in turns, as bench_serving does,
    with every production feature on and `--batching-clients` connections each sending one record."""
    urls, metrics_urls = {}, {}
    with contextlib.ExitStack() as stack:
        for enabled in (False, True):
            target = f"{subject.model} batching {'on' if enabled else 'off'}"
            slug = f"{subject.served}-batching-{'on' if enabled else 'off'}"
            config = batching_config(subject, enabled, workdir / f"{slug}.yaml")
            env = {**os.environ, "PYTHONPATH": str(REPO), "PREDICTION_LOG": str(workdir / f"{slug}.db")}
            port = free_port()
            command = [sys.executable, "-m", "serving", "--config", str(config), "--bundles", str(subject.bundles),
                       "--port", str(port)]
            stack.enter_context(server(command, f"http://127.0.0.1:{port}/ready", env, workdir / f"{slug}.log"))
            urls[target] = f"http://127.0.0.1:{port}/v1/{subject.served}/predict"
            metrics_urls[target] = f"http://127.0.0.1:{port}/metrics"
        results = measure(args, wrk, urls, {1: dict.fromkeys(urls, subject.body)}, [1], connections=args.batching_clients)
        for result in results:
            result |= {"model": subject.model, "served": subject.served, "origin": subject.origin, "toy": subject.toy,
                       "batching": result["target"].endswith(" on"), "clients": args.batching_clients,
                       "requests_per_call": batch_sizes(httpx.get(metrics_urls[result["target"]]).text, subject.served)}
    return results


def report_batching(results: list[dict]) -> None:
    from pipelines.common.quantize import cpu_note  # the benchmark may import pipelines; the server never does

    print(f"\nMicro-batching, {results[0]['clients']} concurrent clients of one record each; {os.cpu_count()} CPUs; {cpu_note()}")
    print("\n| model | served | batching | requests/s | p50 ms | p99 ms | errors | requests per graph call |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in results:
        per_call = f"{r['requests_per_call']:.1f}" if r["requests_per_call"] else "1 (no batcher)"
        print(f"| {r['model']} | {r['origin']} | {'on' if r['batching'] else 'off'} | {r['requests_per_s']:.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {per_call} |")
    for model in dict.fromkeys(r["model"] for r in results):
        off, on = (next(r for r in results if r["model"] == model and r["batching"] is state) for state in (False, True))
        speedup = on["requests_per_s"] / off["requests_per_s"]
        toy = " (TOY model: not a claim about a real one)" if on["toy"] else ""
        print(f"{model}: batching on / off requests/s = {speedup:.2f}x (goal >= {GOAL_BATCHING_SPEEDUP:.0f}x: "
              f"{'met' if speedup >= GOAL_BATCHING_SPEEDUP else 'MISSED'}); p99 with batching {on['p99_ms']:.1f} ms "
              f"(goal <= {GOAL_BATCHING_P99_MS:.0f} ms: {'met' if on['p99_ms'] <= GOAL_BATCHING_P99_MS else 'MISSED'}){toy}")


# -------------------------------------------------------------------------------------------- overload
def summarize_overload(label: str, answers: list, seconds: float) -> dict:
    """Answers (tests/live_server.py's Answer) by status, and the latency of the 200s (what a client that
    got through waited)."""

    def percentile(values: list[float], share: float) -> float | None:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else None

    ok = [a.seconds for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 503]
    return {"server": label, "answers": len(answers), "ok": len(ok), "refused": len(refused),
            "other": sum(1 for a in answers if a.status not in (200, 503)),
            "refused_with_retry_after": sum(1 for a in refused if a.retry_after), "ok_per_s": len(ok) / seconds,
            "ok_p50_ms": percentile(ok, 0.5), "ok_p99_ms": percentile(ok, 0.99),
            "refused_p99_ms": percentile([a.seconds for a in refused], 0.99)}


def bench_overload(args, body: Path, workdir: Path, source: list[str]) -> list[dict]:
    """The server as shipped, then with the app's admission limit lifted, each under `--overload-clients`
    clients for `--overload-seconds` (after a short warm-up)."""
    sys.path.insert(0, str(REPO))
    from serving.config import load_serving_config
    from tests.live_server import hammer

    shipped = load_serving_config(environ={}).server
    variants = {}  # label: (server keys changed, clients honour Retry-After)
    for limit in args.overload_limits or [shipped.max_requests_in_flight]:
        keys = {"max_requests_in_flight": limit}
        variants[f"serving (max_requests_in_flight {limit})"] = (keys, False)
        variants[f"serving (max_requests_in_flight {limit}), clients honour Retry-After"] = (keys, True)
    variants["serving, no admission limit"] = ({"max_requests_in_flight": shipped.limit_concurrency - 1}, False)
    results = []
    for index, (label, (server_keys, polite)) in enumerate(variants.items()):
        slug = f"overload-{index}"
        config = serving_config(workdir, slug, server=server_keys)
        env = {**os.environ, "PREDICTION_LOG": str(workdir / f"{slug}.db"), "PYTHONPATH": str(REPO)}
        port = free_port()
        command = [sys.executable, "-m", "serving", "--config", str(config), "--port", str(port), *source]
        with server(command, f"http://127.0.0.1:{port}/ready", env, workdir / f"{slug}.log"):
            path = f"/v1/{args.model}/predict"
            hammer(port, path, body.read_bytes(), clients=args.overload_clients, seconds=WARMUP_SECONDS)
            answers = hammer(port, path, body.read_bytes(), clients=args.overload_clients, seconds=args.overload_seconds,
                             polite=polite)
        results.append(summarize_overload(label, answers, args.overload_seconds) | {"clients": args.overload_clients})
        r = results[-1]
        print(f"  {label}: {r['ok']} x 200 ({r['ok_per_s']:.0f}/s), {r['refused']} x 503, {r['other']} other; "
              f"200s p50 {r['ok_p50_ms'] or 0:.1f} ms, p99 {r['ok_p99_ms'] or 0:.1f} ms", flush=True)
    return results


def report_overload(results: list[dict]) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(f"\nOverload: {results[0]['clients']} keep-alive clients, one record a request, each asking again at once "
          f"(unless it honours Retry-After); {os.cpu_count()} CPUs shared with the client")
    print("\n| server | 200 | 503 (with Retry-After) | other | 200s/s | p50 ms of 200s | p99 ms of 200s | p99 ms of 503s |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {r['ok']} | {r['refused']} ({r['refused_with_retry_after']}) | {r['other']} | "
              f"{r['ok_per_s']:.0f} | {ms(r['ok_p50_ms'])} | {ms(r['ok_p99_ms'])} | {ms(r['refused_p99_ms'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="churn")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per server and batch size")
    parser.add_argument("--rounds", type=int, default=3, help="slices of the duration, servers taking turns")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,64", type=lambda s: [int(b) for b in s.split(",")])
    parser.add_argument("--targets", default="serving,serving-full,serving-bare,serving-2w,mlflow",
                        help="churn rows ('' for none)")
    parser.add_argument("--batching-models", default="text,vision", help="micro-batching rows ('' for none)")
    parser.add_argument("--batching-clients", type=int, default=16, help="concurrent clients of the batching rows")
    parser.add_argument("--overload-clients", type=int, default=256, help="clients of the overload rows (0: none)")
    parser.add_argument("--overload-seconds", type=float, default=10.0, help="seconds of overload per server")
    parser.add_argument("--overload-limits", type=lambda s: [int(n) for n in s.split(",")], default=None,
                        help="max_requests_in_flight values to compare (default: configs/serving.yaml's)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.chdir(REPO)  # relative paths in configs/serving.yaml and the default store are the repo's
    wrk = ensure_wrk()
    targets = [target for target in args.targets.split(",") if target]
    batching_models = [name for name in args.batching_models.split(",") if name]
    found = registered(args.model, args.alias) if targets or args.overload_clients else None
    results, batching_results, overload_results, timings, served_by_mlflow = [], [], [], {}, "-"
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        workdir = Path(tmp)
        source: list[str] = []  # registry mode: the server resolves churn@champion itself
        if found is None and (targets or args.overload_clients):
            if args.model != "churn":
                sys.exit(f"no {args.model}@{args.alias} in the MLflow store {store_uri()}")
            origin = factory_bundle("churn", workdir / "bundles", workdir)
            source = ["--bundles", str(workdir / "bundles")]
            targets = [target for target in targets if target != "mlflow"]
            print(f"!!! no {args.model}@{args.alias} in the MLflow store {store_uri()}: the mlflow row is skipped and "
                  f"the servers serve {origin} (a logistic regression on Telco rows, like `make churn`'s)", flush=True)
        rows = customer_rows(max(args.batches)) if targets or args.overload_clients else []
        bodies = {batch: write_bodies(workdir, rows, batch) for batch in args.batches}
        if targets:
            print(f"{args.model}: {'version %s (run %s)' % found if found else 'TOY'}; wrk -t{args.threads} "
                  f"-c{args.connections}, {args.duration:g} s per server and batch in {args.rounds} turns; "
                  f"{os.cpu_count()} CPUs", flush=True)
            ours = [target for target in ("serving", "serving-full", "serving-bare", "serving-2w", "serving-shadow")
                    if target in targets]
            if ours:
                results += bench_serving(args, wrk, bodies, workdir, ours, source)
            if "mlflow" in targets:
                version, run_id = found
                mlflow_results, served_by_mlflow = bench_mlflow(args, wrk, bodies, workdir, run_id)
                results += mlflow_results
        for name in batching_models:
            subject = batching_subject(args, name, workdir)
            print(f"{name}: {subject.origin}; wrk -t{args.threads} -c{args.batching_clients}, batch 1, batching off vs on",
                  flush=True)
            batching_results += bench_batching(args, wrk, subject, workdir)
        if args.overload_clients:
            print(f"overload: {args.overload_clients} clients, {args.overload_seconds:g} s per server", flush=True)
            overload_results = bench_overload(args, write_bodies(workdir, rows, 1)["serving"], workdir, source)
    if targets:
        timings = in_process(args, rows, found[1]) if found else {}
        report(results, timings, served_by_mlflow)
    if batching_results:
        report_batching(batching_results)
    if overload_results:
        report_overload(overload_results)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "in_process": timings, "mlflow_served": served_by_mlflow,
                                               "batching": batching_results, "overload": overload_results}, indent=2))


if __name__ == "__main__":
    main()
