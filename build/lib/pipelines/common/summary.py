"""The short report printed when a pipeline finishes: numbers first, then where to look."""

from __future__ import annotations

from pipelines.common import tracking
from pipelines.common.runner import PipelineResult


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def print_summary(project: str, result: PipelineResult) -> None:
    summary = dict(result.summary)
    tables = [summary.pop(key) for key in list(summary) if key.endswith("_table")]  # printed as blocks
    print(f"\n=== {project}: pipeline run {result.parent_run_id} finished in {result.seconds:.1f} s ===")
    for table in tables:
        print(table)
    width = max((len(k) for k in summary), default=0)
    for key, value in summary.items():
        print(f"  {key:<{width}}  {format_value(value)}")
    print(f"\nBrowse it: make ui  (mlflow ui --backend-store-uri {tracking.tracking_uri()}), "
          f"experiment '{project}'.")
