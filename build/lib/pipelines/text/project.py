"""The text project: a LoRA fine-tuned MiniLM sentiment / intent classifier, its config and its stages."""

from pipelines.common.runner import Project
from pipelines.text import evaluate, export, optimize, train
from pipelines.text.config import TextConfig

PROJECT = Project(
    name="text",
    config_schema=TextConfig,
    default_config="configs/text.yaml",
    stages={
        "train": train.run,
        "evaluate": evaluate.run,
        "optimize": optimize.run,
        "export": export.run,
    },
)
