"""The prediction log: every prediction and every late ground-truth label, durably, in one SQLite file.

Serving writes it; monitoring reads it with `read_predictions` (and nothing else), so the table layout
can change without breaking monitoring as long as that function keeps its promise.

Why this design (docs/serving.md has the measurements):
- SQLite in WAL mode: one local file, readers (monitoring) never block the writer (serving), and a
  commit is one append to the write-ahead log.
- One writer thread owns the connection. A request hands its rows over (no JSON encoding, no SQL on the
  event loop) and, with `wait_for_commit`, awaits the commit of the group its rows land in. The rows of
  all requests that finish in the same turn of the event loop travel together, and while the writer
  commits one group the next ones queue up: under load one commit, one wake-up of the writer and one
  wake-up of the loop cover many requests (group commit), with no timer delaying anyone.
- What a crash can lose: with `wait_for_commit` nothing that was acknowledged; only rows of requests
  still in flight, which got no answer. synchronous=NORMAL makes a commit survive a crash of the process;
  synchronous=FULL also a power cut (one fsync per group). Without `wait_for_commit` the answer goes
  out before the commit, and a crash can lose the rows still queued (at most one group).
- Faults never end a thread and never leave a request waiting for ever: a group that cannot be
  committed (a full disk, any exception) fails its requests with the reason and the writer goes on; a
  request waits at most the commit timeout; a full queue refuses at once; the checkpointer retries.
- Nothing grows without bound: retention (age, rows) deletes the oldest rows in small batches between
  groups and hands their pages back (incremental vacuum), the WAL is cut back (journal_size_limit), and
  an optional hard cap (max_page_count) turns "the disk fills" into "writes fail, and recover".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import queue
import re
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import orjson

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY, request_id TEXT, ts REAL, model TEXT, version TEXT,
    inputs TEXT, outputs TEXT, latency_ms REAL
);
CREATE INDEX IF NOT EXISTS predictions_model_ts ON predictions (model, ts);
CREATE TABLE IF NOT EXISTS feedback (prediction_id TEXT PRIMARY KEY, label TEXT, ts REAL);
CREATE TABLE IF NOT EXISTS feedback_history (
    prediction_id TEXT NOT NULL, label TEXT NOT NULL, ts REAL NOT NULL, outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_history_prediction ON feedback_history (prediction_id);
CREATE TABLE IF NOT EXISTS shadow_predictions (
    id TEXT NOT NULL, request_id TEXT, ts REAL, model TEXT, version TEXT, outputs TEXT, latency_ms REAL,
    PRIMARY KEY (id, version)
);
CREATE INDEX IF NOT EXISTS shadow_predictions_model_ts ON shadow_predictions (model, ts);
"""
# A shadow challenger's prediction (serving/shadow.py): under the champion's prediction id, with its own
# version; the table is the flag. Best effort: a row lost here never failed a request.
INSERT_SHADOW = "INSERT OR IGNORE INTO shadow_predictions VALUES (?, ?, ?, ?, ?, ?, ?)"
INSERT_PREDICTION = "INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# Rows go in 64 to a statement: one SQLite step (one release of the GIL) per 64 rows instead of per row,
# 30% less writer CPU per row than executemany alone (64 x 8 parameters stay under SQLite's 999).
ROWS_PER_STATEMENT = 64
INSERT_PREDICTIONS = "INSERT INTO predictions VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * ROWS_PER_STATEMENT)
# Labels. Every label posted is kept in feedback_history, with its time and outcome; `feedback` holds the
# one label that counts per prediction (what read_predictions joins): the first, unless a later label came
# as an explicit correction (the latest correction then). A repeated label without `correction` refuses
# its whole request (kept in the history as refused) and changes nothing: nobody relabels a prediction quietly.
FIRST, CORRECTION, REFUSED = "first", "correction", "refused"
SET_LABEL = (
    "INSERT INTO feedback (prediction_id, label, ts) VALUES (?, ?, ?) "
    "ON CONFLICT (prediction_id) DO UPDATE SET label = excluded.label, ts = excluded.ts"
)
INSERT_LABEL_HISTORY = "INSERT INTO feedback_history (prediction_id, label, ts, outcome) VALUES (?, ?, ?, ?)"
SQLITE_MAX_VARIABLES = 900  # stay under SQLite's smallest compiled limit on bound parameters (999)
BUSY_TIMEOUT_SECONDS = 30.0  # how long a reader or writer waits for a lock before giving up


# ------------------------------------------------------------------------------------------------ layout
def worker_log_path(db_path: str | Path, worker: int | None) -> Path:
    """The file one server process writes: the configured path itself when one process serves (None), else
    `<stem>.w<k><suffix>` beside it for worker k, so that no two processes write one SQLite file (each has
    its own writer thread and group commit). With log_files, the one rule of the layout."""
    path = Path(db_path)
    return path if worker is None else path.with_name(f"{path.stem}.w{worker}{path.suffix}")


def log_files(db_path: str | Path) -> list[Path]:
    """Every file that holds part of the log configured at `db_path`, those that exist: the path itself
    (one process) and each worker's (several), whatever the worker count was, so readers never need it."""
    path = Path(db_path)
    pattern = re.compile(rf"{re.escape(path.stem)}\.w(\d+){re.escape(path.suffix)}")
    workers = sorted((int(match.group(1)), candidate) for candidate in path.parent.glob(f"{path.stem}.w*{path.suffix}")
                     if (match := pattern.fullmatch(candidate.name)) and candidate.is_file())
    return ([path] if path.is_file() else []) + [candidate for _, candidate in workers]


