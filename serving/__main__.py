"""`python -m serving`: run the server under uvicorn (what `make serve` does).

    python -m serving [--config configs/serving.yaml] [--bundles dist/bundles] [--host H] [--port P]
                      [--no-prediction-log] [--no-metrics]

Models come from the MLflow registry (each model's alias, resolved at start-up) unless `--bundles` (or
env SERVING_BUNDLES) names a folder of exported bundles: then MLflow is never imported. The two `--no-`
switches exist for the benchmark, which measures what logging and metrics cost.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from pipelines.common.config import ConfigError
from serving.app import create_app
from serving.config import DEFAULT_CONFIG, load_serving_config, with_overrides


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
    logging.basicConfig(level=config.server.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        app = create_app(config)
    except ConfigError as error:  # e.g. an API key too short: refused before anything listens
        raise SystemExit(f"error: {error}") from None
    uvicorn.run(app, host=config.server.host, port=config.server.port,
                log_level=config.server.log_level, access_log=config.server.access_log,
                timeout_graceful_shutdown=config.server.graceful_shutdown_seconds,
                limit_concurrency=config.server.limit_concurrency)


if __name__ == "__main__":
    main()
