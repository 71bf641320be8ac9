"""Runs a project's lifecycle stages in order, each in its own nested MLflow run.

A project is a name, a config schema and an ordered mapping of stage functions. Stages talk only
through MLflow: a stage reads what an earlier stage logged via `StageContext`, which finds that stage's
run in this invocation or, when the stage is run alone, the latest finished one (or one the user names).
"""

from __future__ import annotations

import importlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import mlflow
import numpy as np
from pydantic import BaseModel

from pipelines.common import tracking
from pipelines.common.config import load_config

log = logging.getLogger(__name__)

# Project name -> module defining PROJECT.
PROJECT_MODULES = {"churn": "pipelines.churn.project", "vision": "pipelines.vision.project",
                   "text": "pipelines.text.project"}


@dataclass(frozen=True)
class Project:
    name: str  # MLflow experiment and registered model name
    config_schema: type[BaseModel]
    default_config: str
    stages: dict[str, Callable[["StageContext"], None]]


@dataclass
class StageContext:
    project: str
    config: Any
    parent_run_id: str
    alias: str = "champion"  # which alias the export stage aims for ("challenger" when retraining)
    extra_train_data: Any = None  # recent labelled rows added to the training split (retraining)
    from_run: str | None = None  # pipeline run id to take earlier stages' outputs from
    stage_runs: dict[str, str] = field(default_factory=dict)
    current_stage: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # what the final printout shows

    def run_id_of(self, stage: str) -> str:
        """The run holding `stage`'s outputs. In order: this invocation's; the one the runs we already
        read used themselves (their `input_run.<stage>` tag), so one invocation never mixes two
        pipelines' outputs; the latest in `from_run`; the latest finished one."""
        if stage not in self.stage_runs:
            run_id = self.lineage(stage) or tracking.latest_stage_run(self.project, stage, self.from_run)
            log.info("using '%s' outputs from run %s", stage, run_id)
            self.stage_runs[stage] = run_id
        if self.current_stage:
            tracking.set_run_tag(self.stage_runs[self.current_stage], f"input_run.{stage}", self.stage_runs[stage])
        return self.stage_runs[stage]

    def lineage(self, stage: str) -> str | None:
        for run_id in self.stage_runs.values():
            recorded = tracking.run_tags(run_id).get(f"input_run.{stage}")
            if recorded:
                return recorded
        return None

    def artifact(self, stage: str, path: str) -> Path:
        """Download (or locate) an artifact an earlier stage logged."""
        return Path(mlflow.artifacts.download_artifacts(run_id=self.run_id_of(stage), artifact_path=path))

    def model_uri(self, stage: str, name: str) -> str:
        return f"runs:/{self.run_id_of(stage)}/{name}"


@dataclass(frozen=True)
class PipelineResult:
    parent_run_id: str
    seconds: float
    summary: dict[str, Any]

    @property
    def registered_version(self) -> str | None:
        return self.summary.get("registered_version")


def seed_everything(seed: int) -> None:
    """Seed every RNG a stage may touch; estimators still get `random_state=seed` explicitly."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch  # only the deep-learning projects have it

        torch.manual_seed(seed)
    except ImportError:
        pass


def load_project(name: str) -> Project:
    if name not in PROJECT_MODULES:
        raise ValueError(f"unknown project '{name}' (known: {', '.join(PROJECT_MODULES)})")
    return importlib.import_module(PROJECT_MODULES[name]).PROJECT


def select_stages(project: Project, stages: list[str] | None) -> list[str]:
    if not stages:
        return list(project.stages)
    unknown = [s for s in stages if s not in project.stages]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown} for {project.name} (stages: {', '.join(project.stages)})")
    return [s for s in project.stages if s in stages]  # always in lifecycle order


def run_project(
    project: str,
    config_path: str | None = None,
    *,
    stages: list[str] | None = None,
    extra_train_data: Any = None,
    alias: str = "champion",
    from_run: str | None = None,
) -> PipelineResult:
    """Run the chosen stages of a project under one parent MLflow run."""
    spec = load_project(project)
    config_path = config_path or spec.default_config
    config = load_config(config_path, spec.config_schema)
    chosen = select_stages(spec, stages)
    seed_everything(getattr(config, "seed", 0))
    started = time.perf_counter()
    with tracking.pipeline_run(spec.name, config, config_path) as parent:
        mlflow.set_tag("stages", ",".join(chosen))
        ctx = StageContext(spec.name, config, parent.info.run_id, alias, extra_train_data, from_run)
        for stage in chosen:
            stage_started = time.perf_counter()
            log.info("[%s] stage '%s' ...", spec.name, stage)
            with tracking.stage_run(spec.name, stage) as run:
                ctx.stage_runs[stage], ctx.current_stage = run.info.run_id, stage
                spec.stages[stage](ctx)
                mlflow.log_metric("stage_seconds", time.perf_counter() - stage_started)
            tracking.promote_data_identity(run.info.run_id)
            log.info("[%s] stage '%s' done in %.1f s", spec.name, stage, time.perf_counter() - stage_started)
        seconds = time.perf_counter() - started
        mlflow.log_metric("pipeline_seconds", seconds)
        numeric = {k: v for k, v in ctx.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:
            mlflow.log_metrics(numeric)
    return PipelineResult(parent.info.run_id, seconds, ctx.summary)
