"""Export stage: the shipped pipeline as one ONNX graph, proven equal to the native model, registered.

Steps: convert (raw columns in, probabilities out) -> parity on the whole test split (fails the
pipeline when broken) -> write the model contract -> log the monitoring reference -> log the ONNX model
(contract inside) and the native model beside it -> register a `churn` version -> move the alias.

A new version becomes `champion` only when it beats the current champion on this run's test split;
with alias "challenger" (retraining) it becomes `challenger` and monitoring decides.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pipelines.churn import schema
from pipelines.churn.features import features, target
from pipelines.churn.onnx_convert import PROBABILITY_OUTPUT, input_specs, onnx_feeds, to_onnx
from pipelines.churn.optimize import load_candidate
from pipelines.churn.train import load_split, log_sklearn_model
from pipelines.common import registry, tracking
from pipelines.common.contract import REFERENCE_ARTIFACT, ModelContract
from pipelines.common.onnx_parity import check_parity, open_session
from pipelines.common.runner import StageContext

log = logging.getLogger(__name__)
HOLDOUT_ARTIFACT = "reference/holdout.parquet"


def onnx_probabilities(session, frame: pd.DataFrame) -> np.ndarray:
    return session.run([PROBABILITY_OUTPUT], onnx_feeds(frame))[0]


def build_contract(ctx: StageContext, candidate: dict, metrics: dict[str, float]) -> ModelContract:
    train_run = mlflow.get_run(ctx.run_id_of("train"))
    return ModelContract(
        name=ctx.project, kind="tabular_classifier", model_type=candidate["model_type"],
        inputs=input_specs(), probability_output=PROBABILITY_OUTPUT,
        labels=list(schema.LABEL_VALUES), positive_label=schema.LABEL_VALUES[1],
        threshold=candidate["threshold"], run_id=mlflow.active_run().info.run_id,
        data_sha256=train_run.data.tags.get("data_sha256", "unknown"), metrics=metrics,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def labelled_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[list(schema.FEATURES)].copy()
    rows["label"] = [schema.LABEL_VALUES[v] for v in target(frame)]
    return rows


def log_reference(session, valid: pd.DataFrame, test: pd.DataFrame, threshold: float, max_rows: int, seed: int) -> None:
    """What monitoring compares production with: held-out rows and this very model's predictions on them."""
    sample = valid.sample(n=min(max_rows, len(valid)), random_state=seed).reset_index(drop=True)
    reference = labelled_rows(sample)
    reference["probability"] = onnx_probabilities(session, sample)[:, 1]
    reference["predicted_label"] = np.where(reference["probability"] >= threshold, *schema.LABEL_VALUES[::-1])
    tracking.log_frame(reference, REFERENCE_ARTIFACT)
    tracking.log_frame(labelled_rows(test), HOLDOUT_ARTIFACT)


def log_onnx_model(onnx_model, contract: ModelContract, example: pd.DataFrame) -> str:
    """The registered artifact. No input example: MLflow's ONNX pyfunc feeds 1-D columns, while the
    graph takes [batch, 1] per column (what skl2onnx needs); serving builds its own feeds."""
    with tracking.temporary_dir() as tmp:
        contract_path = contract.save(tmp)
        info = mlflow.onnx.log_model(
            onnx_model, name="onnx", extra_files=[str(contract_path)], save_as_external_data=False,
            signature=mlflow.models.infer_signature(example, np.zeros((len(example), 2), dtype=np.float32)),
            pip_requirements=tracking.pinned_requirements("onnxruntime"),
            onnx_execution_providers=["CPUExecutionProvider"],
            metadata={"threshold": contract.threshold, "model_type": contract.model_type},
        )
    return info.model_uri


def score_registered(name: str, alias: str, test: pd.DataFrame) -> float | None:
    """ROC-AUC of the version holding `alias` on these rows (None when there is no such version)."""
    version = registry.version_for_alias(name, alias)
    if version is None:
        return None
    path = mlflow.artifacts.download_artifacts(f"models:/{name}@{alias}")
    session = open_session(f"{path}/model.onnx")
    return float(roc_auc_score(target(test), onnx_probabilities(session, test)[:, 1]))


def choose_alias(ctx: StageContext, new_auc: float, test: pd.DataFrame) -> tuple[str | None, str]:
    if ctx.alias == registry.CHALLENGER:
        return registry.CHALLENGER, "retraining: registered as challenger for monitoring to judge"
    champion_auc = score_registered(ctx.project, registry.CHAMPION, test)
    if champion_auc is None:
        return registry.CHAMPION, "first version: becomes champion"
    if new_auc > champion_auc:
        return registry.CHAMPION, f"beats champion on test roc_auc: {new_auc:.4f} > {champion_auc:.4f}"
    return None, f"does not beat champion on test roc_auc ({new_auc:.4f} <= {champion_auc:.4f}): champion kept"


def run(ctx: StageContext) -> None:
    config = ctx.config
    candidate = load_candidate(ctx)
    native = mlflow.sklearn.load_model(candidate["model_uri"])
    valid, test = load_split(ctx, "valid"), load_split(ctx, "test")

    onnx_model = to_onnx(native, name=ctx.project)
    session = open_session(onnx_model.SerializeToString())
    p_onnx = onnx_probabilities(session, test)
    parity = check_parity(native.predict_proba(features(test)), p_onnx, atol=config.export.parity_atol)
    mlflow.log_metrics(parity.as_metrics("test_onnx"))
    log.info("ONNX parity on %d test rows: max |diff| %.2e", parity.rows, parity.max_abs_diff)

    metrics = {"test_roc_auc": float(roc_auc_score(target(test), p_onnx[:, 1]))}
    contract = build_contract(ctx, candidate, metrics)
    log_reference(session, valid, test, contract.threshold, config.export.reference_rows, config.seed)
    example = features(test).head(5).astype({name: "float32" for name in schema.NUMERIC})
    onnx_uri = log_onnx_model(onnx_model, contract, example)
    log_sklearn_model(native, "native", features(test).head(5))

    alias, why = choose_alias(ctx, metrics["test_roc_auc"], test)
    version = registry.register_version(onnx_uri, ctx.project, tags={
        "threshold": str(contract.threshold), "model_type": contract.model_type,
        "test_roc_auc": f"{metrics['test_roc_auc']:.4f}", "data_sha256": contract.data_sha256,
    })
    if alias:
        registry.set_alias(ctx.project, alias, version)
    mlflow.set_tags({"registered_version": version, "alias_decision": why})
    log.info("registered %s version %s: %s", ctx.project, version, why)
    ctx.summary |= {"onnx_parity_max_abs_diff": parity.max_abs_diff, "registered_version": version,
                    "alias": f"{alias or '-'} ({why})"}
