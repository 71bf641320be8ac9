"""The release path every project's export stage ends in: parity -> contract -> log -> register -> alias.

A project hands over its ONNX graph, the contract fields only it knows (inputs, labels, threshold,
preprocessing, assets), the native model's probabilities on the test split and its stored rows; this
module does the rest, the same way for tabular, image and text models:

1. write the package (graph + contract + assets) to a folder and score the test rows *through the
   package*: stored row -> request record -> codec validation -> feeds -> onnxruntime, the path a
   request takes in the server;
2. parity: those probabilities must equal the native model's on every test row, or the stage fails;
3. the contract gets its test metrics; the monitoring reference (a sample of the valid split with this
   package's predictions) and the holdout (the test split) are logged beside it;
4. the package is logged as an MLflow ONNX model and registered as a new version;
5. the alias: retraining registers a `challenger` for monitoring to judge; otherwise the new version
   becomes `champion` when there is none yet, or when it beats the current champion on this test split
   by the paired-bootstrap rule (pipelines.common.bootstrap.decide: the lower end of the gain's interval
   above `promotion.min_gain`), moved by compare-and-set and recorded (pipelines.common.registry.promote).
   The guards of an automatic promotion (pipelines.common.promotion: cost on traffic, cooldown) are for
   monitoring's retraining; a person who runs the pipeline decides to release.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from modelpkg.codecs import InvalidRequest
from modelpkg.contract import HOLDOUT_ARTIFACT, LABEL, REFERENCE_ARTIFACT, ModelContract
from modelpkg.package import PackageFiles, load_model, log_model, save_package
from modelpkg.runtime import Predictor, class_indices, decide, prediction_columns
from pipelines.common import registry, tracking
from pipelines.common.bootstrap import Decision, decide as decide_promotion
from pipelines.common.config import DecisionConfig, ReleaseConfig
from pipelines.common.metrics import classification_metrics
from pipelines.common.onnx_parity import ParityReport, check_parity
from pipelines.common.runner import StageContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """What a project's export stage hands to `release`."""

    onnx_bytes: bytes
    contract_fields: dict  # ModelContract fields only the project knows (not run_id, metrics, dates)
    native_test: np.ndarray  # the native model's [rows, classes] probabilities on `test`
    test: pd.DataFrame  # stored rows (what codec.request reads) + `label`: the test split
    valid: pd.DataFrame  # the same for the valid split: the monitoring reference is sampled from it
    assets: dict[str, Path] | None = None  # files the codec needs, by name in the package
    signature: object = None  # MLflow model signature, where the project can state one
    pip_requirements: list[str] | None = None


@dataclass(frozen=True)
class Released:
    version: str
    alias: str | None
    why: str
    contract: ModelContract
    parity: ParityReport
    decision: Decision | None  # the champion comparison, when there was one


