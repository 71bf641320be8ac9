"""The batch histogram's exposition, and the id factories."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from serving.ids import IdFactory, request_id
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


def test_ids_are_unique_and_ordered():
    factory = IdFactory()
    ids = factory.take(3) + [factory.one()]
    assert len(set(ids)) == 4 and ids == sorted(ids)
    assert IdFactory().prefix != factory.prefix


def test_request_ids_keep_sane_client_values_only():
    assert request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    assert request_id("has space") != "has space"
    assert request_id("x" * 200) != "x" * 200
    assert request_id(None)
