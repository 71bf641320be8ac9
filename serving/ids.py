"""Request ids and prediction ids.

A request id ties a response, its log rows and the client's own logs together: a client may send one in
`X-Request-ID` (kept when it is a sane token, replaced otherwise, so logs stay clean), else one is made.

A prediction id names one row of the prediction log, and is what feedback refers to. It must be unique
for ever, even when clients reuse request ids, and cheap: a random per-process prefix plus a counter
(one os.urandom call per process instead of one per row), which also sorts in creation order.
"""

from __future__ import annotations

import itertools
import re
import secrets
import uuid

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PREFIX_BYTES = 8  # 64 random bits per process: no two server processes share a prefix in practice


def request_id(supplied: str | None) -> str:
    if supplied and REQUEST_ID_PATTERN.fullmatch(supplied):
        return supplied
    return uuid.uuid4().hex


class PredictionIds:
    def __init__(self):
        self.prefix = secrets.token_hex(PREFIX_BYTES)
        self._counter = itertools.count()

    def take(self, n: int) -> list[str]:
        """n fresh ids. itertools.count is atomic under the GIL, so threads may share one generator."""
        return [f"{self.prefix}-{next(self._counter):010x}" for _ in range(n)]
