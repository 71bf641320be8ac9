"""The prediction log under faults: a full disk, a failing writer step, a failing checkpoint, a stuck
writer, a full queue; retention and bounded strings. Real SQLite throughout: the disk is "full" through
SQLite's own max_page_count (the log's `max_size_bytes`), and the only injected faults are one raising
call of `log_inputs`, of a checkpoint, and an entry-making call that blocks."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serving.adapter import Adapter
from serving.app import create_app
from serving.predlog import (INCREMENTAL_VACUUM, LoggedRequest, PredictionLog, PredictionLogBusy, PredictionLogError,
                             PredictionLogTimeout, Retention, read_predictions)
from serving.schemas import PREDICTION_ID_MAX_LENGTH, feedback_request
from tests.serving.conftest import make_config
from tests.serving.test_predlog import logged

SMALL_LOG_BYTES = 80 * 1024  # 20 pages of 4 KiB: the tables (shadow_predictions too) take about half, a few requests the rest
FAST_RETRY_SECONDS = 0.05
WAIT_SECONDS = 10  # how long a test waits for a background thread to get somewhere


def eventually(check, timeout: float = WAIT_SECONDS):
    """Poll `check` until it returns something truthy (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.02)
    pytest.fail(f"not reached within {timeout} s: {check.__doc__ or check}")


@pytest.fixture
def db(tmp_path):
    return tmp_path / "log" / "predictions.db"


def served(tmp_path, bundle_root, **prediction_log) -> TestClient:
    config = make_config(tmp_path, source={"kind": "bundles", "bundle_root": str(bundle_root)},
                         prediction_log=prediction_log)
    return TestClient(create_app(config))


def ids_of(answers) -> set[str]:
    return {p["id"] for answer in answers for p in answer.json()["predictions"]}


# ------------------------------------------------------------------------------------------- disk full
def test_a_full_disk_answers_503_naming_it_loses_nothing_acknowledged_and_recovers_by_itself(
        tmp_path, bundle_root, example_records):
    with served(tmp_path, bundle_root, max_size_bytes=SMALL_LOG_BYTES, retry_interval_seconds=FAST_RETRY_SECONDS) as client:
        log = client.app.state.services.predlog
        answers = []
        while not answers or answers[-1].status_code == 200:
            answers.append(client.post("/v1/churn/predict", json=example_records[:20]))
            assert len(answers) < 100, "the small log never filled up"
        refused = answers[-1]
        assert {a.status_code for a in answers[:-1]} == {200}
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert refused.json()["detail"] == "prediction log unavailable: database or disk is full"
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["reasons"]["prediction_log"] == "database or disk is full"
        assert client.post("/v1/churn/predict", json=example_records[:20]).status_code == 503  # still full

        log.set_max_size(None)  # space returns: no request needed, the writer's probe notices
        eventually(lambda: client.get("/ready").status_code == 200)
        assert client.get("/ready").json()["prediction_log"]["status"] == "ok"
        after = client.post("/v1/churn/predict", json=example_records[:20])
        assert after.status_code == 200
    acknowledged = ids_of([*answers[:-1], after])
    logged_ids = {row["id"] for row in read_predictions(tmp_path / "predictions.db", "churn")}
    assert logged_ids == acknowledged  # every 200 is there, none of the refused rows


# ------------------------------------------------------------------------------------ writer faults
def test_a_writer_failure_in_log_inputs_fails_that_request_and_the_next_succeed(
        tmp_path, bundle_root, example_records, monkeypatch):
    """log_inputs runs in the writer thread; a non-SQLite exception there fails its request with 503 and
    leaves the writer serving."""
    original, calls = Adapter.log_inputs, []

    def fails_once(self, records):
        calls.append(len(records))
        if len(calls) == 1:
            raise RuntimeError("injected")
        return original(self, records)

    monkeypatch.setattr(Adapter, "log_inputs", fails_once)
    with served(tmp_path, bundle_root) as client:
        failed = client.post("/v1/churn/predict", json=example_records[:3])
        later = [client.post("/v1/churn/predict", json=example_records[i:i + 2]) for i in range(0, 10, 2)]
        ready = client.get("/ready")
    assert failed.status_code == 503 and failed.headers["Retry-After"]
    assert failed.json()["detail"] == "prediction log unavailable: could not encode the request's rows (RuntimeError)"
    assert [a.status_code for a in later] == [200] * 5
    assert ready.status_code == 200 and ready.json()["prediction_log"]["status"] == "ok"
    assert {row["id"] for row in read_predictions(tmp_path / "predictions.db", "churn")} == ids_of(later)


