"""Command line: `python -m pipelines <project> [--config PATH] [--stages train,evaluate,...]`."""

from __future__ import annotations

import argparse
import logging
import sys

from pipelines.common import tracking
from pipelines.common.config import ConfigError
from pipelines.common.runner import PROJECT_MODULES, load_project, run_project
from pipelines.common.summary import print_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="Run a project's lifecycle (train -> evaluate -> optimize -> export), tracked in MLflow.",
    )
    parser.add_argument("project", choices=sorted(PROJECT_MODULES), help="which project to run")
    parser.add_argument("--config", help="YAML config (default: configs/<project>.yaml)")
    parser.add_argument(
        "--stages",
        help="comma-separated stages to run, in lifecycle order (default: all). A stage run alone "
        "takes earlier stages' outputs from the latest finished run, or from --from-run.",
    )
    parser.add_argument("--from-run", help="pipeline (parent) run id whose stage outputs to reuse")
    parser.add_argument("--alias", default="champion", choices=["champion", "challenger"],
                        help="alias the export stage aims for (default: champion)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tracking.configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
    try:
        load_project(args.project)
        result = run_project(args.project, args.config, stages=stages, alias=args.alias, from_run=args.from_run)
    except (ConfigError, LookupError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_summary(args.project, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
