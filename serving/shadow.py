"""Shadow scoring: a challenger scores every request beside the champion, off the request path.

The client's answer is the champion's, and it leaves before the challenger runs: a predict route only
hands its decoded records to the scorer (one queue put), and one scorer thread takes everything waiting,
scores it with the shadow in as few graph calls as its batch limit allows, and gives the rows to the
prediction log (table `shadow_predictions`: the champion's prediction id, the shadow's version and its
outputs). Monitoring judges the challenger on those rows once their labels arrive (monitoring/retrain.py).

Nothing here can fail a request: a missing or failing challenger is reported (/v1/models, the server
log) and skipped; when the scorer falls behind, new records are skipped and counted, never queued
without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from serving.sources import ModelSource, ResolvedModel

if TYPE_CHECKING:
    from serving.models import LoadedModel
    from serving.predlog import PredictionLog

log = logging.getLogger(__name__)
_STOP = object()


def resolve_shadow(source: ModelSource, name: str, alias: str) -> ResolvedModel:
    """The registry resolves the shadow's alias like any other; a bundle source has its own folder for it."""
    resolver = getattr(source, "resolve_shadow", source.resolve)
    return resolver(name, alias)


@dataclass(slots=True)
class ShadowJob:
    """One request's records, to be scored by `shadow` under the champion's prediction ids."""

    shadow: "LoadedModel"
    request_id: str
    ts: float
    ids: list[str]
    records: list[Any]


@dataclass
class ShadowStats:
    """What /v1/models reports of the scorer: rows logged, skipped (behind or log busy), failed."""

    scored: int = 0
    skipped: int = 0
    failed: int = 0
    last_error: str | None = None
    pending: dict[str, int] = field(default_factory=dict)


class ShadowScorer:
    """One thread scoring shadows for every model; `submit` is all a request does."""

    def __init__(self, predlog: "PredictionLog", max_pending: dict[str, int], gather_seconds: float = 0.0):
        self.predlog = predlog
        self.gather_seconds = gather_seconds  # after the first job, how long to gather more for one graph call
        self.max_pending = max_pending  # per model name: records waiting beyond which submits are skipped
        self.stats = ShadowStats(pending={name: 0 for name in max_pending})
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> "ShadowScorer":
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()
        return self

    def submit(self, job: ShadowJob) -> None:
        """Queue a request's records for its shadow, or skip them when too many wait already."""
        name, rows = job.shadow.name, len(job.ids)
        with self._lock:
            if self.stats.pending[name] + rows > self.max_pending[name]:
                self.stats.skipped += rows
                return
            self.stats.pending[name] += rows
        self._queue.put(job)

    def close(self, timeout: float | None = None) -> None:
        """Score what waits, then stop (before the log closes, so those rows are committed)."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        stop = False
        while not stop:
            jobs, stop = self._take()
            for group in _by_shadow(jobs):
                self._score(group)

    def _take(self) -> tuple[list[ShadowJob], bool]:
        """Block for one job, then gather more for `gather_seconds`: under load, one graph call and one
        hand-over to the log cover many requests, and the scorer wakes (and takes the GIL) less often."""
        jobs, job = [], self._queue.get()
        deadline = time.monotonic() + self.gather_seconds
        while job is not _STOP:
            jobs.append(job)
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return jobs, False
        return jobs, True

    def _score(self, jobs: list[ShadowJob]) -> None:
        """Score one shadow's jobs in graph calls of at most its max_batch records; log the rows."""
        shadow = jobs[0].shadow
        rows = sum(len(job.ids) for job in jobs)
        try:
            self._log_rows(shadow, jobs)
            self.stats.scored += rows
        except Exception as error:  # noqa: BLE001 - a shadow never fails anything but its own rows
            self._failed(shadow, rows, error)
        finally:
            with self._lock:
                self.stats.pending[shadow.name] -= rows

    def _log_rows(self, shadow: "LoadedModel", jobs: list[ShadowJob]) -> None:
        started = time.perf_counter()
        outputs = _predict_in_chunks(shadow, [record for job in jobs for record in job.records])
        latency_ms = (time.perf_counter() - started) * 1000 / max(1, len(jobs))
        found = iter(outputs)
        rows = [(id_, job.request_id, job.ts, shadow.name, shadow.version, orjson.dumps(next(found)).decode(), latency_ms)
                for job in jobs for id_ in job.ids]
        self.predlog.append_shadow(rows)

    def _failed(self, shadow: "LoadedModel", rows: int, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"[:300]
        if self.stats.last_error != reason:
            log.warning("shadow %s v%s: %d rows not logged: %s", shadow.name, shadow.version, rows, reason)
        self.stats.failed += rows
        self.stats.last_error = reason


def _by_shadow(jobs: list[ShadowJob]) -> list[list[ShadowJob]]:
    """Jobs grouped by the shadow version that scores them (a reload may change it mid-queue)."""
    groups: dict[int, list[ShadowJob]] = {}
    for job in jobs:
        groups.setdefault(id(job.shadow), []).append(job)
    return list(groups.values())


def _predict_in_chunks(shadow: "LoadedModel", records: list[Any]) -> list[dict]:
    size = shadow.settings.max_batch
    return [output for start in range(0, len(records), size) for output in shadow.predict(records[start:start + size])]
