"""The vision project: ResNet-18 transfer learning on handwritten digits, its config and its stages."""

from pipelines.common.runner import Project
from pipelines.vision import evaluate, export, optimize, train
from pipelines.vision.config import VisionConfig

PROJECT = Project(
    name="vision",
    config_schema=VisionConfig,
    default_config="configs/vision.yaml",
    stages={
        "train": train.run,
        "evaluate": evaluate.run,
        "optimize": optimize.run,
        "export": export.run,
    },
)
