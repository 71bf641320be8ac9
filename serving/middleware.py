"""Pure-ASGI middlewares around every request: observability (request id, metrics), admission (503 under
overload) and body limits.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: no extra task and no body copy per request, which
matters when a whole prediction takes well under a millisecond.
"""

from __future__ import annotations

import json
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.ids import REQUEST_ID_HEADER, request_id

UNMATCHED_ROUTE = "unmatched"  # the route label of requests no route matched (bounded label values)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class ObservabilityMiddleware:
    """Gives every request an id (echoed in X-Request-ID) and records its route, status and duration.

    Metrics are recorded after the last response byte is sent, so they never delay an answer."""

    def __init__(self, app: ASGIApp, metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        rid = request_id(header(scope, REQUEST_ID_HEADER.encode()))
        scope["request_id"] = rid
        status = 500  # what the client gets if the app dies before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            self.metrics.observe_request(getattr(route, "path", UNMATCHED_ROUTE), scope["method"], status,
                                         time.perf_counter() - started)


class BodyLimitMiddleware:
    """413 for bodies over the limit: at once from Content-Length, or as soon as a chunked body passes it.

    Each model's routes take that model's `max_body_bytes` (`path_limits`, looked up by exact path: one
    dict lookup a request), every other path the default. The body is never buffered beyond the limit,
    so a huge upload cannot exhaust memory."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, path_limits: dict[str, int] | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.path_limits.get(scope["path"], self.max_body_bytes)
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._reject(send, limit)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large(limit))  # becomes a 413 response in the app
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Send, limit: int) -> None:
        body = json.dumps({"detail": too_large(limit)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def too_large(limit: int) -> str:
    return f"request body too large: at most {limit} bytes"


class AdmissionMiddleware:
    """503 with Retry-After, at once, for a POST under /v1/ (predict, feedback) beyond `max_in_flight` being
    answered.

    Under overload a request would otherwise queue behind every one before it and latency would grow
    with the number of clients; refused at the door it costs one short HTTP exchange, and the ones
    admitted wait for at most max_in_flight - 1 others. Reads (/health, /ready, /metrics, /v1/models) are
    never refused. One event loop runs this, so a plain counter is enough."""

    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after_seconds: int, prefix: str = "/v1/"):
        self.app = app
        self.max_in_flight = max_in_flight
        self.prefix = prefix
        self.in_flight = 0
        body = json.dumps({"detail": f"server busy: {max_in_flight} requests in progress; retry after "
                                     f"{retry_after_seconds} s"}).encode()
        self._refusal = ({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after_seconds).encode())]}, {"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            start, body = self._refusal
            await send(dict(start))  # a copy: the observability middleware appends its header to it
            return await send(body)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
