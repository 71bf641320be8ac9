"""Typed vision config: every number the vision pipeline uses, validated from configs/vision.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pipelines.common.config import Config, DecisionConfig, ReleaseConfig
from pipelines.common.optimize import OptimizeConfig as CommonOptimizeConfig
from pipelines.common.torch_train import LoopConfig
from pipelines.vision.keras_cnn import KerasCnnConfig
from pipelines.vision.model import WEIGHT_CHOICES
from pipelines.vision.source import SourceConfig


class DataConfig(Config):
    spec: str = "digits"  # "digits" (sklearn's handwritten digits) or "imagefolder:PATH"; env VISION_DATA overrides
    min_per_class: int = Field(5, ge=1)

    @field_validator("spec")
    @classmethod
    def known_spec(cls, value: str) -> str:
        if value != "digits" and not value.startswith("imagefolder:"):
            raise ValueError(f"data.spec must be 'digits' or 'imagefolder:PATH', got {value!r}")
        return value


class SplitConfig(Config):
    valid_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int | None = None  # None: the run's seed; make bench-vision varies it alone (the source stays cached)


class ModelConfig(Config):
    input_size: int = Field(32, ge=16)  # images are resized to input_size x input_size (as in serving)
    weights: str = "source"  # imagenet | source | none | a path to a ResNet-18 checkpoint
    max_pixels: int = Field(25_000_000, gt=0)  # serving rejects larger images before decoding them

    @field_validator("weights")
    @classmethod
    def known_weights(cls, value: str) -> str:
        if value not in WEIGHT_CHOICES and not (value.endswith((".pt", ".pth", ".bin")) or "/" in value):
            raise ValueError(f"model.weights must be one of {WEIGHT_CHOICES} or a checkpoint path, got {value!r}")
        return value


class AugmentConfig(Config):
    degrees: float = Field(10.0, ge=0)
    translate: float = Field(0.08, ge=0, lt=0.5)  # share of the image
    scale: tuple[float, float] = (0.9, 1.1)


class SourceTrainConfig(LoopConfig):
    """Pretraining on the rendered characters (weights: source)."""

    render: SourceConfig = SourceConfig()
    valid_fraction: float = Field(0.1, gt=0, lt=0.5)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-3, gt=0)  # one-cycle peak
    weight_decay: float = Field(1e-4, ge=0)
    min_accuracy: float = Field(0.95, ge=0, le=1)  # on its own held-out split; below it the run says so loudly
    monitor: str = "valid_accuracy"


class TrainConfig(LoopConfig):
    """Fine-tuning on the target: warm-up with the backbone frozen, then everything with discriminative rates."""

    warmup_epochs: int = Field(2, ge=0)
    head_learning_rate: float = Field(3e-3, gt=0)  # warm-up: the new head alone
    learning_rate: float = Field(1e-3, gt=0)  # after unfreezing: the head's rate ...
    layer_decay: float = Field(0.5, gt=0, le=1)  # ... each earlier layer group this times the next one's
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    monitor: str = "valid_accuracy"
    augment: AugmentConfig = AugmentConfig()


class CurveConfig(Config):
    """The learning curve: transfer vs scratch vs pixel logistic regression at a few labels per class."""

    labels_per_class: list[int | None] = [5, 10, 20, None]  # None: every training image
    steps: int = Field(60, ge=1)  # optimizer steps per fit, the same for transfer and scratch (same budget)
    seeds: list[int] = [42]
    pixel_C: float = Field(1.0, gt=0)
    parallel: bool = True  # the lines without source weights in a second process (pipelines/vision/curve.py)


class EvaluateConfig(Config):
    calibration_bins: int = Field(10, ge=2)
    misclassified: int = Field(24, ge=0)  # images in the grid of mistakes
    gradcam_examples: int = Field(8, ge=0)
    gradcam_layer: str = "layer2"  # at 32x32 input layer4 is 1x1 and layer3 2x2: layer2 (4x4) still has a map
    svm_C: float = Field(10.0, gt=0)  # the classical baseline: RBF SVM on raw pixels
    svm_gamma: float | Literal["scale"] = "scale"


class OptimizeConfig(CommonOptimizeConfig):
    quantization: list[Literal["dynamic", "static"]] = ["static", "dynamic"]  # static QDQ is what convolutions gain from
    quality: Literal["accuracy", "macro_f1"] = "accuracy"
    max_quality_drop: float = Field(0.005, ge=0)  # an int8 variant ships only within half an accuracy point
    calibration_rows: int = Field(256, ge=10)  # real validation images, never random tensors


class ExportConfig(ReleaseConfig):
    promotion: DecisionConfig = DecisionConfig(metric="macro_f1")


class VisionConfig(Config):
    seed: int = 42
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    source: SourceTrainConfig = SourceTrainConfig()
    train: TrainConfig = TrainConfig()
    curve: CurveConfig = CurveConfig()
    keras: KerasCnnConfig = KerasCnnConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    optimize: OptimizeConfig = OptimizeConfig()
    export: ExportConfig = ExportConfig()
