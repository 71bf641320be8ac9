"""The churn project: its config schema and its lifecycle stages, in order."""

from pipelines.churn import evaluate, export, optimize, train
from pipelines.churn.config import ChurnConfig
from pipelines.common.runner import Project

PROJECT = Project(
    name="churn",
    config_schema=ChurnConfig,
    default_config="configs/churn.yaml",
    stages={
        "train": train.run,
        "evaluate": evaluate.run,
        "optimize": optimize.run,
        "export": export.run,
    },
)