def test_the_checkpoint_loop_survives_an_error(db, monkeypatch):
    original, failed = PredictionLog._checkpoint, threading.Event()

    def fails_once(self, connection, mode):
        if not failed.is_set():
            failed.set()
            raise OSError("injected")
        return original(self, connection, mode)

    monkeypatch.setattr(PredictionLog, "_checkpoint", fails_once)
    log = PredictionLog(db, checkpoint_interval=0.01).start()
    try:
        assert failed.wait(WAIT_SECONDS)
        asyncio.run(log.append(logged("r1", 1.0)))
        eventually(lambda: log.checkpoints >= 2 and log.health()["checkpoint"] == "ok")
        assert log._checkpointer.is_alive()
    finally:
        log.close()
    assert sqlite3.connect(db).execute("SELECT count(*) FROM predictions").fetchone()[0] == 1


def blocking(request: LoggedRequest, release: threading.Event) -> LoggedRequest:
    """The request with entries that the writer can only make once `release` is set: a stuck writer."""
    entries = request.inputs
    return dataclasses.replace(request, inputs=lambda: release.wait(WAIT_SECONDS) and entries)


def test_a_stuck_writer_times_requests_out_and_a_full_queue_refuses_at_once(db):
    release = threading.Event()
    log = PredictionLog(db, commit_timeout=0.3, max_queue_rows=10).start()

    async def scenario():
        stuck = asyncio.ensure_future(log.append(blocking(logged("stuck", 1.0, n=4), release)))
        await asyncio.sleep(0.05)  # the writer holds it now
        queued = asyncio.ensure_future(log.append(logged("queued", 2.0, n=6)))  # 10 rows wait: the limit
        await asyncio.sleep(0)
        started = time.perf_counter()
        with pytest.raises(PredictionLogBusy, match="queue full: 10 rows wait"):
            await log.append(logged("refused", 3.0))
        assert time.perf_counter() - started < 0.05  # at once, not after a wait
        for waiting in (stuck, queued):
            with pytest.raises(PredictionLogTimeout, match="no commit within 0.3 s"):
                await waiting
        release.set()
        await asyncio.to_thread(log.flush, WAIT_SECONDS)  # the writer goes on: the queue drains
        await log.append(logged("after", 4.0))

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        log.close()
    # The two timed-out requests were committed after all, unacknowledged: like a request in flight at a
    # crash, that is allowed; losing an acknowledged one is not.
    assert [row["request_id"] for row in read_predictions(db, "churn")] == ["stuck"] * 4 + ["queued"] * 6 + ["after"]


# ------------------------------------------------------------------------------------------ retention
def test_retention_deletes_the_oldest_rows_past_age_and_count_and_frees_their_pages(db):
    now = time.time()
    log = PredictionLog(db, retention=Retention(max_age_seconds=3600, max_rows=100, interval_seconds=0.02,
                                                batch_rows=30)).start()
    try:
        asyncio.run(log.append(logged("old", now - 7200, n=50)))
        asyncio.run(log.append(logged("new", now, n=150)))
        eventually(lambda: len(read_predictions(db, "churn")) == 100)
    finally:
        log.close()
    kept = read_predictions(db, "churn")
    assert [row["id"] for row in kept] == [f"new-{i}" for i in range(50, 150)]  # the newest 100, none old
    assert log.deleted == 100
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL_VACUUM
    assert connection.execute("PRAGMA freelist_count").fetchone()[0] == 0  # freed pages went back to the disk


# -------------------------------------------------------------------------------------- bounded strings
def test_over_long_strings_are_refused_at_the_boundary_naming_the_field(tmp_path, bundle_root, example_records):
    with served(tmp_path, bundle_root) as client:
        record = example_records[0] | {"customerID": "x" * 65}  # the contract's id_max_length: 64
        answer = client.post("/v1/churn/predict", json=[record])
    assert answer.status_code == 422
    assert [error["loc"] for error in answer.json()["detail"]] == [["body", 0, "customerID"]]
    assert read_predictions(tmp_path / "predictions.db", "churn") == []
    with pytest.raises(ValidationError) as refused:
        feedback_request(10).model_validate({"items": [{"id": "p" * (PREDICTION_ID_MAX_LENGTH + 1), "label": "Yes"}]})
    assert [error["loc"] for error in refused.value.errors()] == [("items", 0, "id")]


def test_a_failed_group_leaves_the_log_failing_until_a_commit_succeeds(db):
    """health() follows the writer's last outcome: failing with SQLite's reason, ok after a good commit."""
    log = PredictionLog(db, retry_interval=FAST_RETRY_SECONDS).start()
    try:
        asyncio.run(log.append(logged("dup", 1.0)))
        with pytest.raises(PredictionLogError, match="UNIQUE constraint failed"):
            asyncio.run(log.append(logged("dup", 2.0)))
        # the probe commits by itself while idle: the log heals without traffic
        eventually(lambda: log.ok)
        asyncio.run(log.append(logged("fine", 3.0)))
        assert log.health()["failures"] == 1
    finally:
        log.close()
