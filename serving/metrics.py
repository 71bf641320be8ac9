"""Prometheus metrics of the server, in a registry of its own (one per app, so tests do not collide).

Request counts by route and status, latency histograms by route, the prediction distribution per model
(labels and a probability histogram), the size of each batched graph call per model (micro-batching:
requests and records per call) and which version of each model is serving. Route labels are route
templates (`/v1/<model>/predict`), never raw paths, so a scanner cannot blow up the number of series.

Cost matters: these calls run on every request. Label lookups (`.labels(...)`, a lock and a dict each)
are cached per label set, and a batch of probabilities lands in the histogram in one locked update.
Measured in docs/serving.md.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter as Tally
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily

from serving.config import MetricsConfig

if TYPE_CHECKING:
    from serving.models import LoadedModel

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INF = float("inf")


class BatchHistogram:
    """A Prometheus histogram that takes a whole batch of values under one lock.

    prometheus_client's Histogram takes one value per call (a label lookup, a lock and a bucket search
    each); a batch of 256 probabilities would be 256 such calls on the request's thread."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], buckets: list[float],
                 registry: CollectorRegistry):
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.edges = sorted(set(buckets) | {INF})
        self._series: dict[tuple[str, ...], list] = {}  # labels -> [counts per bucket, sum]
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, labels: tuple[str, ...], values: list[float]) -> None:
        buckets = [bisect_left(self.edges, value) for value in values]  # bucket i holds value <= edges[i]
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [[0] * len(self.edges), 0.0]
            counts = series[0]
            for bucket in buckets:
                counts[bucket] += 1
            series[1] += sum(values)

    def describe(self):
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self):
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(labels, list(counts), total) for labels, (counts, total) in self._series.items()]
        for labels, counts, total in snapshot:
            cumulative, buckets = 0, []
            for edge, count in zip(self.edges, counts):
                cumulative += count
                buckets.append(("+Inf" if edge == INF else repr(float(edge)), float(cumulative)))
            family.add_metric(list(labels), buckets, sum_value=total)
        yield family


class ServingMetrics:
    """Every metric the server exports, and the few calls that update them."""

    def __init__(self, config: MetricsConfig):
        self.registry = CollectorRegistry()
        self.requests = Counter("serving_requests", "HTTP requests by route, method and status code",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("serving_request_duration_seconds", "Time from request to last response byte",
                                 ["route"], buckets=config.latency_buckets_seconds, registry=self.registry)
        self.predictions = Counter("serving_predictions", "Records predicted, by model, version and label",
                                   ["model", "version", "label"], registry=self.registry)
        self.probability = BatchHistogram("serving_prediction_probability",
                                          "Predicted probability (binary models: of the positive label)",
                                          ["model", "version"], config.probability_buckets, self.registry)
        self.batch_requests = Histogram("serving_batch_requests", "Requests answered by one batched graph call",
                                        ["model"], buckets=config.batch_size_buckets, registry=self.registry)
        self.batch_records = Histogram("serving_batch_records", "Records in one batched graph call",
                                       ["model"], buckets=config.batch_size_buckets, registry=self.registry)
        self.model_info = Gauge("serving_model_info", "1 for the version each model is serving",
                                ["model", "version", "alias", "run_id", "kind"], registry=self.registry)
        self._children: dict[tuple, object] = {}  # (metric, *labels) -> the labelled child

    def _child(self, metric, *labels: str):
        key = (metric.__class__, id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self.requests, route, method, str(status)).inc()
        self._child(self.latency, route).observe(seconds)

    def observe_predictions(self, model: str, version: str, outputs: list[dict]) -> None:
        for label, count in Tally([output["label"] for output in outputs]).items():
            self._child(self.predictions, model, version, label).inc(count)
        self.probability.observe((model, version), [output["probability"] for output in outputs])

    def observe_batch(self, model: str, requests: int, records: int) -> None:
        """One batched graph call (serving/batcher.py): how many requests and records it answered."""
        self._child(self.batch_requests, model).observe(requests)
        self._child(self.batch_records, model).observe(records)

    def model_changed(self, name: str, previous: LoadedModel | None, current: LoadedModel) -> None:
        if previous is not None:
            self.model_info.remove(*_info_labels(previous))
        self.model_info.labels(*_info_labels(current)).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _info_labels(model: LoadedModel) -> tuple[str, ...]:
    return model.name, model.version, model.alias, model.contract.run_id, model.contract.kind


class NoMetrics:
    """Metrics switched off (config): the same calls, doing nothing."""

    def observe_request(self, *args) -> None: ...
    def observe_predictions(self, *args) -> None: ...
    def observe_batch(self, *args) -> None: ...
    def model_changed(self, *args) -> None: ...
