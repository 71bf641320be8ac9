"""Request ids and prediction ids.

A request id ties a response, its log rows and the client's own logs together: a client may send one in
`X-Request-ID` (kept when it is a sane token, replaced otherwise, so logs stay clean), else one is made.

A prediction id names one row of the prediction log, and is what feedback refers to. Labels drive
promotion, so an id must be unguessable as well as unique for ever: each one ends in 128 random bits from
the OS (uuid4 has 122), 32 hex characters, and knowing any number of ids tells nothing about the next. One
`os.urandom` call per request covers all of its ids. Server-made request ids are built the same way.

A prediction id *starts* with the time it was made (milliseconds since the epoch, 12 hex characters):
the log's primary-key index then grows at its end, as rows arrive, instead of taking each insert at a
random page; with purely random keys every row of a 64-record request dirtied another index page, and
the log cost the server three quarters of its requests/s at batch 64 (docs/serving.md has the numbers).
The prefix tells a guesser nothing it cannot read off the answer's clock.
"""

from __future__ import annotations

import os
import re
import time

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ID_BYTES = 16  # 128 random bits a prediction id: guessing one of n live ids takes ~2^128 / n tries
RANDOM_CHARS = 2 * ID_BYTES  # hex
TIME_CHARS = 12  # milliseconds since the epoch in hex: 48 bits, enough until the year 10889
ID_CHARS = TIME_CHARS + RANDOM_CHARS  # what the feedback contract and the log allow for an id, at most


def time_prefix() -> str:
    return f"{time.time_ns() // 1_000_000:0{TIME_CHARS}x}"


class IdFactory:
    """Time-ordered random ids, 44 hex characters each: `019ab7c3e2f1` (ms) + 128 random bits. Safe to
    share across threads (nothing is shared between calls)."""

    def take(self, n: int) -> list[str]:
        """n fresh ids from one read of the OS's random source, all with this millisecond's prefix."""
        raw, prefix = os.urandom(ID_BYTES * n).hex(), time_prefix()
        return [prefix + raw[start:start + RANDOM_CHARS] for start in range(0, len(raw), RANDOM_CHARS)]

    def one(self) -> str:
        return time_prefix() + os.urandom(ID_BYTES).hex()


REQUEST_IDS = IdFactory()


def request_id(supplied: str | None) -> str:
    """The client's id when it is a sane token, else a fresh one."""
    if supplied and REQUEST_ID_PATTERN.fullmatch(supplied):
        return supplied
    return REQUEST_IDS.one()
