"""Several uvicorn worker processes behind one port (`server.workers`): what they share, and how.

uvicorn's supervisor starts the workers on one listening socket and starts a new one whenever one dies.
The supervisor (`python -m serving`) makes a run folder for this run, removed at exit, that the workers
share through the environment; nothing else is shared:
- `slot-<k>.lock`: a worker holds an flock on its slot for its whole life; the kernel releases it when the
  process dies, kill -9 included, so the replacement takes the same slot and goes on writing that slot's
  prediction log file (serving.predlog.worker_log_path) instead of adding a file per restart.
- `reload.json`: the latest /admin/reload any worker took (a generation number, model, allow_schema_change).
  Every worker polls it and repeats it; `confirmed-<k>.json` says which generation slot k has applied, so
  the worker that took the reload can answer how many workers have followed it.
- `metrics/`: prometheus_client's multiprocess files, so that any worker's /metrics sums them all.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from serving.metrics import METRICS_DIR_ENV

log = logging.getLogger(__name__)

RUN_DIR_ENV = "SERVING_RUN_DIR"  # the run folder, set by the supervisor for its workers
WORKER_CONFIG_ENV = "SERVING_WORKER_CONFIG"  # the validated config (CLI overrides included), as JSON
CONFIRM_POLL_SECONDS = 0.05  # how often /admin/reload looks at the other workers' confirmations
GAUGE_FILE = re.compile(r"gauge_live\w*_(\d+)\.db")  # prometheus_client's per-process files of live gauges


@dataclass
class Worker:
    """One worker process: its slot (0..count-1), held for its life by the open, locked `lock` file."""

    slot: int
    count: int
    run_dir: Path
    lock: IO = field(repr=False)


def prepare_run(run_dir: Path) -> dict[str, str]:
    """The environment the workers need (set by the supervisor before it starts them): the run folder and
    prometheus_client's multiprocess folder, which must be set before a worker imports prometheus_client."""
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    return {RUN_DIR_ENV: str(run_dir), METRICS_DIR_ENV: str(metrics_dir)}


def claim_slot(run_dir: Path, count: int) -> Worker:
    """The first slot no living worker holds."""
    for slot in range(count):
        handle = open(run_dir / f"slot-{slot}.lock", "w")  # noqa: SIM115 - held open for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return Worker(slot=slot, count=count, run_dir=run_dir, lock=handle)
    raise RuntimeError(f"all {count} worker slots are held: more workers than server.workers")


def forget_dead_processes() -> None:
    """Drop the live-gauge files of worker processes that are gone (killed ones never clean up after
    themselves), so /metrics does not report what a dead worker served. Counters and histograms of dead
    processes stay: their counts happened."""
    from prometheus_client import multiprocess

    for path in Path(os.environ[METRICS_DIR_ENV]).glob("gauge_live*.db"):
        match = GAUGE_FILE.fullmatch(path.name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json(path: Path, content: dict) -> None:
    """Readers see the old file or the new one, never half of one."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(content))
    os.replace(partial, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


class Reloads:
    """/admin/reload reaching every worker: the one that takes it publishes it, the others follow within
    `poll_seconds`, and each confirms the generation it has applied with the versions it then serves.
    `store` is this worker's ModelStore."""

    def __init__(self, worker: Worker, store, poll_seconds: float, confirm_seconds: float):
        self.worker = worker
        self.store = store
        self.poll_seconds = poll_seconds
        self.confirm_seconds = confirm_seconds
        self.request_file = worker.run_dir / "reload.json"
        self.seen = self._latest()["generation"]  # a new worker loads the aliases' current versions anyway

    def _latest(self) -> dict:
        return _read_json(self.request_file) or {"generation": 0, "model": None, "allow_schema_change": False}

    def _confirmation(self, slot: int) -> Path:
        return self.worker.run_dir / f"confirmed-{slot}.json"

    def confirm(self, generation: int) -> None:
        self.seen = generation
        versions = {name: model.version if (model := self.store.current(name)) else None for name in self.store.names}
        _write_json(self._confirmation(self.worker.slot), {"generation": generation, "pid": os.getpid(),
                                                           "versions": versions})

    def publish(self, model: str | None, allow_schema_change: bool) -> int:
        """Record a reload this worker has just done, as the next generation (under a lock: two workers may
        take a reload at once); returns the generation."""
        with open(self.worker.run_dir / "reload.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            generation = self._latest()["generation"] + 1
            _write_json(self.request_file, {"generation": generation, "model": model,
                                            "allow_schema_change": allow_schema_change})
        self.confirm(generation)
        return generation

    async def broadcast(self, model: str | None, allow_schema_change: bool) -> dict:
        """Publish this worker's reload, then wait (at most confirm_seconds) for every slot to confirm it.
        The answer says which confirmed; the others apply it at their next poll, or load the aliases'
        versions when they start again."""
        generation = self.publish(model, allow_schema_change)
        deadline = asyncio.get_running_loop().time() + self.confirm_seconds
        while True:
            confirmed = self._confirmed(generation)
            if len(confirmed) == self.worker.count or asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(CONFIRM_POLL_SECONDS)
        return {"generation": generation, "workers": self.worker.count, "confirmed": len(confirmed),
                "versions": confirmed,
                "pending": [slot for slot in range(self.worker.count) if slot not in confirmed]}

    def _confirmed(self, generation: int) -> dict[int, dict]:
        """Each slot that has applied `generation` (or a later one), with the versions it serves."""
        found = {slot: _read_json(self._confirmation(slot)) for slot in range(self.worker.count)}
        return {slot: content["versions"] for slot, content in found.items()
                if content and content["generation"] >= generation}

    async def follow(self) -> None:
        """Poll for reloads other workers took and repeat them, for ever (a task of the worker's lifespan)."""
        self.confirm(self.seen)
        while True:
            await asyncio.sleep(self.poll_seconds)
            request = self._latest()
            if request["generation"] <= self.seen:
                continue
            try:
                await asyncio.to_thread(self.store.reload, [request["model"]] if request["model"] else None,
                                        allow_schema_change=request["allow_schema_change"])
            except Exception:  # noqa: BLE001 - the loop must live on; what serves is confirmed either way
                log.exception("worker %d: following reload %d failed", self.worker.slot, request["generation"])
            self.confirm(request["generation"])
