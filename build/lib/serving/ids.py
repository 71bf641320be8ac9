"""Request ids and prediction ids.

A request id ties a response, its log rows and the client's own logs together: a client may send one in
`X-Request-ID` (kept when it is a sane token, replaced otherwise, so logs stay clean), else one is made.

A prediction id names one row of the prediction log, and is what feedback refers to. It must be unique
for ever, even when clients reuse request ids, and cheap: a random per-process prefix plus a counter
(one os.urandom call per process instead of one uuid4 per row), which also sorts in creation order.
Server-made request ids are built the same way, from a factory of their own.
"""

from __future__ import annotations

import itertools
import re
import secrets

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PREFIX_BYTES = 8  # 64 random bits per process: no two server processes share a prefix in practice


class IdFactory:
    """Unique ids from a random per-process prefix and a counter: `9f1c2e0a7b3d4c55-000000002a`."""

    def __init__(self):
        self.prefix = secrets.token_hex(PREFIX_BYTES)
        self._counter = itertools.count()

    def take(self, n: int) -> list[str]:
        """n fresh ids. itertools.count is atomic under the GIL, so threads may share one factory."""
        return [f"{self.prefix}-{next(self._counter):010x}" for _ in range(n)]

    def one(self) -> str:
        return f"{self.prefix}-{next(self._counter):010x}"


REQUEST_IDS = IdFactory()


def request_id(supplied: str | None) -> str:
    """The client's id when it is a sane token, else a fresh one."""
    if supplied and REQUEST_ID_PATTERN.fullmatch(supplied):
        return supplied
    return REQUEST_IDS.one()