# ----------------------------------------------------------------------------------------------- reading
def read_predictions(
    db_path: str | Path, model: str, *, start_ts: float | None = None, end_ts: float | None = None,
    last_n: int | None = None, version: str | None = None, labelled: bool = False,
) -> list[dict]:
    """The logged predictions of one model, oldest first, each with the label that counts (the first one
    posted, or the latest explicit correction; None before any). The one reader of labels: monitoring's
    windows and retraining's rows both come from here.

    `start_ts` <= ts < `end_ts` (Unix seconds, either may be None); `version`: only that version's;
    `labelled`: only those with a label; `last_n` keeps the newest n of those (all filters run in SQL, so
    a reader holds at most `last_n` rows however long the log).
    Each dict: id, request_id, ts, model, version, inputs (dict), outputs (dict), label (str | None).
    A log that does not exist yet holds no predictions. Several workers' files (log_files) read as one log.
    """
    files = log_files(db_path)
    if len(files) == 1:
        return _read_file(files[0], model, start_ts=start_ts, end_ts=end_ts, last_n=last_n, version=version,
                          labelled=labelled)
    rows = sorted((row for path in files for row in _read_file(path, model, start_ts=start_ts, end_ts=end_ts,
                                                                last_n=last_n, version=version, labelled=labelled)),
                  key=lambda row: row["ts"])  # stable: each file's own order among equal times
    return rows if last_n is None else rows[max(len(rows) - last_n, 0):]


def _read_file(
    db_path: Path, model: str, *, start_ts: float | None, end_ts: float | None, last_n: int | None,
    version: str | None, labelled: bool,
) -> list[dict]:
    """read_predictions over one file of the log (a prediction's labels live in the file that holds it)."""
    where, params = ["p.model = ?"], [model]
    if version is not None:
        where.append("p.version = ?")
        params.append(str(version))
    if labelled:
        where.append("f.label IS NOT NULL")
    if start_ts is not None:
        where.append("p.ts >= ?")
        params.append(start_ts)
    if end_ts is not None:
        where.append("p.ts < ?")
        params.append(end_ts)
    query = (
        "SELECT p.id, p.request_id, p.ts AS ts, p.model, p.version, p.inputs, p.outputs, f.label, p.rowid AS seq "
        f"FROM predictions p LEFT JOIN feedback f ON f.prediction_id = p.id WHERE {' AND '.join(where)}"
    )
    if last_n is not None:  # newest n first, then back to oldest first below
        query += " ORDER BY p.ts DESC, seq DESC LIMIT ?"
        params.append(last_n)
    with _reader(db_path) as connection:
        rows = connection.execute(f"SELECT * FROM ({query}) ORDER BY ts, seq", params).fetchall()
    return [_as_dict(row) for row in rows]


def _as_dict(row: tuple) -> dict:
    id_, request_id, ts, model, version, inputs, outputs, label, _ = row
    return {"id": id_, "request_id": request_id, "ts": ts, "model": model, "version": version,
            "inputs": json.loads(inputs), "outputs": json.loads(outputs), "label": label}


def read_shadow(db_path: str | Path, model: str, *, labelled: bool = False, last_n: int | None = None,
                start_ts: float | None = None) -> list[dict]:
    """Each shadow prediction beside the champion's answer to the same request, oldest first: id, ts,
    version and outputs (the champion's), shadow_version and shadow_outputs (the challenger's), and the
    label that counts (None before any). `labelled`, `last_n` and `start_ts` as in read_predictions."""
    if not Path(db_path).is_file():
        return []
    where, params = ["s.model = ?"], [model]
    if labelled:
        where.append("f.label IS NOT NULL")
    if start_ts is not None:
        where.append("s.ts >= ?")
        params.append(start_ts)
    query = ("SELECT s.id, s.ts AS ts, p.version, p.outputs, s.version, s.outputs, f.label, s.rowid AS seq "
             "FROM shadow_predictions s JOIN predictions p ON p.id = s.id "
             f"LEFT JOIN feedback f ON f.prediction_id = s.id WHERE {' AND '.join(where)}")
    if last_n is not None:
        query += " ORDER BY s.ts DESC, seq DESC LIMIT ?"
        params.append(last_n)
    with _reader(db_path) as connection:
        if not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'shadow_predictions'").fetchone():
            return []  # a log written before shadows existed
        rows = connection.execute(f"SELECT * FROM ({query}) ORDER BY ts, seq", params).fetchall()
    return [{"id": id_, "ts": ts, "version": version, "outputs": json.loads(outputs), "shadow_version": shadow_version,
             "shadow_outputs": json.loads(shadow_outputs), "label": label}
            for id_, ts, version, outputs, shadow_version, shadow_outputs, label, _ in rows]


def read_label_history(db_path: str | Path, prediction_id: str) -> list[dict]:
    """Every label posted for one prediction, oldest first: label, ts and outcome (first, correction, or
    refused). The label that counts is the one read_predictions returns; this is the audit trail."""
    rows = []
    for path in log_files(db_path):  # the history lives in the file that holds the prediction
        with _reader(path) as connection:
            rows += connection.execute("SELECT label, ts, outcome FROM feedback_history WHERE prediction_id = ? "
                                       "ORDER BY rowid", (prediction_id,)).fetchall()
    return [{"label": label, "ts": ts, "outcome": outcome} for label, ts, outcome in rows]


