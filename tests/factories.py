"""One factory for every model the tests serve, monitor or retrain: each built by its project's own export.

- `export_churn`: a small logistic regression on real Telco rows, released by churn's export
  (`pipelines.churn.export.release_pipeline`: ONNX conversion, contract fields, then the common release).
- `export_toy_image`: a 3-class image classifier (red / green / blue: the dominant colour), and
  `export_toy_text`: a binary sentiment classifier over a word-level tokenizer. Both are small ONNX graphs
  with a NumPy twin as their "native" model, released through pipelines.common.release exactly as vision
  and text will be. They prove that serving and monitoring work for every kind before those projects exist.

Every factory registers a new version in the current MLflow store (a test's temporary one) and returns
what the release returned; `bundle` writes a registered version out as a serving bundle.
"""

from __future__ import annotations

import io
import string
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd

from modelpkg.contract import LABEL, InputSpec
from pipelines.common import registry, tracking
from pipelines.common.config import DecisionConfig, ReleaseConfig
from pipelines.common.environment import environment_variables
from pipelines.common.release import Candidate, Released, release
from pipelines.common.runner import StageContext
from tests.paths import TELCO_CSV

PROMOTION = DecisionConfig(bootstrap_samples=200)

TOY_IMAGE, TOY_TEXT = "toy_image", "toy_text"
COLOURS = ("red", "green", "blue")
IMAGE_SIZE = 16
POSITIVE_WORDS = ("good", "great", "love", "excellent", "happy", "perfect", "nice", "recommend")
NEGATIVE_WORDS = ("bad", "awful", "hate", "terrible", "broken", "refund", "poor", "worst")
NEUTRAL_WORDS = ("the", "phone", "service", "it", "was", "my", "order", "and", "a", "day", "staff", "food")


# --------------------------------------------------------------------------------------- export context
@contextmanager
def export_context(project: str, *, alias: str = registry.CHAMPION, seed: int = 0, config=None,
                   data_sha256: str = "test-fixture") -> Iterator[StageContext]:
    """A pipeline run with a finished `train` stage (carrying the data identity) and an open `export`
    stage, as the runner leaves them when export starts."""
    tracking.configure_tracking(project)
    with mlflow.start_run(run_name=f"{project}-fixture", tags={"project": project, "kind": "pipeline"}) as parent:
        with tracking.stage_run(project, "train") as train:
            tracking.log_data_identity(data_sha256, "test-fixture", None, 0)
        with tracking.stage_run(project, "export") as export:
            ctx = StageContext(project, config or SimpleNamespace(seed=seed), parent.info.run_id, alias)
            ctx.stage_runs.update(train=train.info.run_id, export=export.info.run_id)
            yield ctx


@contextmanager
def environment(**values: str) -> Iterator[dict[str, str]]:
    """Environment variables (what the CLI and a server process read) set for the duration, then restored,
    and the MLflow URIs set meanwhile forgotten: a module of end-to-end tests gets its own store."""
    with environment_variables(**values) as set_values:
        try:
            yield set_values
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


def bundle(name: str, version: str, out: Path) -> Path:
    """A registered version written out as the flat folder the server reads in bundle mode (no
    bundle.json: the server then reports version "unknown", as for a hand-made bundle)."""
    from serving.sources import download_bundle

    return download_bundle(name, version, out).directory


# ---------------------------------------------------------------------------------------------- churn
@lru_cache(maxsize=1)
def _telco() -> pd.DataFrame:
    from pipelines.churn.data import read_raw_csv, validate_customers
    from pipelines.churn.synthetic import generate_customers

    raw = read_raw_csv(TELCO_CSV) if TELCO_CSV.is_file() else generate_customers(7043, seed=0)
    frame, _notes = validate_customers(raw)
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def telco_customers() -> pd.DataFrame:
    """The real Telco customers (validated, shuffled once), or synthetic ones where the CSV is absent.
    A copy: callers may change it."""
    return _telco().copy()


def churn_config(reference_rows: int = 2000):
    from pipelines.churn.config import ChurnConfig

    return ChurnConfig.model_validate({"seed": 0, "export": {
        "reference_rows": reference_rows, "promotion": PROMOTION.model_dump()}})


def fit_churn_pipeline(train: pd.DataFrame, C: float = 0.1):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from pipelines.churn.features import features, linear_preprocessor, target

    pipeline = Pipeline([("features", linear_preprocessor(0)), ("model", LogisticRegression(C=C, max_iter=500))])
    return pipeline.fit(features(train), target(train))