def stored_rows(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict(orient="records")


def build_contract(ctx: StageContext, fields: dict, metrics: dict[str, float]) -> ModelContract:
    train_tags = tracking.run_tags(ctx.run_id_of("train"))
    return ModelContract(**fields, name=ctx.project, run_id=mlflow.active_run().info.run_id,
                         data_sha256=train_tags.get("data_sha256", "unknown"), metrics=metrics,
                         created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def log_reference(predictor: Predictor, valid: pd.DataFrame, test: pd.DataFrame, max_rows: int, seed: int) -> None:
    """What monitoring compares production with: held-out rows and this very package's predictions."""
    sample = valid.sample(n=min(max_rows, len(valid)), random_state=seed).reset_index(drop=True)
    probabilities, embeddings = predictor.score_rows_with_embeddings(stored_rows(sample))
    columns = prediction_columns(probabilities, predictor.contract, embeddings)
    tracking.log_frame(sample.assign(**columns), REFERENCE_ARTIFACT)
    tracking.log_frame(test.reset_index(drop=True), HOLDOUT_ARTIFACT)


def compare_with_champion(ctx: StageContext, rows: list[dict], y: np.ndarray, p_new: np.ndarray, rule: DecisionConfig,
                          labels: list[str]) -> tuple[str | None, str, Decision | None, str | None]:
    """(alias for the new version, why, the decision, the champion version it was judged against)."""
    if ctx.alias == registry.CHALLENGER:
        return registry.CHALLENGER, "retraining: registered as challenger for monitoring to judge", None, None
    if registry.version_for_alias(ctx.project, registry.CHAMPION) is None:
        return registry.CHAMPION, "first version: becomes champion", None, None
    with tracking.temporary_dir() as tmp:
        champion = load_model(ctx.project, alias=registry.CHAMPION, dst_path=tmp)
        if champion.contract.labels != labels:  # probability columns would mean different classes
            return None, (f"champion v{champion.version} has classes {champion.contract.labels}, this version "
                          f"{labels}: not comparable, champion kept; move the alias by hand once checked"), None, None
        try:
            p_champion = Predictor(champion.files).score_rows(rows)
        except (InvalidRequest, KeyError, ValueError) as error:
            return None, (f"champion v{champion.version} cannot score this run's test rows ({error}): champion kept; "
                          f"move the alias by hand once the new version is checked"), None, None
    decision = decide_promotion(y, p_champion, p_new, metric=rule.metric, samples=rule.bootstrap_samples,
                                confidence=rule.confidence, seed=ctx.config.seed, min_gain=rule.min_gain)
    why = decision.reason("new version", f"champion v{champion.version}", "test")
    return (registry.CHAMPION if decision.passed else None), why, decision, str(champion.version)


def release(ctx: StageContext, candidate: Candidate, settings: ReleaseConfig) -> Released:
    """Run the whole release path for one candidate, in the active (export stage) MLflow run."""
    with tracking.temporary_dir() as tmp:
        draft = build_contract(ctx, candidate.contract_fields, {})
        files = save_package(tmp / "package", candidate.onnx_bytes, draft, candidate.assets)
        predictor = Predictor(files)
        rows = stored_rows(candidate.test)
        p_test = predictor.score_rows(rows)
        parity = check_parity(candidate.native_test, p_test, atol=settings.parity_atol)
        mlflow.log_metrics(parity.as_metrics("test_onnx"))
        log.info("ONNX parity on %d test rows: max |diff| %.2e", parity.rows, parity.max_abs_diff)

        y = class_indices(candidate.test[LABEL], draft.labels, draft.name)
        metrics = classification_metrics("test", y, p_test, decide(p_test, draft)[0], draft.positive_index)
        metrics = {name: value for name, value in metrics.items() if np.isfinite(value)}
        mlflow.log_metrics(metrics)
        contract = draft.model_copy(update={"metrics": metrics})
        contract.save(files.files_dir)
        files = PackageFiles(files.directory, files.onnx_path, files.files_dir, contract)
        log_reference(predictor, candidate.valid, candidate.test, settings.reference_rows, ctx.config.seed)
        model_uri = log_model(files, signature=candidate.signature, pip_requirements=candidate.pip_requirements,
                              metadata={"threshold": contract.threshold})

        alias, why, decision, judged = compare_with_champion(ctx, rows, y, p_test, settings.promotion,
                                                             contract.labels)
    if decision is not None:
        mlflow.log_metrics(decision.as_metrics("promotion"))
    version = registry.register_version(model_uri, ctx.project, tags=version_tags(contract))
    if alias == registry.CHAMPION and judged is not None:  # a promotion: compare-and-set, recorded for the cooldown
        registry.promote(ctx.project, version, expected_champion=judged)
    elif alias:
        registry.set_alias(ctx.project, alias, version)
    mlflow.set_tags({"registered_version": version, "alias_decision": why[:5000]})
    log.info("registered %s version %s: %s", ctx.project, version, why)
    ctx.summary |= {"onnx_parity_max_abs_diff": parity.max_abs_diff, "registered_version": version,
                    "alias": f"{alias or '-'} ({why})"}
    return Released(version, alias, why, contract, parity, decision)


def version_tags(contract: ModelContract) -> dict[str, str]:
    """What the registry UI shows beside each version."""
    tags = {"kind": contract.kind, "model_type": contract.model_type, "data_sha256": contract.data_sha256}
    if contract.threshold is not None:
        tags["threshold"] = str(contract.threshold)
    return tags | {name: f"{value:.4f}" for name, value in contract.metrics.items()}
