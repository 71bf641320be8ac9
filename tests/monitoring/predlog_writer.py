"""Fill a real prediction log (serving's own writer) with scored, labelled rows, without a server.

The end-to-end test goes through HTTP; unit tests of the monitoring job and the retraining loop only
need rows in the log, written exactly as serving writes them.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pandas as pd

from monitoring.reference import WatchedModel
from serving.predlog import LoggedRequest, PredictionLog


def log_predictions(db_path: Path, model: WatchedModel, rows: pd.DataFrame, *, labelled: bool = True,
                    start_ts: float | None = None) -> list[str]:
    """Score `rows` with the model, append one request per row (1 ms apart), post their labels."""
    scored = model.with_predictions(rows)
    inputs = json.loads(scored[model.features].to_json(orient="records"))
    start_ts = time.time() if start_ts is None else start_ts
    ids = [uuid.uuid4().hex for _ in range(len(scored))]

    async def write() -> None:
        log = PredictionLog(db_path).start()
        try:
            for i, (id_, record) in enumerate(zip(ids, inputs)):
                outputs = {"label": scored["predicted_label"].iloc[i], "probability": float(scored["probability"].iloc[i])}
                await log.append(LoggedRequest(uuid.uuid4().hex, start_ts + i / 1000, model.name, model.version,
                                               [id_], [record], [outputs], 0.1))
            if labelled:
                await log.add_feedback(model.name, list(zip(ids, scored["label"].astype(str))))
        finally:
            log.close()

    asyncio.run(write())
    return ids
