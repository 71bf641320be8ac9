"""The batch histogram's exposition, and the id factories."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from serving.ids import ID_CHARS, IdFactory, request_id
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


def test_prediction_ids_are_unguessable():
    """At least 122 random bits each (uuid4's), and nothing shared between ids of one process: knowing
    every id a server handed out tells nothing about the next one (the old ids were a per-process prefix,
    printed in every answer, plus a counter)."""
    factory = IdFactory()
    ids = [*factory.take(500), *factory.take(1), *(factory.one() for _ in range(500))]
    assert len(set(ids)) == len(ids) and {len(id_) for id_ in ids} == {ID_CHARS}
    assert int(ID_CHARS * math.log2(16)) >= 122 and all(int(id_, 16) >= 0 for id_ in ids)  # hex: 4 bits a character
    assert len({id_[:8] for id_ in ids}) == len(ids)  # no common prefix
    bits = np.array([[int(c, 16) >> k & 1 for c in id_ for k in range(4)] for id_ in ids])
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.1)  # every bit position varies: none is a counter or fixed


def test_request_ids_keep_sane_client_values_only():
    assert request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    assert request_id("has space") != "has space"
    assert request_id("x" * 200) != "x" * 200
    assert request_id(None)
