"""The one place a command joins Ray: the cluster `RAY_ADDRESS` names, else a local runtime it starts itself.

The same search or scoring job runs on this machine and on a multi-node cluster: only the environment
differs. Joining a cluster ships this repository's own packages with the job (`runtime_env.py_modules`), so
the nodes need the third-party dependencies only (the image `pip install .[train,scale]` builds). A runtime
that was running already (a test session's, a notebook's) is used as it is and left running.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

ADDRESS_ENV = "RAY_ADDRESS"
LOCAL = "local"  # ray.init's address for a new runtime of our own, never one that happens to be running
# Our packages, shipped to a cluster's workers; a local runtime's workers import the installed checkout.
SHIPPED_PACKAGES = ("pipelines", "modelpkg")
REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def cluster_address() -> str | None:
    return os.environ.get(ADDRESS_ENV) or None


def shipped_code() -> dict:
    return {"py_modules": [str(REPO / package) for package in SHIPPED_PACKAGES]}


@contextmanager
def ray_runtime(num_cpus: int | None, object_store_mb: int | None = None) -> Iterator[dict[str, float]]:
    """Ray, started or joined for the duration; yields the cluster's resources. `num_cpus` and
    `object_store_mb` size a local runtime (None: every core; Ray's default share of memory) and are ignored
    on a cluster, whose size is the cluster's own."""
    import ray

    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    address = cluster_address()
    if address:
        log.info("joining the Ray cluster at %s (%s=%s)", address, ADDRESS_ENV, address)
        ray.init(address=address, runtime_env=shipped_code(), logging_level=logging.WARNING)
    else:
        ray.init(address=LOCAL, num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 object_store_memory=None if object_store_mb is None else object_store_mb * MIB)
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()
