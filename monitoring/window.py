"""A window of production traffic: rows of the prediction log as a frame shaped like the reference.

Monitoring reads the log only through `serving.predlog.read_predictions` (serving owns the table layout),
selecting in SQL the watched version's rows with a LIMIT, never the whole log, and turns each logged
prediction into one row: what the model's codec describes of the logged entry
(`codec.describe`: the tabular inputs, an image's brightness and size, a text's length, ...), the
prediction columns of the logged answer (`modelpkg.runtime.answer_columns`: `probability`,
`predicted_label`, and the per-class probabilities of multi-class models), the ground-truth `label`
(None until feedback arrives), plus `id`, `ts` and `version` for bookkeeping. The reference is described
by the same codec (monitoring.reference), so the two frames always have the same columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from modelpkg.contract import LABEL
from modelpkg.runtime import answer_columns
from monitoring.reference import WatchedModel
from serving.predlog import read_predictions

ID, TS, VERSION = "id", "ts", "version"


@dataclass(frozen=True)
class WindowSpec:
    """Which predictions to read: the newest `last_n`, or those with start <= ts < end (Unix seconds)."""

    last_n: int | None = None
    start_ts: float | None = None
    end_ts: float | None = None

    def describe(self) -> str:
        parts = [f"last {self.last_n} predictions"] if self.last_n else []
        if self.start_ts is not None:
            parts.append(f"from {iso(self.start_ts)}")
        if self.end_ts is not None:
            parts.append(f"until {iso(self.end_ts)}")
        return " ".join(parts) or "all predictions"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def parse_time(text: str) -> float:
    """CLI times: Unix seconds or ISO-8601 (UTC when no zone is given)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"not a time: '{text}' (use Unix seconds or ISO-8601, e.g. 2025-01-31T12:00)") from error
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def records_to_frame(records: list[dict], model: WatchedModel) -> pd.DataFrame:
    """Logged predictions -> one row each; a logged entry that lacks a descriptor is an error, not a NaN."""
    rows = []
    for record in records:
        try:
            described = model.codec.describe(record["inputs"])
            answered = answer_columns(record["outputs"], model.contract)
        except KeyError as error:
            raise ValueError(f"prediction {record['id']} of {model.name} lacks {error} that the "
                             f"{model.contract.kind} codec reads: was it logged by another model?") from None
        rows.append({ID: record["id"], TS: record["ts"], VERSION: str(record["version"]), **described, **answered,
                     LABEL: record["label"]})
    return pd.DataFrame(rows, columns=[ID, TS, VERSION, *model.codec.descriptor_names, *model.prediction_columns,
                                       LABEL])


def read_records(db_path: str | Path, model: str, spec: WindowSpec, *, version: str | None = None,
                 max_rows: int | None = None) -> list[dict]:
    """The window's logged predictions (of `version` only, when given) as serving.predlog returns them.
    A time window is read with LIMIT max_rows + 1: one that holds more is an error, not an unbounded read.
    LookupError when there is none."""
    limit = spec.last_n if spec.last_n is not None else (None if max_rows is None else max_rows + 1)
    records = read_predictions(db_path, model, start_ts=spec.start_ts, end_ts=spec.end_ts, last_n=limit,
                               version=version)
    if not records:
        by = f" (served by version {version})" if version is not None else ""
        raise LookupError(f"no predictions for model '{model}' in window ({spec.describe()}) of {db_path}{by}")
    if spec.last_n is None and max_rows is not None and len(records) > max_rows:
        raise ValueError(f"window ({spec.describe()}) holds more than {max_rows} predictions of '{model}': "
                         f"narrow --start/--end or raise window.max_rows in the monitoring config")
    return records


def read_window(db_path: str | Path, model: WatchedModel, spec: WindowSpec,
                max_rows: int | None = None) -> pd.DataFrame:
    """The watched version's predictions in the window (`last_n`: its newest n), selected in SQL."""
    return records_to_frame(read_records(db_path, model.name, spec, version=model.version, max_rows=max_rows), model)


def served_by(frame: pd.DataFrame, version: str, min_rows: int, model: str, spec: WindowSpec) -> pd.DataFrame:
    """Keep the rows the watched version served: prediction drift is only meaningful per version."""
    mine = frame[frame[VERSION] == str(version)].reset_index(drop=True)
    if len(mine) < min_rows:
        versions = frame[VERSION].value_counts().to_dict()
        raise LookupError(
            f"only {len(mine)} predictions by {model} v{version} in window ({spec.describe()}); need at least "
            f"{min_rows} (versions in the window: {versions})"
        )
    return mine


def window_id(frame: pd.DataFrame) -> str:
    """A name that sorts in time and is unique per window: first and last timestamp, in milliseconds."""
    def stamp(ts: float) -> str:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3]

    return f"{stamp(frame[TS].iloc[0])}_{stamp(frame[TS].iloc[-1])}"
