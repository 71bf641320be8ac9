"""Helpers for tests that run the server as a real uvicorn process on a loopback port, and `hammer`, the
many-client load generator that the overload test and benchmarks/bench_serve.py share."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from dataclasses import dataclass

import httpx
import pytest

START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen) -> None:
    """Poll /ready until 200; fail with the server's stderr if the process dies first."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server at {url} not ready after {START_TIMEOUT_SECONDS} s")


# ------------------------------------------------------------------------------------ many clients at once
@dataclass(frozen=True)
class Answer:
    """One request's outcome: status 0 when the connection failed (no HTTP answer at all)."""

    status: int
    seconds: float
    retry_after: str | None = None
    error: str | None = None


def hammer(port: int, path: str, body: bytes, *, clients: int, seconds: float, polite: bool = False) -> list[Answer]:
    """`clients` keep-alive connections POSTing `body` to `path` back to back for `seconds`: every answer.
    `polite`: after a 503 a client waits as its Retry-After says (else it asks again at once).

    Plain asyncio streams rather than an HTTP library: at a few thousand requests a second on the same
    CPUs as the server, the client's own cost must stay small. A connection the server closes (uvicorn's
    own 503 does) is opened again."""
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def run() -> list[Answer]:
        answers: list[Answer] = []
        until = time.perf_counter() + seconds
        await asyncio.gather(*(_client(port, request, until, answers, polite) for _ in range(clients)))
        return answers

    with _runner() as runner:
        return runner.run(run())


def _runner() -> asyncio.Runner:
    """uvloop when installed (uvicorn's own loop, which it brings): a cheaper client leaves the server more CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _client(port: int, request: bytes, until: float, answers: list[Answer], polite: bool) -> None:
    reader = writer = None
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status, headers = await _response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            answers.append(Answer(0, time.perf_counter() - started, error=repr(error)))
            writer = _close(writer)
            continue
        answers.append(Answer(status, time.perf_counter() - started, headers.get("retry-after")))
        if headers.get("connection") == "close":
            writer = _close(writer)
        if polite and status == 503 and headers.get("retry-after", "").isdigit():
            await asyncio.sleep(min(int(headers["retry-after"]), until - time.perf_counter()))
    _close(writer)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers of one answer, its body read and dropped (uvicorn always sends Content-Length)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
    return None
