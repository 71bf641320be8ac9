"""The batch histogram's exposition, and the id factories."""

from __future__ import annotations

import math
import time

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from serving.ids import ID_CHARS, TIME_CHARS, IdFactory, request_id
from serving.metrics import BatchHistogram


def test_batch_histogram_is_a_cumulative_prometheus_histogram():
    registry = CollectorRegistry()
    histogram = BatchHistogram("p", "probability", ["model"], [0.5, 0.25], registry)
    histogram.observe(("churn",), [0.1, 0.25, 0.3, 0.9])
    histogram.observe(("churn",), [0.5])
    text = generate_latest(registry).decode()
    assert 'p_bucket{le="0.25",model="churn"} 2.0' in text  # le is inclusive
    assert 'p_bucket{le="0.5",model="churn"} 4.0' in text
    assert 'p_bucket{le="+Inf",model="churn"} 5.0' in text
    assert 'p_count{model="churn"} 5.0' in text and 'p_sum{model="churn"} 2.05' in text


def test_prediction_ids_are_unguessable_and_ordered_in_time():
    """128 random bits each (uuid4 has 122), and nothing shared between ids of one process but the clock:
    knowing every id a server handed out tells nothing about the next one (the old ids were a per-process
    prefix, printed in every answer, plus a counter). The time prefix keeps the log's index append-only."""
    factory = IdFactory()
    ids = [*factory.take(500), *factory.take(1), *(factory.one() for _ in range(500))]
    assert len(set(ids)) == len(ids) and {len(id_) for id_ in ids} == {ID_CHARS}
    random_parts = [id_[TIME_CHARS:] for id_ in ids]
    assert len(random_parts[0]) * math.log2(16) >= 122 and all(int(part, 16) >= 0 for part in random_parts)
    assert len({part[:8] for part in random_parts}) == len(ids)  # no common prefix in the random part
    bits = np.array([[int(c, 16) >> k & 1 for c in part for k in range(4)] for part in random_parts])
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.1)  # every bit position varies: none is a counter or fixed
    stamps = [int(id_[:TIME_CHARS], 16) for id_ in ids]
    assert stamps == sorted(stamps) and abs(stamps[-1] / 1000 - time.time()) < 60  # milliseconds, in order


def test_request_ids_keep_sane_client_values_only():
    assert request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    assert request_id("has space") != "has space"
    assert request_id("x" * 200) != "x" * 200
    assert request_id(None)
