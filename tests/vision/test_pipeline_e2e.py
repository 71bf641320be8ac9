"""End to end: the vision pipeline on the real digits (tests/vision/tiny.yaml: a small source, 16x16 input,
a few epochs) against a real MLflow store, then served by a real uvicorn server from the registry."""

from __future__ import annotations

import io

import pytest
from mlflow.tracking import MlflowClient

pytest.importorskip("torchvision")

from modelpkg.package import load_model  # noqa: E402
from pipelines.common.config import load_config  # noqa: E402
from pipelines.common.runner import run_project  # noqa: E402
from pipelines.vision.config import VisionConfig  # noqa: E402
from pipelines.vision.pretrain import SOURCE_MODEL, cached_version, source_config_hash  # noqa: E402
from tests.factories import environment  # noqa: E402
from tests.pipeline_runs import champion_holdout, child_runs, serving_champion, stage_run  # noqa: E402
from tests.paths import REPO  # noqa: E402

TINY_CONFIG = str(REPO / "tests" / "vision" / "tiny.yaml")
ACCURACY_FLOOR = 0.90  # tiny: 16x16 input, a few epochs; the full run (configs/vision.yaml) reaches >= 0.97

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with environment(MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db") as env:
        yield env


@pytest.fixture(scope="module")
def result(store):
    return run_project("vision", TINY_CONFIG)


def test_the_pipeline_registers_a_vision_champion_with_its_preprocessing(result):
    assert result.registered_version == "1"
    contract = load_model("vision", alias="champion").contract
    assert (contract.kind, contract.labels) == ("image_classifier", [str(d) for d in range(10)])
    assert contract.inputs[0].shape == [None, 3, 16, 16]
    assert (contract.preprocessing["height"], contract.preprocessing["mode"]) == (16, "RGB")
    assert contract.metrics["test_accuracy"] >= ACCURACY_FLOOR
    assert (contract.embedding_output, contract.embedding_size) == ("embedding", 8)  # configs default


def test_the_monitoring_reference_holds_the_embedding_components_as_drift_columns(result):
    from monitoring.reference import load_reference, load_watched_model

    model = load_watched_model("vision")
    reference = load_reference(model)
    columns = [f"embedding_{i}" for i in range(1, 9)]
    assert columns == [d.name for d in model.descriptors if d.name.startswith("embedding_")]
    components = reference[columns].to_numpy()
    assert components.std(axis=0).min() > 0.3  # unit variance on the valid split the sample is drawn from


def test_source_pretraining_is_its_own_registered_run_and_is_cached(result):
    config = load_config(TINY_CONFIG, VisionConfig)
    version = cached_version(source_config_hash(config))
    assert version is not None and version.name == SOURCE_MODEL
    train = stage_run(result, "vision", "train")
    assert "source_pretraining" in child_runs(train)
    assert train.data.params["source_cache"] == "miss"
    changed = config.model_copy(update={"seed": config.seed + 1})
    assert cached_version(source_config_hash(changed)) is None  # another config trains anew


def test_the_learning_curve_compares_transfer_scratch_and_both_baselines(result):
    train = stage_run(result, "vision", "train")
    runs = child_runs(train)
    assert {"resnet18_transfer", "curve_transfer_5_per_class_seed0", "curve_scratch_5_per_class_seed0",
            "curve_keras_cnn_5_per_class_seed0"} <= set(runs)
    transfer = runs["resnet18_transfer"]
    history = MlflowClient().get_metric_history(transfer.info.run_id, "valid_accuracy")
    assert len(history) >= 2  # every epoch logged
    artifacts = {a.path for a in MlflowClient().list_artifacts(train.info.run_id, "curve")}
    assert {"curve/curve.json", "curve/curve.png", "curve/points.json"} <= artifacts
    for line in ("transfer", "scratch", "pixel_logreg", "keras_cnn"):
        assert 0 <= train.data.metrics[f"curve_5_{line}"] <= 1


def test_evaluate_logs_mistakes_calibration_grad_cam_and_the_svm_baseline(result):
    run = stage_run(result, "vision", "evaluate")
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "evaluate")}
    assert {"evaluate/confusion_matrix.png", "evaluate/reliability.png", "evaluate/grad_cam.png",
            "evaluate/classification_report.json"} <= artifacts
    assert run.data.metrics["test_svm_rbf_pixels_accuracy"] >= 0.95  # the classical baseline, same split
    assert 0 <= run.data.metrics["test_ece"] <= 1


def test_optimize_checks_logits_parity_and_reports_every_variant(result):
    run = stage_run(result, "vision", "optimize")
    assert run.data.metrics["test_onnx_logits_max_abs_diff"] <= 1e-4
    assert run.data.metrics["test_onnx_embedding_max_abs_diff"] <= 1e-3
    variants = {"torch_fp32", "onnx_fp32", "onnx_int8_dynamic", "onnx_int8_static"}
    assert {f"{v}_latency_ms_b1" for v in variants} <= set(run.data.metrics)
    assert run.data.tags["shipped_variant"] in variants and run.data.tags["variant_decision"]
    assert run.data.metrics["onnx_int8_static_size_mb"] < 0.3 * run.data.metrics["onnx_fp32_size_mb"]
    assert run.data.metrics["onnx_int8_static_test_accuracy"] >= ACCURACY_FLOOR - 0.05


def test_a_live_server_answers_png_uploads_as_the_package_scores_them(result, store, tmp_path):
    """Preprocessing parity end to end: the server (pillow + numpy + onnxruntime, no torch) gives the
    package's answers for the held-out PNGs, sent as multipart files; a broken file gets a 422. The
    embedding reaches the prediction log, where monitoring reads it, and never the client."""
    import httpx

    from modelpkg.runtime import Predictor
    from monitoring.reference import load_watched_model
    from monitoring.window import WindowSpec, read_window

    package, holdout = champion_holdout("vision", 12)
    expected = Predictor(package.files).score_rows(holdout.to_dict(orient="records"))
    with serving_champion("vision", store, tmp_path) as url:
        files = [("image", (f"{i}.png", io.BytesIO(data), "image/png")) for i, data in enumerate(holdout["image"])]
        answer = httpx.post(f"{url}/v1/vision/predict", files=files, timeout=60).json()
        broken = httpx.post(f"{url}/v1/vision/predict", timeout=60,
                            files=[("image", ("x.png", io.BytesIO(b"\x89PNG\r\n\x1a\n broken"), "image/png"))])
    labels = package.contract.labels
    for row, prediction in zip(expected, answer["predictions"]):
        assert prediction["label"] == labels[int(row.argmax())]
        assert abs(prediction["probability"] - float(row.max())) < 1e-5
        assert len(prediction["top_k"]) == 3
        assert "embedding" not in prediction
    assert broken.status_code == 422 and "image" in broken.text
    window = read_window(tmp_path / "predictions.db", load_watched_model("vision"), WindowSpec())
    assert len(window) == len(holdout) and window["embedding_8"].notna().all()
