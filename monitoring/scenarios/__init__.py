"""Drift scenarios: named ways production traffic can change, built from real held-out rows.

The machinery here knows nothing of any project. A project module (e.g. `monitoring.scenarios.churn`)
defines `SCENARIOS`, a dict of `Scenario`; its parameters come from configs/monitoring.yaml
(`models.<name>.scenarios.<scenario>`), so the strength of each shift is visible and tunable. Every
model, of any kind and with or without a module, gets `no_drift`: rows drawn as they are, the traffic the
model was built for (scenarios only pick and edit stored rows; the codec turns them into requests).

A scenario draws its own rows from the pool (rather than editing a uniform sample) because most real
shifts change *who* arrives, not what one customer looks like: resampling real rows keeps each row
internally consistent (a month-to-month customer keeps the tenure and charges such customers have).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

NO_DRIFT = "no_drift"
# Project name -> module defining SCENARIOS (a new project adds its line).
PROJECT_MODULES = {"churn": "monitoring.scenarios.churn", "text": "monitoring.scenarios.text",
                   "vision": "monitoring.scenarios.vision"}

# (pool of held-out rows, rows wanted, random generator, **parameters) -> the window's rows
Transform = Callable[..., pd.DataFrame]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    transform: Transform

    def parameter_names(self) -> list[str]:
        return [name for name in inspect.signature(self.transform).parameters][3:]

    def draw(self, pool: pd.DataFrame, rows: int, rng: np.random.Generator, params: Mapping[str, Any]) -> pd.DataFrame:
        unknown = sorted(set(params) - set(self.parameter_names()))
        if unknown:
            raise ValueError(f"scenario '{self.name}': unknown parameter(s) {unknown} "
                             f"(accepts: {', '.join(self.parameter_names()) or 'none'})")
        return self.transform(pool, rows, rng, **params).reset_index(drop=True)


def sample_rows(pool: pd.DataFrame, rows: int, rng: np.random.Generator, weights: np.ndarray | None = None) -> pd.DataFrame:
    """`rows` rows of the pool: without replacement when uniform and the pool is big enough, else with."""
    replace = weights is not None or rows > len(pool)
    probabilities = None if weights is None else weights / weights.sum()
    picked = rng.choice(len(pool), size=rows, replace=replace, p=probabilities)
    return pool.iloc[picked].copy()


def no_drift(pool: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    return sample_rows(pool, rows, rng)


NO_DRIFT_SCENARIO = Scenario(NO_DRIFT, "held-out rows drawn at random: the traffic the model was built for", no_drift)


def scenarios_for(project: str) -> dict[str, Scenario]:
    """`no_drift` for every project, plus those its module registers (none registered: no_drift only)."""
    registered = importlib.import_module(PROJECT_MODULES[project]).SCENARIOS if project in PROJECT_MODULES else {}
    return {NO_DRIFT: NO_DRIFT_SCENARIO} | registered


def get_scenario(project: str, name: str) -> Scenario:
    known = scenarios_for(project)
    if name not in known:
        raise ValueError(f"unknown scenario '{name}' for {project} (known: {', '.join(known)})")
    return known[name]