def export_churn(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, *, alias: str = registry.CHAMPION,
                 C: float = 0.1, threshold: float = 0.5, reference_rows: int = 2000) -> Released:
    """Fit a logistic regression on `train` and release it through churn's own export."""
    from pipelines.churn.export import release_pipeline

    native = fit_churn_pipeline(train, C)
    with export_context("churn", alias=alias, config=churn_config(reference_rows)) as ctx:
        return release_pipeline(ctx, native, {"model_type": "logistic_regression", "threshold": threshold},
                                valid, test, train=train)


# ---------------------------------------------------------------------------------------------- image
def image_preprocessing() -> dict:
    return {"height": IMAGE_SIZE, "width": IMAGE_SIZE, "mode": "RGB", "mean": [0.5] * 3, "std": [0.25] * 3}


def toy_images(n: int, seed: int, *, brightness: float = 0.0) -> pd.DataFrame:
    """n PNGs: a dominant colour channel over noise; the label is that colour. `brightness` shifts every
    pixel (a drifted camera)."""
    from modelpkg.codecs.image import encode_png

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(COLOURS), n)
    rows = []
    for label in labels:
        pixels = rng.uniform(0, 110, (IMAGE_SIZE, IMAGE_SIZE, 3))
        pixels[..., label] += rng.uniform(60, 140)
        pixels = np.clip(pixels + brightness * 255, 0, 255).astype(np.uint8)
        rows.append({"image": encode_png(pixels), LABEL: COLOURS[label]})
    return pd.DataFrame(rows)


