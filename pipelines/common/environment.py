"""Environment variables set for a while, then put back: what a child process or a library reads at start."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def environment_variables(**values: str) -> Iterator[dict[str, str]]:
    """`values` set for the duration, then each variable as it was (unset again if it was unset)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield dict(values)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