class _reader:
    """A read-only connection for one query (readers never block the writer in WAL mode)."""

    def __init__(self, db_path: str | Path):
        self.connection = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_SECONDS)

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("PRAGMA query_only = ON")
        return self.connection

    def __exit__(self, *exc) -> None:
        self.connection.close()


# ----------------------------------------------------------------------------------------------- writing
# Defaults of PredictionLog's settings, for callers without a config (tests, tools); the server passes
# configs/serving.yaml's values, where docs/serving.md explains each.
DEFAULT_COMMIT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_QUEUE_ROWS = 65_536
DEFAULT_RETRY_INTERVAL_SECONDS = 1.0
DEFAULT_JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
DEFAULT_RETENTION_INTERVAL_SECONDS = 60.0
DEFAULT_RETENTION_BATCH_ROWS = 5_000

# While the log is failing and no request comes to retry on, the writer commits (and drops) this much
# every retry interval: room for it means room for a group of requests again (64 churn rows: ~40 KB).
PROBE_BYTES = 64 * 1024
INCREMENTAL_VACUUM = 2  # what PRAGMA auto_vacuum answers for INCREMENTAL
PROBE_SCHEMA = "CREATE TABLE IF NOT EXISTS log_probe (data BLOB)"
PROBE = ("INSERT INTO log_probe (data) VALUES (zeroblob(?))", "DELETE FROM log_probe")
OLDEST_ROWS = "SELECT rowid, ts FROM predictions ORDER BY rowid LIMIT ?"
NEWEST_ROWID = "SELECT max(rowid) FROM predictions"
DELETE_FEEDBACK_UPTO = "DELETE FROM feedback WHERE prediction_id IN (SELECT id FROM predictions WHERE rowid <= ?)"
DELETE_FEEDBACK_HISTORY_UPTO = ("DELETE FROM feedback_history WHERE prediction_id IN "
                                "(SELECT id FROM predictions WHERE rowid <= ?)")
DELETE_PREDICTIONS_UPTO = "DELETE FROM predictions WHERE rowid <= ?"


