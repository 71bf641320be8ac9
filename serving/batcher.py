"""Dynamic micro-batching: concurrent predict requests for one model run as one graph call.

The trade is latency for throughput. A transformer or a CNN costs far less per record in one call of 16
records than in 16 calls of one (the weights are read once, matrix products replace matrix-vector
products, and the fixed costs of `session.run` and of the hop to a worker thread are paid once). So the
first request of a batch waits up to `max_wait_ms` for others to join: a lone request pays that wait
(about 2 ms), and under concurrent load each call serves many requests. Under load the wait mostly
disappears: while one batch runs, the next requests queue up, their windows pass meanwhile, and they are
taken together the moment the graph is free. The queue therefore adapts the batch size to the load, up to
`max_records` records per call, which bounds one call's memory and latency. A tabular graph of tens of
microseconds gains nothing from this (the wait costs more than the graph): batching is a per-model switch.

What stays per request: reading, validation and decoding (a bad request fails alone with its 4xx before
it ever joins a batch), the prediction log, the metrics and the answer. What is shared: `codec.feeds` over
the records of every request in the batch (text pads to the longest text of a run, not to the
model's maximum length), one `session.run` in a worker thread (text: one per 32 texts of similar length,
`codec.graph_runs`), and the answers, split back per request in order. One batch runs at a time per model version: the session already uses its intra-op threads, and a
second call at the same time would only fight over the same cores; the queue grows the next batch instead.

A record's answer must not depend on its batch neighbours, and for fp32 graphs it does not (padding is
masked; only float rounding may differ). Dynamically quantised (int8) graphs are the exception: their
activation scales are computed over the whole batch, so a record's answer changes with its neighbours.
The optimize stages refuse such graphs by their "batch_effect" bound, so no registered model has one; a
hand-made bundle with one should not be served with batching on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(slots=True)
class Waiting:
    """One request's records, waiting for their batch."""

    records: list[Any]
    future: asyncio.Future
    arrived: float  # event-loop time: its batch's window opens when the oldest waiting request arrived


class MicroBatcher:
    """Collects concurrent `submit` calls and runs their records through `run` together.

    `run` takes a list of decoded records and returns one answer per record, in order (a model's
    predict); it runs in `executor` (None: the event loop's default thread pool). `on_batch(requests,
    records)` is told the size of every call made (the metrics). A worker task exists only while requests
    wait, so an idle batcher (or the previous version's, after a reload) holds nothing."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], *, max_wait_ms: float, max_records: int,
                 on_batch: Callable[[int, int], None] | None = None, executor: Executor | None = None):
        if max_wait_ms < 0 or max_records < 1:
            raise ValueError(f"batching needs max_wait_ms >= 0 and max_records >= 1, "
                             f"got {max_wait_ms} and {max_records}")
        self.run = run
        self.max_wait = max_wait_ms / 1000
        self.max_records = max_records
        self.on_batch = on_batch
        self.executor = executor
        self.calls = 0  # graph calls made: what a batch of concurrent requests saves
        self._waiting: deque[Waiting] = deque()
        self._waiting_records = 0
        self._arrival: asyncio.Event | None = None  # set on each arrival and by the window's timer (one per worker)
        self._worker: asyncio.Task | None = None
        self._closing = False

    async def submit(self, records: list[Any]) -> list[Any]:
        """One request's decoded records -> their answers, in order, computed together with whatever
        other requests arrive within the window."""
        loop = asyncio.get_running_loop()
        waiting = Waiting(records, loop.create_future(), loop.time())
        self._waiting.append(waiting)
        self._waiting_records += len(records)
        if self._worker is None:
            self._arrival = asyncio.Event()  # made in the running loop, like the worker
            self._worker = loop.create_task(self._work())
        self._arrival.set()
        return await waiting.future

    async def close(self) -> None:
        """Shutdown: run everything still waiting at once (no more windows) and return once it is answered."""
        self._closing = True
        if self._worker is not None:
            self._arrival.set()
            await self._worker

    async def _work(self) -> None:
        try:
            while self._waiting:
                await self._window()
                await self._run(self._take())
        except asyncio.CancelledError:  # the loop is going away: nobody will answer the waiting requests
            for waiting in self._waiting:
                waiting.future.cancel()
            raise
        finally:
            self._worker = None  # no await since the queue was seen empty: the next submit starts a new worker

    async def _window(self) -> None:
        """Wait until the oldest waiting request's window has passed, or a batch is full."""
        loop = asyncio.get_running_loop()
        deadline = self._waiting[0].arrived + self.max_wait
        while not self._closing and self._waiting_records < self.max_records:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrival.clear()
            timer = loop.call_later(remaining, self._arrival.set)
            try:
                await self._arrival.wait()
            finally:
                timer.cancel()

    def _take(self) -> list[Waiting]:
        """The oldest waiting requests, up to max_records records (a larger request runs alone). Requests
        whose client went away meanwhile are dropped."""
        batch, records = [], 0
        while self._waiting:
            waiting = self._waiting[0]
            if batch and records + len(waiting.records) > self.max_records:
                break
            self._waiting.popleft()
            self._waiting_records -= len(waiting.records)
            if not waiting.future.done():
                batch.append(waiting)
                records += len(waiting.records)
        return batch

    async def _run(self, batch: list[Waiting]) -> None:
        """One graph call for the whole batch, in a worker thread; each request gets its own slice back."""
        if not batch:
            return
        records = [record for waiting in batch for record in waiting.records]
        try:
            answers = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, records)
            if len(answers) != len(records):
                raise RuntimeError(f"batched run returned {len(answers)} answers for {len(records)} records")
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as error:  # the graph failed: every request of this batch fails with it, the next batch runs
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            return
        self.calls += 1
        if self.on_batch is not None:
            self.on_batch(len(batch), len(records))
        start = 0
        for waiting in batch:
            end = start + len(waiting.records)
            if not waiting.future.done():
                waiting.future.set_result(answers[start:end])
            start = end
