"""The prediction log on its own: durable appends, group commit, windows, feedback, restart."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from serving.predlog import (LoggedRequest, PredictionLog, PredictionLogClosed, PredictionLogError, StoredLabels,
                             read_label_history, read_predictions)


def logged(request_id: str, ts: float, n: int = 1, model: str = "churn", version: str = "1") -> LoggedRequest:
    return LoggedRequest(
        request_id=request_id, ts=ts, model=model, version=version,
        ids=[f"{request_id}-{i}" for i in range(n)], inputs=[{"tenure": float(i)} for i in range(n)],
        outputs=[{"label": "Yes", "probability": 0.5 + i / 100} for i in range(n)], latency_ms=1.0,
    )


async def append_all(log: PredictionLog, requests: list[LoggedRequest]) -> None:
    await asyncio.gather(*(log.append(request) for request in requests))


@pytest.fixture
def db(tmp_path):
    return tmp_path / "log" / "predictions.db"


def test_appends_are_committed_before_append_returns(db):
    log = PredictionLog(db).start()
    asyncio.run(append_all(log, [logged("r1", 10.0, n=3)]))
    rows = read_predictions(db, "churn")  # no flush, no close: the await promised the commit
    log.close()
    assert [row["id"] for row in rows] == ["r1-0", "r1-1", "r1-2"]
    assert rows[0] == {"id": "r1-0", "request_id": "r1", "ts": 10.0, "model": "churn", "version": "1",
                       "inputs": {"tenure": 0.0}, "outputs": {"label": "Yes", "probability": 0.5}, "label": None}


def test_concurrent_requests_share_commits(db):
    log = PredictionLog(db).start()
    asyncio.run(append_all(log, [logged(f"r{i}", float(i)) for i in range(300)]))
    log.close()
    assert len(read_predictions(db, "churn")) == 300
    assert log.commits < 300  # group commit: many requests per transaction


def test_windows_by_time_and_count_and_model(db):
    log = PredictionLog(db).start()
    asyncio.run(append_all(log, [logged(f"r{i}", float(i)) for i in range(10)] + [logged("other", 5.0, model="vision")]))
    log.close()
    assert [r["ts"] for r in read_predictions(db, "churn", start_ts=3, end_ts=6)] == [3.0, 4.0, 5.0]
    assert [r["ts"] for r in read_predictions(db, "churn", last_n=3)] == [7.0, 8.0, 9.0]
    assert [r["ts"] for r in read_predictions(db, "churn", end_ts=5, last_n=2)] == [3.0, 4.0]
    assert [r["request_id"] for r in read_predictions(db, "vision")] == ["other"]


def test_missing_log_reads_empty(tmp_path):
    assert read_predictions(tmp_path / "nothing.db", "churn") == []
    assert not (tmp_path / "nothing.db").exists()


def test_feedback_joins_labels_and_rejects_unknown_ids(db):
    log = PredictionLog(db).start()

    async def scenario():
        await log.append(logged("r1", 1.0, n=2))
        unknown = await log.add_feedback("churn", [("r1-0", "Yes"), ("nope", "No")])
        assert unknown == StoredLabels(unknown=["nope"])  # nothing stored when any id is unknown
        assert (await log.add_feedback("vision", [("r1-0", "Yes")])).unknown == ["r1-0"]  # ids belong to a model
        assert (await log.add_feedback("churn", [("r1-0", "Yes")])).stored

    asyncio.run(scenario())
    log.close()
    assert [row["label"] for row in read_predictions(db, "churn")] == ["Yes", None]
    assert read_label_history(db, "nope") == []


def test_the_first_label_counts_and_every_label_is_kept(db):
    """A repeated label cannot overwrite the first (it was a silent upsert: the last label won); only an
    explicit correction replaces it, and the history keeps all of them, refused ones included."""
    log = PredictionLog(db).start()

    async def scenario():
        await log.append(logged("r1", 1.0, n=3))
        assert (await log.add_feedback("churn", [("r1-0", "Yes"), ("r1-1", "No")])).stored
        repeated = await log.add_feedback("churn", [("r1-2", "Yes"), ("r1-0", "No"), ("r1-2", "No")])
        assert repeated == StoredLabels(refused=[1, 2])  # r1-0 had a label; r1-2 got two in one request
        assert (await log.add_feedback("churn", [("r1-1", "Yes", True)])).stored  # an explicit correction

    asyncio.run(scenario())
    log.close()
    assert [row["label"] for row in read_predictions(db, "churn")] == ["Yes", "Yes", None]  # r1-2: nothing stored
    assert [row["label"] for row in read_predictions(db, "churn", labelled=True)] == ["Yes", "Yes"]
    history = {id_: [(h["label"], h["outcome"]) for h in read_label_history(db, id_)] for id_ in ("r1-0", "r1-1", "r1-2")}
    assert history == {"r1-0": [("Yes", "first"), ("No", "refused")], "r1-1": [("No", "first"), ("Yes", "correction")],
                       "r1-2": [("Yes", "refused"), ("No", "refused")]}  # the whole request was refused
    assert all(h["ts"] > 0 for h in read_label_history(db, "r1-1"))


def test_log_survives_restart_and_is_wal(db):
    log = PredictionLog(db).start()
    asyncio.run(append_all(log, [logged("before", 1.0)]))
    log.close()
    log = PredictionLog(db).start()
    asyncio.run(append_all(log, [logged("after", 2.0)]))
    log.close()
    assert [row["request_id"] for row in read_predictions(db, "churn")] == ["before", "after"]
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_close_commits_queued_rows_without_waiting_requests(db):
    log = PredictionLog(db, wait_for_commit=False).start()
    asyncio.run(append_all(log, [logged(f"r{i}", float(i)) for i in range(50)]))
    log.close()  # graceful shutdown: everything queued is committed
    assert len(read_predictions(db, "churn")) == 50
    with pytest.raises(PredictionLogClosed):
        asyncio.run(log.append(logged("late", 99.0)))


def test_failed_commit_fails_the_request(db):
    log = PredictionLog(db).start()
    asyncio.run(log.append(logged("dup", 1.0)))
    with pytest.raises(PredictionLogError, match="UNIQUE constraint failed"):  # same prediction id twice
        asyncio.run(log.append(logged("dup", 2.0)))
    log.close()


def test_large_requests_keep_their_row_order(db):
    log = PredictionLog(db).start()
    asyncio.run(append_all(log, [logged("big", 1.0, n=150), logged("small", 2.0, n=3)]))
    log.close()
    assert [row["id"] for row in read_predictions(db, "churn")] == [f"big-{i}" for i in range(150)] + [
        f"small-{i}" for i in range(3)]
