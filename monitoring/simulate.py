"""Simulated production: windows of traffic sent to the running server, ground truth posted later.

A plan is a list of scenario names, one per window (e.g. no_drift, no_drift, price_increase). Each window
draws `window_rows` rows from the model's held-out split (the test split logged at export, which the
model never trained on), shaped by its scenario, turns them into the records a client sends with the
model's own codec (`codec.request`: a table row for tabular models, a base64 file for images, the text
for text models) and sends them in batches to POST /v1/<model>/predict. `no_drift` works for every kind;
other scenarios are registered per project (monitoring.scenarios).
Ground truth arrives late, as it does in production: the labels of window k are posted to the feedback
endpoint after window k + `label_delay_windows` has been sent (`flush_labels` posts the rest at the end).

The windows' time ranges and scenarios are written to `simulation.json` beside the reports, so
`python -m monitoring run --simulated` can monitor each window by name.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from modelpkg.codecs import Codec
from modelpkg.contract import LABEL
from monitoring.client import ServingClient
from monitoring.config import MonitoringConfig
from monitoring.scenarios import get_scenario

log = logging.getLogger(__name__)
MANIFEST = "simulation.json"


@dataclass
class SimulatedWindow:
    index: int
    scenario: str
    rows: int
    start_ts: float
    end_ts: float
    version: str  # the model version that answered
    labels_posted: int = 0
    pending_labels: dict[str, str] = field(default_factory=dict, repr=False)  # prediction id -> label


def send_window(client: ServingClient, model: str, records: list[dict], batch_rows: int) -> tuple[list[str], str]:
    """POST the request records in batches; returns the prediction ids in order and the serving version."""
    ids, version = [], ""
    for start in range(0, len(records), batch_rows):
        answer = client.predict(model, records[start:start + batch_rows])
        ids += [prediction["id"] for prediction in answer["predictions"]]
        version = str(answer["version"])
    return ids, version


def labels_to_post(ids: list[str], labels: pd.Series, share: float, rng: np.random.Generator) -> dict[str, str]:
    """Ground truth for a random `share` of the predictions (some customers are never followed up)."""
    keep = rng.random(len(ids)) < share
    return {prediction_id: str(label) for prediction_id, label, kept in zip(ids, labels, keep) if kept}


def post_labels(client: ServingClient, model: str, window: SimulatedWindow, batch_rows: int) -> None:
    items = list(window.pending_labels.items())
    for start in range(0, len(items), batch_rows):
        window.labels_posted += client.feedback(model, dict(items[start:start + batch_rows]))
    window.pending_labels = {}


def simulate(config: MonitoringConfig, model: str, client: ServingClient, pool: pd.DataFrame, plan: list[str], *,
             codec: Codec, flush_labels: bool = False) -> list[SimulatedWindow]:
    """Send each planned window to the server (records made by the model's codec from the pool's stored
    rows); labels follow `label_delay_windows` windows later."""
    settings = config.simulate
    scenario_params = config.model(model).scenarios
    scenarios = [get_scenario(model, name) for name in plan]  # unknown names fail before any traffic
    rng = np.random.default_rng(config.seed)
    # Never more records a request than the server takes for this model (each model has its own limit).
    batch_rows = min(settings.batch_rows, client.max_batch(model) or settings.batch_rows)
    windows: list[SimulatedWindow] = []
    for index, scenario in enumerate(scenarios):
        rows = scenario.draw(pool, settings.window_rows, rng, scenario_params.get(scenario.name, {}))
        started = time.time()
        records = codec.requests(rows.drop(columns=[LABEL]).to_dict(orient="records"))
        ids, version = send_window(client, model, records, batch_rows)
        window = SimulatedWindow(index, scenario.name, len(rows), started, time.time(), version)
        window.pending_labels = labels_to_post(ids, rows[LABEL], settings.label_share, rng)
        windows.append(window)
        due = index - settings.label_delay_windows
        if due >= 0:
            post_labels(client, model, windows[due], settings.batch_rows)
        log.info("window %d (%s): %d predictions by v%s", index, scenario.name, len(rows), version)
    if flush_labels:
        for window in windows:
            post_labels(client, model, window, settings.batch_rows)
    return windows


def write_manifest(windows: list[SimulatedWindow], directory: Path, model: str, url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST
    entries = [{k: v for k, v in asdict(w).items() if k != "pending_labels"} for w in windows]
    path.write_text(json.dumps({"model": model, "url": url, "windows": entries}, indent=2) + "\n")
    return path


def read_manifest(directory: Path) -> list[dict]:
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no simulation manifest at {path}: run `python -m monitoring simulate` first")
    return json.loads(path.read_text())["windows"]


def scenario_during(directory: Path, start_ts: float, end_ts: float) -> str | None:
    """The scenario of the last simulation's window(s) that overlap [start_ts, end_ts] (`a+b` for a span of
    several), None when no simulation ran then: a window of the log is named by what was sent, whether
    or not it was monitored `--simulated` and whether or not its labels arrived."""
    if not (directory / MANIFEST).is_file():
        return None
    names = [w["scenario"] for w in read_manifest(directory) if w["start_ts"] <= end_ts and start_ts <= w["end_ts"]]
    return "+".join(dict.fromkeys(names)) or None


def format_windows(windows: list[SimulatedWindow]) -> str:
    lines = ["| window | scenario | rows | version | labels posted |", "|---|---|---|---|---|"]
    lines += [f"| {w.index} | {w.scenario} | {w.rows} | {w.version} | {w.labels_posted} |" for w in windows]
    return "\n".join(lines)
