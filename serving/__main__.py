"""`python -m serving`: run the server under uvicorn (what `make serve` does).

    python -m serving [--config configs/serving.yaml] [--bundles dist/bundles] [--host H] [--port P]
                      [--no-prediction-log] [--no-metrics]

Models come from the MLflow registry (each model's alias, resolved at start-up) unless `--bundles` (or
env SERVING_BUNDLES) names a folder of exported bundles: then MLflow is never imported. The two `--no-`
switches exist for the benchmark, which measures what logging and metrics cost.

With `server.workers: N` > 1 this process is uvicorn's supervisor: it starts N worker processes on one
socket (each builds the app through `worker_app`), starts a new one when one dies, and shares a run folder
with them (serving/workers.py) that it removes at exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from pipelines.common.config import ConfigError
from serving.app import create_app
from serving.auth import server_keys
from serving.config import DEFAULT_CONFIG, ServingConfig, load_serving_config, with_overrides
from serving.workers import RUN_DIR_ENV, WORKER_CONFIG_ENV, claim_slot, forget_dead_processes, prepare_run

WORKER_APP = "serving.__main__:worker_app"  # the factory each worker process imports
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--bundles", help="serve <BUNDLES>/<model>/ bundles instead of the MLflow registry")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--no-prediction-log", action="store_true", help="do not log predictions (benchmark only)")
    parser.add_argument("--no-metrics", action="store_true", help="no Prometheus metrics (benchmark only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = load_serving_config(args.config)
    server = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    sections: dict[str, dict] = {"server": server}
    if args.bundles:
        sections["source"] = {"kind": "bundles", "bundle_root": args.bundles}
    if args.no_prediction_log:
        sections["prediction_log"] = {"enabled": False}
    if args.no_metrics:
        sections["metrics"] = {"enabled": False}
    config = with_overrides(config, **sections)
    logging.basicConfig(level=config.server.log_level.upper(), format=LOG_FORMAT)
    if config.server.workers > 1:
        serve_workers(config)
        return
    try:
        app = create_app(config)
    except ConfigError as error:  # e.g. an API key too short: refused before anything listens
        raise SystemExit(f"error: {error}") from None
    uvicorn.run(app, **uvicorn_settings(config))


def uvicorn_settings(config: ServingConfig) -> dict:
    server = config.server
    return dict(host=server.host, port=server.port, log_level=server.log_level, access_log=server.access_log,
                timeout_graceful_shutdown=server.graceful_shutdown_seconds, limit_concurrency=server.limit_concurrency)


def serve_workers(config: ServingConfig) -> None:
    """uvicorn's supervisor over `server.workers` processes. The workers get the config (overrides
    included) and the run folder through the environment, which must hold prometheus_client's folder
    before they import it."""
    try:
        server_keys(config)  # e.g. an API key too short: refused here, not once per worker
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    run_dir = Path(tempfile.mkdtemp(prefix="serving-run-"))
    os.environ.update(prepare_run(run_dir) | {WORKER_CONFIG_ENV: config.model_dump_json()})
    try:
        uvicorn.run(WORKER_APP, factory=True, workers=config.server.workers, **uvicorn_settings(config))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls it in each): the supervisor's config, a free slot."""
    config = ServingConfig.model_validate_json(os.environ[WORKER_CONFIG_ENV])
    logging.basicConfig(level=config.server.log_level.upper(), format=LOG_FORMAT)
    worker = claim_slot(Path(os.environ[RUN_DIR_ENV]), config.server.workers)
    if config.metrics.enabled:
        forget_dead_processes()
    return create_app(config, worker=worker)


if __name__ == "__main__":
    main()
