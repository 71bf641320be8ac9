"""`python -m pipelines.score --model churn --input rows.parquet --output scored.parquet` (`make score`).

Scores with the registered model at `--alias` (champion) or `--version`, from the MLflow store the other
commands use (MLFLOW_TRACKING_URI, else the repo's SQLite file); on the local Ray runtime configs/score.yaml
sizes, or on the cluster RAY_ADDRESS names. Prints rows in, scored and rejected. Exit status 2 when the
input cannot be read at all (missing, unknown format, a model input column absent); a bad row is never
an error, it is a line of the rejects file.
"""

from __future__ import annotations

import argparse
import logging
import sys

import mlflow

from modelpkg.package import load_model
from pipelines.common import tracking
from pipelines.common.config import ConfigError, load_config
from pipelines.score.files import InputError
from pipelines.score.job import ScoreConfig, score_file
from pipelines.score.rows import REJECT_COLUMN, REJECT_PROBLEM

DEFAULT_CONFIG = "configs/score.yaml"
USAGE_ERROR = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.score", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registered model name (churn)")
    parser.add_argument("--input", required=True, help="Parquet or CSV file, or a folder of them")
    parser.add_argument("--output", required=True, help="Parquet file of the scored rows")
    parser.add_argument("--rejects", help="Parquet file of the rejected rows (default: <output>.rejects.parquet)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--alias", default="champion")
    which.add_argument("--version")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    return parser.parse_args(argv)


def use_store() -> None:
    """The store every command talks to, for the registry too."""
    uri = tracking.tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tracking.quiet_libraries()
    use_store()
    try:
        config = load_config(args.config, ScoreConfig)
        package = load_model(args.model, version=args.version) if args.version else load_model(args.model, alias=args.alias)
        summary = score_file(args.input, args.output, package, config, rejects=args.rejects)
    except (ConfigError, InputError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(summary.text())
    if summary.counts.rejected:
        print(f"each rejected row names its problem in columns {REJECT_COLUMN!r} and {REJECT_PROBLEM!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
