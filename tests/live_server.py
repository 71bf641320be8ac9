"""Helpers for tests that run the server as a real uvicorn process on a loopback port."""

from __future__ import annotations

import socket
import subprocess
import time

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
