"""Dynamic micro-batching (serving/batcher.py) on the real toy models: concurrent requests share one
onnxruntime call, each gets exactly its own answers back in order, a bad request fails alone, shutdown
drains, and with batching off nothing changes. Batches close by size (`max_records`) in these tests, never
by the clock, so no outcome depends on timing."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest

from modelpkg.codecs.image import ImageRecord
from serving.app import create_app
from serving.batcher import MicroBatcher
from serving.models import LoadedModel, load_model
from serving.predlog import read_predictions
from serving.sources import BundleSource
from tests.live_server import START_TIMEOUT_SECONDS, free_port, wait_ready
from tests.serving.conftest import REPO, stored_rows, with_model, write_config
from tests.serving.test_process import server_env

BATCHED = ["toy_image", "toy_text"]
NEVER = 60_000  # max_wait_ms so long that a batch in these tests can only close by size or by shutdown
BAD_RECORD = {"toy_image": {"image": "not base64 at all!"}, "toy_text": {"text": "   "}}


def batching(config, name: str, *, max_records: int, max_wait_ms: float = NEVER):
    return with_model(config, name, batching={"enabled": True, "max_wait_ms": max_wait_ms, "max_records": max_records})


def loaded(config, bundle_root, name: str) -> LoadedModel:
    return load_model(BundleSource(bundle_root).resolve(name, "champion"), config.model(name), config)


def count_runs(model: LoadedModel, monkeypatch, calls: list | None = None) -> list[dict]:
    """Every onnxruntime call's feeds, recorded (into `calls`) on the model's real session."""
    calls = [] if calls is None else calls
    run = model.session.run

    def counted(names, feeds, *args, **kwargs):
        calls.append(feeds)
        return run(names, feeds, *args, **kwargs)

    monkeypatch.setattr(model.session, "run", counted)
    return calls


def assert_same_answers(got: list[dict], expected: list[dict]) -> None:
    assert [a["label"] for a in got] == [a["label"] for a in expected]
    assert [a["probability"] for a in got] == pytest.approx([a["probability"] for a in expected], abs=1e-6)


# ------------------------------------------------------------------------------------------ the batcher
@pytest.mark.parametrize("name", BATCHED)
def test_concurrent_submissions_become_one_graph_call_and_each_gets_its_own_rows(
        bundle_config, bundle_root, kind_records, monkeypatch, name):
    sizes = [1, 2, 1, 3, 1]
    records = kind_records[name][:sum(sizes)]
    model = loaded(batching(bundle_config, name, max_records=sum(sizes)), bundle_root, name)
    requests, start = [], 0
    for size in sizes:
        requests.append(model.adapter.validate(records[start:start + size]))
        start += size
    alone = [model.predict(request) for request in requests]  # each request on its own, before counting
    assert len({a["label"] for answers in alone for a in answers}) > 1  # answers differ: a mix-up would show
    calls = count_runs(model, monkeypatch)

    async def concurrently():
        return await asyncio.gather(*(model.batcher.submit(request) for request in requests))

    batched = asyncio.run(concurrently())
    assert len(calls) == 1 and model.batcher.calls == 1
    assert [len(answers) for answers in batched] == sizes
    for got, expected in zip(batched, alone):
        assert_same_answers(got, expected)
    if name == "toy_text":  # padded to the longest text of the batch, not to the model's max_length
        longest = max(len(record.ids) for request in requests for record in request)
        assert calls[0]["input_ids"].shape == (sum(sizes), longest)
        assert longest < model.adapter.codec.settings.max_length


def test_a_batch_holds_at_most_max_records_and_a_larger_request_runs_alone(bundle_config, bundle_root, kind_records):
    model = loaded(bundle_config, bundle_root, "toy_text")
    seen: list[tuple[int, int]] = []
    batcher = MicroBatcher(model.predict, max_wait_ms=0, max_records=4,
                           on_batch=lambda requests, records: seen.append((requests, records)))
    requests = [model.adapter.validate(kind_records["toy_text"][i:i + 2]) for i in (0, 2, 4)]
    big = model.adapter.validate(kind_records["toy_text"][10:15])

    async def concurrently():
        return await asyncio.gather(*(batcher.submit(request) for request in [*requests, big]))

    answers = asyncio.run(concurrently())
    assert seen == [(2, 4), (1, 2), (1, 5)]  # oldest first, never over 4 records unless one request is larger
    for got, request in zip(answers, [*requests, big]):
        assert_same_answers(got, model.predict(request))


def test_close_runs_what_waits_without_waiting_for_the_window(bundle_config, bundle_root, kind_records):
    model = loaded(bundle_config, bundle_root, "toy_text")
    batcher = MicroBatcher(model.predict, max_wait_ms=NEVER, max_records=100)
    requests = [model.adapter.validate([record]) for record in kind_records["toy_text"][:3]]

    async def shut_down_while_waiting():
        waiting = [asyncio.create_task(batcher.submit(request)) for request in requests]
        await asyncio.sleep(0)  # they are queued, the window (a minute) is open
        await batcher.close()
        assert all(task.done() for task in waiting)
        return [task.result() for task in waiting]

    answers = asyncio.run(shut_down_while_waiting())
    assert batcher.calls == 1
    for got, request in zip(answers, requests):
        assert_same_answers(got, model.predict(request))


def test_a_failing_graph_call_fails_its_batch_and_the_next_batch_runs(bundle_config, bundle_root, kind_records):
    model = loaded(bundle_config, bundle_root, "toy_image")
    batcher = MicroBatcher(model.predict, max_wait_ms=NEVER, max_records=2)
    good = model.adapter.validate(kind_records["toy_image"][:1])
    wrong_size = [ImageRecord(np.zeros((3, 4, 4), np.float32), {})]  # not what the graph takes

    async def two_batches():
        first = await asyncio.gather(batcher.submit(good), batcher.submit(wrong_size), return_exceptions=True)
        second = await asyncio.gather(batcher.submit(good), batcher.submit(good))
        return first, second

    first, second = asyncio.run(two_batches())
    assert all(isinstance(outcome, Exception) for outcome in first)  # the batch they shared failed
    assert batcher.calls == 1
    for got in second:
        assert_same_answers(got, model.predict(good))


def test_a_request_whose_client_went_away_is_left_out(bundle_config, bundle_root, kind_records):
    model = loaded(bundle_config, bundle_root, "toy_text")
    seen: list[tuple[int, int]] = []
    batcher = MicroBatcher(model.predict, max_wait_ms=NEVER, max_records=3,
                           on_batch=lambda requests, records: seen.append((requests, records)))
    requests = [model.adapter.validate([record]) for record in kind_records["toy_text"][:4]]

    async def one_leaves():
        tasks = [asyncio.create_task(batcher.submit(request)) for request in requests]
        await asyncio.sleep(0)
        tasks[1].cancel()
        await batcher.close()
        return [task.result() for task in tasks if not task.cancelled()]

    answers = asyncio.run(one_leaves())
    assert seen == [(3, 3)]
    for got, request in zip(answers, [requests[0], *requests[2:]]):
        assert_same_answers(got, model.predict(request))


# --------------------------------------------------------------------------------------- in the server
async def post_concurrently(app, name: str, bodies: list[list[dict]], on_start=None) -> list[httpx.Response]:
    """The app started, `on_start(app)` called, the bodies posted all at once; the answers, then /metrics."""
    async with app.router.lifespan_context(app):
        if on_start is not None:
            on_start(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serving") as http:
            answers = await asyncio.gather(*(http.post(f"/v1/{name}/predict", json=body) for body in bodies))
            metrics = await http.get("/metrics")
    return [*answers, metrics]


@pytest.mark.parametrize("name", BATCHED)
def test_concurrent_requests_share_one_call_and_a_bad_one_fails_alone(bundle_config, bundle_root, kind_records,
                                                                      monkeypatch, name):
    good = [[record] for record in kind_records[name][:6]]
    config = batching(bundle_config, name, max_records=len(good))
    app = create_app(config)
    solo = loaded(bundle_config, bundle_root, name)
    expected = [solo.predict(solo.adapter.validate(body)) for body in good]
    calls: list[dict] = []

    def count(app):  # on the session of the version the app loaded
        count_runs(app.state.services.store.get(name), monkeypatch, calls)

    bodies = [*good[:3], [BAD_RECORD[name]], *good[3:]]
    *answers, metrics = asyncio.run(post_concurrently(app, name, bodies, on_start=count))
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200, 200, 200, 422, 200, 200, 200]
    assert answers[3].json()["detail"][0]["loc"][:2] == ["body", 0]
    served = [answer.json()["predictions"] for answer in answers if answer.status_code == 200]
    for got, wanted in zip(served, expected):
        assert_same_answers(got, wanted)
    assert len(calls) == 1  # six requests, one onnxruntime call
    assert f'serving_batch_requests_count{{model="{name}"}} 1.0' in metrics.text
    assert f'serving_batch_records_sum{{model="{name}"}} 6.0' in metrics.text
    logged = read_predictions(config.prediction_log.path, name)
    assert sorted(row["id"] for row in logged) == sorted(p[0]["id"] for p in served)  # logged per request
    assert len({row["request_id"] for row in logged}) == len(good)


def test_with_batching_off_every_request_runs_alone_and_answers_the_same(bundle_config, kind_records, monkeypatch):
    """The default: no batcher, one onnxruntime call per request, no batch metrics, and the answers
    batching gives."""
    bodies = [[record] for record in kind_records["toy_text"][:6]]
    calls: list[dict] = []

    def count(app):
        model = app.state.services.store.get("toy_text")
        assert model.batcher is None and not model.settings.batching.enabled
        count_runs(model, monkeypatch, calls)

    *unbatched, off_metrics = asyncio.run(post_concurrently(create_app(bundle_config), "toy_text", bodies, on_start=count))
    assert len(calls) == len(bodies)
    assert "serving_batch_requests_count{" not in off_metrics.text
    on = create_app(batching(bundle_config, "toy_text", max_records=len(bodies)))
    *batched, _ = asyncio.run(post_concurrently(on, "toy_text", bodies))
    assert [a.status_code for a in unbatched] == [a.status_code for a in batched] == [200] * len(bodies)
    for plain, shared in zip(unbatched, batched):
        assert_same_answers(shared.json()["predictions"], plain.json()["predictions"])


# --------------------------------------------------------------------------------------- a real process
def test_live_server_batches_concurrent_image_and_text_requests(tmp_path, bundle_config, bundle_root, kind_records):
    """uvicorn with batching on for toy_image (JSON and multipart) and toy_text; 16 concurrent clients."""
    config = batching(batching(bundle_config, "toy_image", max_records=32, max_wait_ms=5), "toy_text",
                      max_records=32, max_wait_ms=5)
    config_file = write_config(config, tmp_path / "serving.yaml")
    port = free_port()
    env = server_env(tmp_path, SERVING_BUNDLES=str(bundle_root))
    process = subprocess.Popen([sys.executable, "-m", "serving", "--config", str(config_file), "--port", str(port)],
                               cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    images = [row["image"] for row in stored_rows("toy_image", 16)]
    texts = kind_records["toy_text"][:16]
    image_model, text_model = (loaded(bundle_config, bundle_root, name) for name in BATCHED)
    try:
        wait_ready(url, process)

        async def clients():
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                uploads = [http.post("/v1/toy_image/predict", files=[("image", ("x.png", data, "image/png"))])
                           for data in images[:8]]
                jsons = [http.post("/v1/toy_image/predict", json=[{"image": base64.b64encode(data).decode()}])
                         for data in images[8:]]
                text = [http.post("/v1/toy_text/predict", json=[record]) for record in texts]
                answers = await asyncio.gather(*uploads, *jsons, *text)
                return answers, (await http.get("/metrics")).text

        answers, metrics = asyncio.run(clients())
        assert [a.status_code for a in answers] == [200] * 32
        for answer, data in zip(answers[:16], images):
            expected = image_model.predict(image_model.adapter.validate([{"image": base64.b64encode(data).decode()}]))
            assert_same_answers(answer.json()["predictions"], expected)
            assert answer.json()["predictions"][0]["top_k"][0]["label"] == expected[0]["label"]
        for answer, record in zip(answers[16:], texts):
            assert_same_answers(answer.json()["predictions"], text_model.predict(text_model.adapter.validate([record])))
        for name in BATCHED:  # every record went through a batched call, however the calls were cut
            assert f'serving_batch_records_sum{{model="{name}"}} 16.0' in metrics
            assert f'serving_batch_requests_sum{{model="{name}"}} 16.0' in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_SECONDS) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
