"""Fill a real prediction log (serving's own writer) with scored, labelled rows, without a server.

The end-to-end test goes through HTTP; unit tests of the monitoring job and the retraining loop only
need rows in the log, written as serving writes them: the inputs are what the model's codec logs of each
validated request record (`codec.log_entry`: a tabular record, an image's hash and descriptors, a text
and its descriptors), the outputs what `modelpkg.runtime.answers` returns for the graph's probabilities.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pandas as pd

from modelpkg.contract import LABEL
from modelpkg.runtime import answers
from monitoring.reference import WatchedModel, stored_rows
from serving.predlog import LoggedRequest, PredictionLog


def log_predictions(db_path: Path, model: WatchedModel, rows: pd.DataFrame, *, labelled: bool = True,
                    start_ts: float | None = None) -> list[str]:
    """Score stored `rows` (+ `label`) with the model, append one request per row (1 ms apart), post
    their labels."""
    served = model.serve(stored_rows(rows, model, "rows"))
    entries, outputs = served.entries, answers(served.probabilities, model.contract, embeddings=served.embeddings)
    start_ts = time.time() if start_ts is None else start_ts
    ids = [uuid.uuid4().hex for _ in range(len(rows))]

    async def write() -> None:
        log = PredictionLog(db_path).start()
        try:
            for i, (id_, entry, output) in enumerate(zip(ids, entries, outputs)):
                await log.append(LoggedRequest(uuid.uuid4().hex, start_ts + i / 1000, model.name, model.version,
                                               [id_], [entry], [output], 0.1))
            if labelled:
                await log.add_feedback(model.name, list(zip(ids, rows[LABEL].astype(str))))
        finally:
            log.close()

    asyncio.run(write())
    return ids


def log_shadow(db_path: Path, challenger: WatchedModel, rows: pd.DataFrame, ids: list[str]) -> None:
    """Shadow rows as the server's scorer writes them (serving/shadow.py): the challenger's answer to each
    of `rows`, under the champion's prediction id `ids[i]`."""
    served = challenger.serve(stored_rows(rows, challenger, "rows"))
    outputs = answers(served.probabilities, challenger.contract, embeddings=served.embeddings)
    log = PredictionLog(db_path).start()
    try:
        log.append_shadow([(id_, uuid.uuid4().hex, time.time(), challenger.name, challenger.version,
                            orjson.dumps(output).decode(), 0.1) for id_, output in zip(ids, outputs, strict=True)])
        log.flush()
    finally:
        log.close()