def connect(db_path: str | Path, synchronous: str = "NORMAL", autocheckpoint: bool = True,
            journal_size_limit: int = DEFAULT_JOURNAL_SIZE_LIMIT_BYTES) -> sqlite3.Connection:
    """Open (creating if needed) the log in WAL mode with its tables.

    auto_vacuum=INCREMENTAL takes only on a new file (before its first table): there, the pages retention
    frees go back to the file system. journal_size_limit: a WAL that a burst grew is cut back to this size
    once a checkpoint has emptied it, instead of keeping its largest size for ever."""
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_SECONDS)
    connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute(f"PRAGMA journal_size_limit = {int(journal_size_limit)}")
    if not autocheckpoint:
        connection.execute("PRAGMA wal_autocheckpoint = 0")
    connection.executescript(SCHEMA)
    return connection


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One predict request's rows, handed to the writer as they are: JSON encoding happens off the loop.

    `inputs` may also be a call that makes the log entries (the server passes the codec's): the writer runs
    it, off the event loop, and a failure there fails this request alone."""

    request_id: str
    ts: float
    model: str
    version: str
    ids: list[str]
    inputs: list[dict] | Callable[[], list[dict]]
    outputs: list[dict]
    latency_ms: float

    def rows(self) -> Iterator[tuple]:
        """One row of the predictions table per prediction (orjson: 5x faster than the json module here)."""
        inputs = self.inputs() if callable(self.inputs) else self.inputs
        for id_, entry, outputs in zip(self.ids, inputs, self.outputs, strict=True):
            yield (id_, self.request_id, self.ts, self.model, self.version, orjson.dumps(entry).decode(),
                   orjson.dumps(outputs).decode(), self.latency_ms)


@dataclass(frozen=True)
class Retention:
    """Which rows the log keeps: none older than `max_age_seconds`, at most the newest `max_rows` (None: no
    limit). The writer deletes the oldest rows first, in insertion order, at most `batch_rows` per
    transaction and between groups, so a request never waits behind more than one batch; it then hands the
    freed pages back to the file system. Checked every `interval_seconds`, and at once again while rows
    past the limits remain."""

    max_age_seconds: float | None = None
    max_rows: int | None = None
    interval_seconds: float = DEFAULT_RETENTION_INTERVAL_SECONDS
    batch_rows: int = DEFAULT_RETENTION_BATCH_ROWS

    @property
    def enabled(self) -> bool:
        return self.max_age_seconds is not None or self.max_rows is not None


# What the writer thread receives. Requests are woken through their own event loop.
@dataclass(slots=True)
class _Appends:
    """The requests that appended during one turn of an event loop, and their futures (if they wait)."""

    loop: asyncio.AbstractEventLoop
    requests: list[LoggedRequest] = field(default_factory=list)
    waiters: list[asyncio.Future] = field(default_factory=list)
    deadline: asyncio.TimerHandle | None = None  # fails the waiters still waiting after the commit timeout

    @property
    def rows(self) -> int:
        return sum(len(request.ids) for request in self.requests)


@dataclass(slots=True)
class _Feedback:
    loop: asyncio.AbstractEventLoop
    waiter: asyncio.Future
    model: str
    items: list[tuple]  # (prediction id, label) or (prediction id, label, correction)


@dataclass(slots=True)
class _ShadowRows:
    """Rows of shadow predictions, encoded by the scorer thread; nobody waits for their commit."""

    rows: list[tuple]


@dataclass(slots=True)
class _Flush:
    done: Future  # a blocking caller waits on it


@dataclass(slots=True)
class _Resize:
    max_bytes: int | None
    done: Future


_STOP = object()


class PredictionLogError(RuntimeError):
    """The log could not store a request's rows: the request must fail (503) rather than be acknowledged.
    The message is the reason, fit for the client: an SQLite message or a kind of error, never a path."""


class PredictionLogClosed(PredictionLogError):
    """The log no longer accepts writes (the server is shutting down)."""


class PredictionLogBusy(PredictionLogError):
    """More rows wait for the writer than the queue may hold: refused at once, the client retries later."""


class PredictionLogTimeout(PredictionLogError):
    """No commit within the commit timeout: the rows may still be committed, but nobody was told so."""


class PredictionLog:
    """The durable log behind the server: one writer thread, group commits, feedback on the same queue.

    Faults never end a thread: a group that cannot be committed fails its requests with the reason, and
    the writer takes the next group (and, while failing with nothing to write, retries a small commit
    every `retry_interval`), so the log recovers by itself once the cause is gone. `health()` says which."""

    def __init__(self, db_path: str | Path, *, synchronous: str = "NORMAL", wait_for_commit: bool = True,
                 max_batch_rows: int = 4096, checkpoint_interval: float = 1.0,
                 commit_timeout: float = DEFAULT_COMMIT_TIMEOUT_SECONDS, max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS,
                 retry_interval: float = DEFAULT_RETRY_INTERVAL_SECONDS,
                 journal_size_limit: int = DEFAULT_JOURNAL_SIZE_LIMIT_BYTES, max_size_bytes: int | None = None,
                 retention: Retention = Retention(), shared_path: str | Path | None = None):
        self.db_path = Path(db_path)
        # One worker of several: the configured path of the whole log, whose other files feedback searches.
        self.shared_path = Path(shared_path) if shared_path is not None else None
        self.synchronous = synchronous
        self.wait_for_commit = wait_for_commit
        self.max_batch_rows = max_batch_rows
        self.checkpoint_interval = checkpoint_interval
        self.commit_timeout = commit_timeout
        self.max_queue_rows = max_queue_rows
        self.retry_interval = retry_interval
        self.journal_size_limit = journal_size_limit
        self.max_size_bytes = max_size_bytes
        self.retention = retention
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queue_rows = 0  # rows appended and not yet through the writer (bounded by max_queue_rows)
        self._queue_lock = threading.Lock()
        self._turns: dict[asyncio.AbstractEventLoop, _Appends] = {}  # this turn's appends, per loop
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = False
        self._failure: tuple[str, float] | None = None  # (reason, since): the writer's last outcome was a failure
        self._checkpoint_failure: tuple[str, float] | None = None
        self._probe_due = 0.0  # monotonic time of the next probe while failing
        self._retention_due: float | None = 0.0 if retention.enabled else None
        self._sqlite_max_pages: int | None = None  # SQLite's own max_page_count, restored by set_max_size(None)
        self.commits = 0  # groups committed (tests and docs read it to show group commit at work)
        self.failures = 0  # writes that failed (groups, feedback, probes)
        self.checkpoints = 0  # checkpoints that succeeded
        self.deleted = 0  # rows deleted by retention

    def start(self) -> "PredictionLog":
        """Create the file and tables here, so a bad path fails start-up instead of a later request."""
        connection = connect(self.db_path, self.synchronous, journal_size_limit=self.journal_size_limit)
        if connection.execute("PRAGMA auto_vacuum").fetchone()[0] != INCREMENTAL_VACUUM:
            log.warning("prediction log %s was created without incremental vacuum: retention frees pages for "
                        "reuse but never shrinks the file (VACUUM it offline once to change that)", self.db_path)
        connection.close()
        self._writer = threading.Thread(target=self._write_loop, name="prediction-log-writer", daemon=True)
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="prediction-log-checkpointer", daemon=True)
        self._writer.start()
        self._checkpointer.start()
        return self

    async def append(self, request: LoggedRequest) -> None:
        """Log one request's rows; with wait_for_commit, return only once they are committed.

        The requests that append during the same turn of the event loop travel to the writer together,
        at the end of that turn: one hand-over, one wake-up of the writer and, at most, one commit for
        all of them. No timer delays anyone: at low load a turn holds one request, handed over at once.
        Raises PredictionLogBusy at once when the queue is full, PredictionLogTimeout when no commit came
        within the commit timeout (one timer per turn), PredictionLogError when the commit failed."""
        self._check_open()
        self._reserve(len(request.ids))
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = _Appends(loop)
            loop.call_soon(self._hand_over, loop)
            if self.wait_for_commit:
                turn.deadline = loop.call_later(self.commit_timeout, _expire, turn.waiters, self.commit_timeout)
        turn.requests.append(request)
        if self.wait_for_commit:
            waiter = loop.create_future()
            turn.waiters.append(waiter)
            await waiter

    async def add_feedback(self, model: str, items: list[tuple]) -> "StoredLabels":
        """Store true labels for logged predictions of `model`: items are (prediction id, label) or
        (prediction id, label, correction). All or nothing: with an unknown id nothing is stored; with a
        repeated label that is not a correction every label of the request goes into the history as
        refused, and no label that counts changes. The result names the unknown ids and the positions of
        the repeated labels."""
        self._check_open()
        loop = asyncio.get_running_loop()
        job = _Feedback(loop, loop.create_future(), model, items)
        self._queue.put(job)
        try:
            return await asyncio.wait_for(job.waiter, self.commit_timeout)
        except TimeoutError:
            raise PredictionLogTimeout(f"no commit within {self.commit_timeout:g} s") from None

    def append_shadow(self, rows: list[tuple]) -> None:
        """Log shadow predictions (INSERT_SHADOW's columns), from any thread, without waiting: best effort,
        so a full queue raises PredictionLogBusy at once and a failed commit is logged, not raised."""
        self._check_open()
        self._reserve(len(rows))
        self._queue.put(_ShadowRows(rows))

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything queued so far is committed."""
        self._check_open()
        job = _Flush(Future())
        self._queue.put(job)
        job.done.result(timeout)

    def set_max_size(self, max_bytes: int | None, timeout: float | None = None) -> None:
        """Change the cap on the database's size while serving (None: SQLite's own limit), e.g. once disk
        space was freed; the writer applies it before its next group. Blocks until applied."""
        self._check_open()
        job = _Resize(max_bytes, Future())
        self._queue.put(job)
        job.done.result(timeout)

    def health(self) -> dict:
        """What /ready reports: `ok`, or `failing` with the reason and since when (Unix seconds); the rows
        waiting for the writer; the checkpointer's own state (a failing checkpoint loses nothing, but the
        WAL grows until it succeeds again)."""
        failure = self._failure
        if self._writer is not None and not self._writer.is_alive() and not self._closed:
            failure = ("the writer thread has stopped", failure[1] if failure else time.time())
        checkpoint = self._checkpoint_failure
        return {"status": "ok" if failure is None else "failing",
                "reason": failure[0] if failure else None, "failing_since": failure[1] if failure else None,
                "queue_rows": self._queue_rows, "commits": self.commits, "failures": self.failures,
                "checkpoint": "ok" if checkpoint is None else f"failing since {checkpoint[1]:.0f}: {checkpoint[0]}"}

    @property
    def ok(self) -> bool:
        return self.health()["status"] == "ok"

    def close(self, timeout: float | None = None) -> None:
        """Commit everything queued, then stop the writer and fold the WAL into the file (graceful shutdown)."""
        if self._closed or self._writer is None:
            return
        self._closed = True
        for loop in list(self._turns):  # appends of a turn that has not ended yet
            self._hand_over(loop)
        self._queue.put(_STOP)
        self._writer.join(timeout)
        self._stopping.set()
        self._checkpointer.join(timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise PredictionLogClosed("the prediction log is closed")

    def _reserve(self, rows: int) -> None:
        """Count rows into the queue, or refuse them when it is full (a lone large request always fits)."""
        with self._queue_lock:
            waiting = self._queue_rows
            if waiting and waiting + rows > self.max_queue_rows:
                raise PredictionLogBusy(f"queue full: {waiting} rows wait for the writer (limit {self.max_queue_rows})")
            self._queue_rows = waiting + rows

    def _release(self, rows: int) -> None:
        with self._queue_lock:
            self._queue_rows -= rows

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """End of a loop turn: give this turn's appends to the writer as one job."""
        turn = self._turns.pop(loop, None)
        if turn is not None:
            self._queue.put(turn)

    # ----------------------------------------------------------------------------- the writer's threads
    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database file every interval, off the commit path.

        Left to SQLite, the commit that grows the WAL past 1000 pages runs the checkpoint itself, fsync
        included, and every request waiting for that commit waits for the disk (measured: p99.9 of an
        append 24 ms, against 2 ms). A PASSIVE checkpoint from this thread runs beside the writer. A
        failure is logged, reported by health(), and retried at the next interval (on a new connection)."""
        connection = None
        while not self._stopping.wait(self.checkpoint_interval):
            connection = self._checkpoint_step(connection, "PASSIVE")
        _close_quietly(self._checkpoint_step(connection, "TRUNCATE"))  # writer gone: leave an empty WAL

    def _other_files(self) -> list[Path]:
        """The other workers' files of the log (none when this process serves alone)."""
        return [path for path in log_files(self.shared_path) if path != self.db_path] if self.shared_path else []

    def _checkpoint_step(self, connection: sqlite3.Connection | None, mode: str) -> sqlite3.Connection | None:
        try:
            connection = connection or self._open_checkpointer()
            self._checkpoint(connection, mode)
        except Exception as error:  # noqa: BLE001 - any fault: the loop must live on
            if self._checkpoint_failure is None:
                log.error("prediction log: checkpoint failed (the WAL keeps the rows; retried every %g s)",
                          self.checkpoint_interval, exc_info=error)
            self._checkpoint_failure = (_reason(error), time.time())
            return _close_quietly(connection)
        if self._checkpoint_failure is not None:
            log.warning("prediction log: checkpoints succeed again")
            self._checkpoint_failure = None
        return connection

    def _open_checkpointer(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_SECONDS)
        connection.execute(f"PRAGMA journal_size_limit = {int(self.journal_size_limit)}")
        return connection

    def _checkpoint(self, connection: sqlite3.Connection, mode: str) -> None:
        connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        self.checkpoints += 1

    def _write_loop(self) -> None:
        connection, stop = None, False
        while not stop:
            group, rows, stop = self._next_group()
            try:
                connection = self._housekeep(self._serve(connection, group))
            except Exception:  # noqa: BLE001 - a fault in the fault handling itself: the thread must go on
                log.exception("prediction log: writer fault (requests still waiting time out)")
                connection = _close_quietly(connection)
            finally:
                self._release(rows)
        _close_quietly(connection)

    def _next_group(self) -> tuple[list, int, bool]:
        """Block for the first job (or until housekeeping is due), then take whatever else is already
        waiting (up to max_batch_rows)."""
        group, rows = [], 0
        try:
            job = self._queue.get(timeout=self._idle_timeout())
        except queue.Empty:
            return group, rows, False
        while True:
            if job is _STOP:
                return group, rows, True
            group.append(job)
            if isinstance(job, _Appends):
                rows += job.rows
            elif isinstance(job, _ShadowRows):
                rows += len(job.rows)
            if rows >= self.max_batch_rows:
                return group, rows, False
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return group, rows, False

    def _idle_timeout(self) -> float | None:
        """How long the writer may wait for a job: until retention or (while failing) a probe is due."""
        due = [t for t in (self._retention_due, self._probe_due if self._failure else None) if t is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _open(self) -> sqlite3.Connection:
        connection = connect(self.db_path, self.synchronous, autocheckpoint=False,
                             journal_size_limit=self.journal_size_limit)
        connection.execute(PROBE_SCHEMA)
        if self._sqlite_max_pages is None:
            self._sqlite_max_pages = connection.execute("PRAGMA max_page_count").fetchone()[0]
        self._apply_max_size(connection)
        return connection

    def _apply_max_size(self, connection: sqlite3.Connection) -> None:
        """The size cap as SQLite's max_page_count: past it a write fails with "database or disk is full"."""
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = self._sqlite_max_pages if self.max_size_bytes is None else max(1, self.max_size_bytes // page_size)
        connection.execute(f"PRAGMA max_page_count = {pages}")

    def _serve(self, connection: sqlite3.Connection | None, group: list) -> sqlite3.Connection | None:
        """Commit the group, or probe while failing with nothing to write. Any fault fails the group's
        requests that are still waiting and drops the connection (reopened next time); never the thread."""
        try:
            connection = connection or self._open()
            if group:
                self._commit(connection, group)
            elif self._failure is not None and time.monotonic() >= self._probe_due:
                self._probe(connection)
        except Exception as error:  # noqa: BLE001 - a fault outside a transaction (opening, a bug)
            _fail_group(group, self._failed(error))
            return _close_quietly(connection)
        return connection

    def _commit(self, connection: sqlite3.Connection, group: list) -> None:
        """One transaction for all predictions of the group; feedback and the other jobs after it, in order.
        Every waiting request of the group is settled: committed, or failed with the reason."""
        settlement = _Settlement()
        appends = [job for job in group if isinstance(job, _Appends)]
        if appends:
            self._commit_appends(connection, appends, settlement)
        for job in group:
            if isinstance(job, _Feedback):
                try:
                    settlement.succeed(job.loop, job.waiter, _store_feedback(connection, job.model, job.items,
                                                                               self._other_files()))
                except Exception as error:  # noqa: BLE001
                    settlement.fail(job.loop, job.waiter, self._failed(error))
            elif isinstance(job, _Resize):
                self.max_size_bytes = job.max_bytes
                self._apply_max_size(connection)
                job.done.set_result(None)
            elif isinstance(job, _Flush):
                job.done.set_result(None)
            elif isinstance(job, _ShadowRows):
                self._commit_shadow(connection, job.rows)
        settlement.wake()

    def _commit_shadow(self, connection: sqlite3.Connection, rows: list[tuple]) -> None:
        """Shadow rows in their own transaction: their failure is logged and fails no request."""
        try:
            with connection:
                connection.executemany(INSERT_SHADOW, rows)
        except Exception as error:  # noqa: BLE001
            _rollback_quietly(connection)
            self._failed(error)

    def _commit_appends(self, connection: sqlite3.Connection, appends: list[_Appends], settlement: "_Settlement") -> None:
        """Encode each request's rows (a request whose rows cannot be made fails alone), then commit them
        all in one transaction: all of them are acknowledged, or none."""
        rows, pending = [], []
        for job in appends:
            settlement.cancel(job.loop, job.deadline)
            for request, waiter in itertools.zip_longest(job.requests, job.waiters):
                try:
                    encoded = list(request.rows())
                except Exception as error:  # noqa: BLE001 - this request's entries, not the log, are at fault
                    log.exception("prediction log: could not encode the rows of request %s", request.request_id)
                    settlement.fail(job.loop, waiter, f"could not encode the request's rows ({type(error).__name__})")
                    continue
                rows.extend(encoded)
                pending.append((job.loop, waiter))
        if not rows:
            return
        try:
            with connection:
                _insert(connection, rows)
        except Exception as error:  # noqa: BLE001 - the requests fail: an unlogged prediction is not acknowledged
            _rollback_quietly(connection)
            reason = self._failed(error)
            for loop, waiter in pending:
                settlement.fail(loop, waiter, reason)
            return
        self.commits += 1
        self._recovered()
        for loop, waiter in pending:
            settlement.succeed(loop, waiter, None)

    def _probe(self, connection: sqlite3.Connection) -> None:
        """While failing with no request to retry on: commit a small blob (and drop it in the same
        transaction), so the log, and /ready, recover by themselves once there is room again."""
        self._probe_due = time.monotonic() + self.retry_interval
        try:
            with connection:
                connection.execute(PROBE[0], (PROBE_BYTES,))
                connection.execute(PROBE[1])
        except Exception as error:  # noqa: BLE001
            _rollback_quietly(connection)
            self._failed(error)
            return
        self._recovered()

    def _failed(self, error: BaseException) -> str:
        """Record a failed write (logged once per distinct reason, not once per group); returns the reason."""
        reason = _reason(error)
        if self._failure is None or self._failure[0] != reason:
            log.error("prediction log: writes fail: %s (requests answer 503; retrying)", reason, exc_info=error)
            self._failure = (reason, time.time())
        self.failures += 1
        self._probe_due = time.monotonic() + self.retry_interval
        return reason

    def _recovered(self) -> None:
        if self._failure is not None:
            log.warning("prediction log: writes succeed again after %.1f s of %r",
                        time.time() - self._failure[1], self._failure[0])
            self._failure = None

    # ----------------------------------------------------------------------------------- retention
    def _housekeep(self, connection: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Retention, when due: one batch of deletions between two groups."""
        if connection is None or self._retention_due is None or time.monotonic() < self._retention_due:
            return connection
        try:
            deleted = self._retain(connection)
        except Exception:  # noqa: BLE001 - retried at the next interval; requests are not affected
            _rollback_quietly(connection)
            log.exception("prediction log: retention failed (retried in %g s)", self.retention.interval_seconds)
            deleted = 0
        more = deleted >= self.retention.batch_rows
        self._retention_due = time.monotonic() + (0.0 if more else self.retention.interval_seconds)
        return connection

    def _retain(self, connection: sqlite3.Connection) -> int:
        """Delete one batch of the oldest rows past the limits (their feedback too), then give the freed
        pages back to the file system. Returns the rows deleted."""
        upto = _retention_upto(connection, self.retention, time.time())
        if upto is None:
            return 0
        with connection:
            connection.execute(DELETE_FEEDBACK_UPTO, (upto,))
            connection.execute(DELETE_FEEDBACK_HISTORY_UPTO, (upto,))
            deleted = connection.execute(DELETE_PREDICTIONS_UPTO, (upto,)).rowcount
        connection.execute("PRAGMA incremental_vacuum").fetchall()  # one page per step: run it to the end
        self.deleted += deleted
        return deleted


def _retention_upto(connection: sqlite3.Connection, retention: Retention, now: float) -> int | None:
    """The rowid up to which the oldest rows go: the longest run of rows from the oldest that are too old
    or beyond the newest max_rows, at most one batch; None when the oldest row may stay."""
    oldest = connection.execute(OLDEST_ROWS, (retention.batch_rows,)).fetchall()
    if not oldest:
        return None
    cutoff = now - retention.max_age_seconds if retention.max_age_seconds is not None else float("-inf")
    first_kept = float("-inf")
    if retention.max_rows is not None:
        first_kept = connection.execute(NEWEST_ROWID).fetchone()[0] - retention.max_rows + 1
    upto = None
    for rowid, ts in oldest:
        if rowid >= first_kept and ts >= cutoff:
            break
        upto = rowid
    return upto


class _Settlement:
    """What a group's outcome tells each event loop: one wake-up per loop for the whole group."""

    def __init__(self):
        self.outcomes: dict[asyncio.AbstractEventLoop, list] = {}
        self.deadlines: dict[asyncio.AbstractEventLoop, list] = {}
        self.lost: list[str] = []  # reasons of requests that failed with nobody waiting

    def succeed(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future | None, result: object) -> None:
        if waiter is not None:
            self.outcomes.setdefault(loop, []).append((waiter, result, None))

    def fail(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future | None, reason: str) -> None:
        if waiter is not None:
            self.outcomes.setdefault(loop, []).append((waiter, None, reason))
        else:  # nobody waits (wait_for_commit off): the server log says what was lost
            self.lost.append(reason)

    def cancel(self, loop: asyncio.AbstractEventLoop, deadline: asyncio.TimerHandle | None) -> None:
        if deadline is not None:
            self.deadlines.setdefault(loop, []).append(deadline)

    def wake(self) -> None:
        if self.lost:
            log.error("prediction log: rows of %d requests lost (nobody waited): %s", len(self.lost), self.lost[0])
        for loop in self.outcomes.keys() | self.deadlines.keys():
            try:
                loop.call_soon_threadsafe(_settle, self.outcomes.get(loop, []), self.deadlines.get(loop, []))
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _fail_group(group: list, reason: str) -> None:
    """A fault outside the group's transaction: fail whatever of it still waits."""
    settlement = _Settlement()
    for job in group:
        if isinstance(job, _Appends):
            settlement.cancel(job.loop, job.deadline)
            for waiter in job.waiters:
                settlement.fail(job.loop, waiter, reason)
        elif isinstance(job, _Feedback):
            settlement.fail(job.loop, job.waiter, reason)
        elif isinstance(job, _ShadowRows):
            continue  # best effort: the failure is already logged
        elif not job.done.done():
            job.done.set_exception(PredictionLogError(reason))
    settlement.wake()


def _reason(error: BaseException) -> str:
    """A failure as a client may read it: SQLite's own message ("database or disk is full"), else the kind
    of error only (an OSError's text can hold a path; the server log has the details)."""
    if isinstance(error, sqlite3.Error):
        return str(error)
    return f"writer error ({type(error).__name__})"


def _close_quietly(connection: sqlite3.Connection | None) -> None:
    """Close, ignoring errors (the connection may be what failed); returns None, the connection to use next."""
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.close()
    return None


def _rollback_quietly(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        with contextlib.suppress(Exception):
            connection.rollback()


def _insert(connection: sqlite3.Connection, rows: list[tuple]) -> None:
    whole = len(rows) - len(rows) % ROWS_PER_STATEMENT
    for start in range(0, whole, ROWS_PER_STATEMENT):
        connection.execute(INSERT_PREDICTIONS, [value for row in rows[start:start + ROWS_PER_STATEMENT] for value in row])
    connection.executemany(INSERT_PREDICTION, rows[whole:])


def _expire(waiters: list[asyncio.Future], timeout: float) -> None:
    """Runs in the event loop when a turn's commit timeout passes: fail its requests still waiting."""
    for future in waiters:
        if not future.done():
            future.set_exception(PredictionLogTimeout(f"no commit within {timeout:g} s"))


def _settle(outcomes: list[tuple[asyncio.Future, object, str | None]], deadlines: list[asyncio.TimerHandle]) -> None:
    """Runs in the event loop: set each waiting request's future, and drop the turns' timeout timers."""
    for deadline in deadlines:
        deadline.cancel()
    for future, result, reason in outcomes:
        if not future.done():  # a request cancelled meanwhile (client gone), or timed out, has no one to tell
            future.set_exception(PredictionLogError(reason)) if reason is not None else future.set_result(result)


@dataclass(frozen=True)
class StoredLabels:
    """What became of one feedback request: ids the model never predicted, and the positions of items
    refused for a prediction that already has a label (posted without `correction`); both empty: every
    label stored."""

    unknown: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)

    @property
    def stored(self) -> bool:
        return not self.unknown and not self.refused


def _store_feedback(connection: sqlite3.Connection, model: str, items: list[tuple],
                    others: list[Path] = ()) -> StoredLabels:
    """Labels go into the file that holds their prediction: this process's own, else one of `others` (the
    other workers' files), so each file's predictions and labels join there."""
    labels = [(item[0], item[1], bool(item[2]) if len(item) > 2 else False) for item in items]
    ids = [id_ for id_, _, _ in labels]
    with contextlib.ExitStack() as opened:
        holders = _holders(connection, model, ids, others, opened)
        unknown = [id_ for id_ in ids if id_ not in holders]
        if unknown:
            return StoredLabels(unknown=unknown)
        files = list(dict.fromkeys(holders.values()))
        labelled = set().union(*(_existing(held, "SELECT prediction_id FROM feedback WHERE prediction_id IN ({marks})",
                                           [id_ for id_ in ids if holders[id_] is held]) for held in files))
        outcomes = _label_outcomes(labels, labelled)
        refused = [index for index, outcome in enumerate(outcomes) if outcome == REFUSED]
        now = time.time()
        history = [(id_, label, now, REFUSED if refused else outcome) for (id_, label, _), outcome in zip(labels, outcomes)]
        for held in files:
            with held:
                held.executemany(INSERT_LABEL_HISTORY, [row for row in history if holders[row[0]] is held])
                if not refused:
                    held.executemany(SET_LABEL, [(id_, label, now) for id_, label, _ in labels if holders[id_] is held])
    return StoredLabels(refused=refused)


def _holders(connection: sqlite3.Connection, model: str, ids: list[str], others: list[Path],
             opened: contextlib.ExitStack) -> dict[str, sqlite3.Connection]:
    """The connection to the file holding each known id: the own file first, then (only for ids it lacks,
    which a single process never has to look for) the other workers' files, opened into `opened`."""
    query = "SELECT id FROM predictions WHERE model = ? AND id IN ({marks})"
    holders = dict.fromkeys(_existing(connection, query, ids, [model]), connection)
    for path in others:
        missing = [id_ for id_ in ids if id_ not in holders]
        if not missing:
            break
        other = opened.enter_context(contextlib.closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)))
        holders |= dict.fromkeys(_existing(other, query, missing, [model]), other)
    return holders


def _label_outcomes(labels: list[tuple[str, str, bool]], labelled: set[str]) -> list[str]:
    """first / correction / refused for each label, in order: a second label for an id (already labelled,
    or earlier in the same request) counts only as an explicit correction."""
    seen, outcomes = set(labelled), []
    for id_, _, correction in labels:
        outcomes.append(CORRECTION if correction else REFUSED if id_ in seen else FIRST)
        seen.add(id_)
    return outcomes


def _existing(connection: sqlite3.Connection, query: str, ids: list[str], params: list | None = None) -> set[str]:
    """Which of `ids` the query (with `{marks}` for the id list) finds, in chunks of bound parameters."""
    found: set[str] = set()
    for start in range(0, len(ids), SQLITE_MAX_VARIABLES):
        chunk = ids[start:start + SQLITE_MAX_VARIABLES]
        rows = connection.execute(query.format(marks=", ".join("?" * len(chunk))), [*(params or []), *chunk])
        found.update(row[0] for row in rows)
    return found