def toy_image_graph(sharpness: float = 4.0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """image [N, 3, H, W] -> mean colour -> linear -> softmax. Returns the graph and its weights; a lower
    `sharpness` makes a less confident (worse calibrated) model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = (np.eye(3) * sharpness).astype(np.float32)
    bias = np.zeros(3, np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["colour"]),
             helper.make_node("Gemm", ["colour", "weights", "bias"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "toy_image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])],
        initializer=[numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString(), weights, bias


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def toy_image_native(rows: pd.DataFrame, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The graph's NumPy twin, on pixels prepared by the codec's own preprocessing function."""
    from PIL import Image

    from modelpkg.codecs.image import ImagePreprocessing, normalise

    settings = ImagePreprocessing.model_validate(image_preprocessing())
    pixels = np.stack([normalise(Image.open(io.BytesIO(data)), settings) for data in rows["image"]])
    return softmax(pixels.mean(axis=(2, 3)) @ weights + bias)


def export_toy_image(*, alias: str = registry.CHAMPION, rows: int = 240, seed: int = 0,
                     sharpness: float = 4.0, promotion: DecisionConfig = PROMOTION) -> Released:
    graph, weights, bias = toy_image_graph(sharpness)
    valid, test = toy_images(rows, seed), toy_images(rows, seed + 1)
    fields = dict(kind="image_classifier", model_type="mean_colour_softmax",
                  inputs=[InputSpec(name="image", dtype="float32", shape=[None, 3, IMAGE_SIZE, IMAGE_SIZE])],
                  probability_output="probabilities", labels=list(COLOURS), preprocessing=image_preprocessing())
    with export_context(TOY_IMAGE, alias=alias, seed=seed) as ctx:
        return release(ctx, Candidate(graph, fields, toy_image_native(test, weights, bias), test, valid),
                       ReleaseConfig(parity_atol=1e-5, promotion=promotion, reference_rows=rows))


# ----------------------------------------------------------------------------------------------- text
def toy_vocabulary() -> list[str]:
    return ["[PAD]", "[UNK]", *POSITIVE_WORDS, *NEGATIVE_WORDS, *NEUTRAL_WORDS]


def save_toy_tokenizer(path: Path) -> Path:
    """A word-level tokenizer (lower-cased, split on whitespace and punctuation), as tokenizer.json."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    tokenizer = Tokenizer(WordLevel({word: i for i, word in enumerate(toy_vocabulary())}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


def toy_texts(n: int, seed: int, *, shout: bool = False, unknown_words: int = 0) -> pd.DataFrame:
    """Short reviews: more positive than negative words -> positive. `shout` writes them in capitals,
    `unknown_words` adds words the vocabulary lacks (both: drift a reader can see)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        positive = bool(rng.integers(0, 2))
        major, minor = (POSITIVE_WORDS, NEGATIVE_WORDS) if positive else (NEGATIVE_WORDS, POSITIVE_WORDS)
        words = list(rng.choice(major, rng.integers(2, 4))) + list(rng.choice(minor, rng.integers(0, 2)))
        words += list(rng.choice(NEUTRAL_WORDS, rng.integers(2, 7)))
        words += ["".join(rng.choice(list(string.ascii_lowercase), 7)) for _ in range(unknown_words)]
        text = " ".join(rng.permutation(words)) + rng.choice([".", "!", ""])
        rows.append({"text": text.upper() if shout else text.capitalize(), LABEL: "positive" if positive else "negative"})
    return pd.DataFrame(rows)


def toy_text_embeddings() -> np.ndarray:
    vocabulary = toy_vocabulary()
    embeddings = np.zeros((len(vocabulary), 2), np.float32)
    for i, word in enumerate(vocabulary):
        embeddings[i] = [0, 3] if word in POSITIVE_WORDS else [3, 0] if word in NEGATIVE_WORDS else [0, 0]
    return embeddings


def toy_text_graph(embeddings: np.ndarray) -> bytes:
    """input_ids, attention_mask [N, L] -> mean of the unmasked word vectors -> softmax over 2 classes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Gather", ["embeddings", "input_ids"], ["vectors"]),
             helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"]),
             helper.make_node("Mul", ["vectors", "mask3"], ["masked"]),
             helper.make_node("ReduceSum", ["masked", "token_axis"], ["summed"], keepdims=0),
             helper.make_node("ReduceSum", ["mask", "token_axis"], ["count"], keepdims=1),
             helper.make_node("Div", ["summed", "count"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "toy_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, None]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [None, None])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[numpy_helper.from_array(embeddings, "embeddings"),
                     numpy_helper.from_array(np.array([2], np.int64), "last_axis"),
                     numpy_helper.from_array(np.array([1], np.int64), "token_axis")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def toy_text_native(rows: pd.DataFrame, tokenizer_path: Path, embeddings: np.ndarray, max_length: int) -> np.ndarray:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(max_length)
    vectors = [embeddings[tokenizer.encode(text).ids].mean(axis=0) for text in rows["text"]]
    return softmax(np.stack(vectors))


def export_toy_text(*, alias: str = registry.CHAMPION, rows: int = 240, seed: int = 0, max_length: int = 16) -> Released:
    embeddings = toy_text_embeddings()
    valid, test = toy_texts(rows, seed), toy_texts(rows, seed + 1)
    with tracking.temporary_dir() as tmp:
        tokenizer = save_toy_tokenizer(tmp / "tokenizer.json")
        fields = dict(kind="text_classifier", model_type="mean_word_vector",
                      inputs=[InputSpec(name="input_ids", dtype="int64", shape=[None, None]),
                              InputSpec(name="attention_mask", dtype="int64", shape=[None, None])],
                      probability_output="probabilities", labels=["negative", "positive"],
                      preprocessing={"tokenizer": "tokenizer.json", "max_length": max_length, "logged_chars": 200},
                      assets=["tokenizer.json"])
        native = toy_text_native(test, tokenizer, embeddings, max_length)
        with export_context(TOY_TEXT, alias=alias, seed=seed) as ctx:
            return release(ctx, Candidate(toy_text_graph(embeddings), fields, native, test, valid,
                                          assets={"tokenizer.json": tokenizer}),
                           ReleaseConfig(parity_atol=1e-5, promotion=PROMOTION, reference_rows=rows))


@dataclass(frozen=True)
class Kind:
    """A model of each kind for tests that must hold for all three."""

    name: str
    export: object  # (alias=...) -> Released
    holdout: object  # (n, seed) -> stored rows with labels


def churn_holdout(n: int, seed: int) -> pd.DataFrame:
    from pipelines.churn.export import labelled_rows

    return labelled_rows(telco_customers().sample(n=n, random_state=seed))


def export_small_churn(*, alias: str = registry.CHAMPION) -> Released:
    customers = telco_customers()
    return export_churn(customers.iloc[:400], customers.iloc[400:900], customers.iloc[900:1400], alias=alias)


KINDS = {
    "churn": Kind("churn", export_small_churn, churn_holdout),
    TOY_IMAGE: Kind(TOY_IMAGE, export_toy_image, lambda n, seed: toy_images(n, seed)),
    TOY_TEXT: Kind(TOY_TEXT, export_toy_text, lambda n, seed: toy_texts(n, seed)),
}
