"""Two uvicorn workers as a real `python -m serving` process: one log read as one (monitoring's window, and
feedback answered by whichever worker gets it), /metrics summed over workers, a reload every worker
confirms, and kill -9 of one worker under load losing nothing acknowledged while the server answers on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.window import WindowSpec, read_records
from serving.predlog import log_files, read_predictions
from tests.live_server import START_TIMEOUT_SECONDS, free_port, wait_ready
from tests.serving.conftest import ADMIN_KEY, FEEDBACK, FEEDBACK_KEY, REPO, make_config, write_config

WORKERS = 2
CLIENTS = 8  # concurrent connections: the kernel hands them to both workers
LOAD_SECONDS = 2.0
LOAD_ROUNDS = 5  # at most, for both workers to answer
FEEDBACK_CHUNK = 50  # ids per feedback post: consecutive ids come from both workers' files


class Server:
    def __init__(self, process: subprocess.Popen, url: str, port: int, state: Path):
        self.process, self.url, self.port, self.state = process, url, port, state

    @property
    def db(self) -> Path:
        return self.state / "predictions.db"

    def worker_pids(self) -> dict[int, int]:
        """slot -> pid, from the confirmations the workers write in the supervisor's run folder."""
        found = {}
        for path in self.state.glob("tmp/serving-run-*/confirmed-*.json"):
            found[int(path.stem.rsplit("-", 1)[1])] = json.loads(path.read_text())["pid"]
        return found


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_root):
    state = tmp_path_factory.mktemp("workers")
    (state / "tmp").mkdir()
    churn = [model for model in make_config(state).model_dump()["models"] if model["name"] == "churn"]
    config = write_config(make_config(state, models=churn, server={"workers": WORKERS, "reload_poll_seconds": 0.2}),
                          state / "serving.yaml")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREDICTION_LOG": str(state / "predictions.db"),
           "SERVING_BUNDLES": str(bundle_root), "SERVING_ADMIN_KEY": ADMIN_KEY, "SERVING_FEEDBACK_KEY": FEEDBACK_KEY,
           "TMPDIR": str(state / "tmp"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "serving", "--config", str(config), "--port", str(port)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        served = Server(process, f"http://127.0.0.1:{port}", port, state)
        wait_for(lambda: len(served.worker_pids()) == WORKERS, "both workers up")
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=START_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for(condition, what: str, seconds: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def load(url: str, body: list[dict], seconds: float, during=None,
         new_connections: bool = False) -> tuple[list[str], list[int]]:
    """CLIENTS connections predicting back to back for `seconds` (`during()` runs in a thread after a
    third of it): every acknowledged prediction id, and every status (0: no HTTP answer).
    `new_connections`: a new connection for every request, so that the kernel hands connections to both
    workers many times over (eight kept-alive connections may all land on one worker)."""
    ids: list[str] = []
    statuses: list[int] = []
    headers = {"Connection": "close"} if new_connections else {}

    async def client(until: float) -> None:
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1)) as http:
            while time.monotonic() < until:
                try:
                    answer = await http.post("/v1/churn/predict", json=body, headers=headers)
                except httpx.TransportError:
                    statuses.append(0)
                    continue
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    ids.extend(p["id"] for p in answer.json()["predictions"])

    async def run() -> None:
        until = time.monotonic() + seconds
        tasks = [asyncio.create_task(client(until)) for _ in range(CLIENTS)]
        if during is not None:
            await asyncio.sleep(seconds / 3)
            await asyncio.to_thread(during)
        await asyncio.gather(*tasks)

    asyncio.run(run())
    return ids, statuses


def test_both_workers_write_one_log_that_monitoring_reads(server, example_records):
    ids, statuses = [], []
    for _ in range(LOAD_ROUNDS):  # until both workers have answered: which worker accepts is the kernel's choice
        round_ids, round_statuses = load(server.url, example_records[:2], LOAD_SECONDS, new_connections=True)
        ids, statuses = ids + round_ids, statuses + round_statuses
        files = log_files(server.db)
        if len(files) == WORKERS and all(read_predictions(path, "churn") for path in files):
            break
    assert statuses and set(statuses) == {200}
    per_worker = [len(read_predictions(path, "churn")) for path in log_files(server.db)]
    assert [path.name for path in log_files(server.db)] == ["predictions.w0.db", "predictions.w1.db"]
    assert all(rows > 0 for rows in per_worker), per_worker  # both workers answered
    window = read_records(server.db, "churn", WindowSpec(last_n=len(ids) + 100))
    assert sorted(row["id"] for row in window) == sorted(ids)
    assert [row["ts"] for row in window] == sorted(row["ts"] for row in window)  # one log, in time order
    assert [row["id"] for row in read_predictions(server.db, "churn", last_n=5)] == [row["id"] for row in window[-5:]]


def test_feedback_finds_its_prediction_in_any_workers_file(server):
    ids = [row["id"] for row in read_predictions(server.db, "churn")]
    with httpx.Client(base_url=server.url, headers=FEEDBACK) as http:
        for start in range(0, len(ids), FEEDBACK_CHUNK):  # new connections: the posts land on both workers
            items = [{"id": id_, "label": "Yes"} for id_ in ids[start:start + FEEDBACK_CHUNK]]
            answer = http.post("/v1/churn/feedback", json={"items": items}, headers={"Connection": "close"})
            assert answer.status_code == 200, answer.text
        repeated = http.post("/v1/churn/feedback", json={"items": [{"id": ids[0], "label": "No"}]})
        assert repeated.status_code == 409  # the first label counts, whichever worker took it
        unknown = http.post("/v1/churn/feedback", json={"items": [{"id": "0" * 32, "label": "No"}]})
        assert unknown.status_code == 422
    assert len(read_predictions(server.db, "churn", labelled=True)) == len(ids)


def test_metrics_sum_every_worker_and_reload_reaches_both(server):
    logged = len(read_predictions(server.db, "churn")) // 2  # two records a request
    with httpx.Client(base_url=server.url) as http:
        text = http.get("/metrics").text
        reloaded = http.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY})
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(text) for sample in family.samples}
    key = ("serving_requests_total", (("method", "POST"), ("route", "/v1/churn/predict"), ("status", "200")))
    assert samples[key] == logged  # both workers' requests, summed
    assert reloaded.status_code == 200, reloaded.text
    workers = reloaded.json()["workers"]
    assert (workers["workers"], workers["confirmed"], workers["pending"]) == (WORKERS, WORKERS, [])


def test_kill_9_one_worker_under_load_loses_nothing_acknowledged(server, example_records):
    before = set(server.worker_pids().values())
    victim = server.worker_pids()[0]
    ids, statuses = load(server.url, example_records[:2], 3 * LOAD_SECONDS,
                         during=lambda: os.kill(victim, signal.SIGKILL))
    after_kill = statuses[len(statuses) // 2:]
    assert after_kill.count(200) > len(after_kill) // 2  # the other worker (and the new one) kept answering
    logged = {row["id"] for row in read_predictions(server.db, "churn")}
    assert set(ids) <= logged  # every acknowledged prediction is in the log
    wait_for(lambda: len(server.worker_pids()) == WORKERS and victim not in server.worker_pids().values(),
             "uvicorn to start a new worker in the dead one's slot")
    assert len(set(server.worker_pids().values()) - before) == 1
    assert server.process.poll() is None
