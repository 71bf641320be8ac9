"""Prometheus metrics of the server, in a registry of its own (one per app, so tests do not collide).

Request counts by route and status, latency histograms by route, the prediction distribution per model
(labels and a probability histogram), the size of each batched graph call per model (micro-batching:
requests and records per call) and which version of each model is serving. Route labels are route
templates (`/v1/<model>/predict`), never raw paths, so a scanner cannot blow up the number of series.

Cost matters: these calls run on every request. Label lookups (`.labels(...)`, a lock and a dict each)
are cached per label set, and a batch of probabilities lands in the histogram in one locked update.
Measured in docs/serving.md.

Several workers (`server.workers` > 1): prometheus_client's multiprocess mode, switched on by its own
variable PROMETHEUS_MULTIPROC_DIR (set by the supervisor before a worker imports prometheus_client). Every
value then lives in a per-process file, and /metrics, on any worker, sums every worker's files.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections import Counter as Tally
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import HistogramMetricFamily

from serving.config import MetricsConfig

if TYPE_CHECKING:
    from serving.models import LoadedModel

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
INF = float("inf")
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's switch to multiprocess mode (read at its import)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(METRICS_DIR_ENV))


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


class FileHistogram:
    """BatchHistogram's calls over a prometheus_client Histogram, for multiprocess mode: there only
    prometheus_client's own metrics reach the shared files, one value per call (slower, but summed)."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], buckets: list[float],
                 registry: CollectorRegistry):
        self.histogram = Histogram(name, documentation, labelnames, buckets=buckets, registry=registry)
        self._children: dict[tuple[str, ...], Histogram] = {}

    def observe(self, labels: tuple[str, ...], values: list[float]) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.histogram.labels(*labels)
        for value in values:
            child.observe(value)


class ServingMetrics:
    """Every metric the server exports, and the few calls that update them."""

    def __init__(self, config: MetricsConfig):
        self.registry = CollectorRegistry()
        shared = multiprocess_mode()
        self.requests = Counter("serving_requests", "HTTP requests by route, method and status code",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("serving_request_duration_seconds", "Time from request to last response byte",
                                 ["route"], buckets=config.latency_buckets_seconds, registry=self.registry)
        self.predictions = Counter("serving_predictions", "Records predicted, by model, version and label",
                                   ["model", "version", "label"], registry=self.registry)
        self.probability = (FileHistogram if shared else BatchHistogram)("serving_prediction_probability",
                                          "Predicted probability (binary models: of the positive label)",
                                          ["model", "version"], config.probability_buckets, self.registry)
        self.batch_requests = Histogram("serving_batch_requests", "Requests answered by one batched graph call",
                                        ["model"], buckets=config.batch_size_buckets, registry=self.registry)
        self.batch_records = Histogram("serving_batch_records", "Records in one batched graph call",
                                       ["model"], buckets=config.batch_size_buckets, registry=self.registry)
        self.model_info = Gauge("serving_model_info", "1 for the version each model is serving",
                                ["model", "version", "alias", "run_id", "kind"], registry=self.registry,
                                multiprocess_mode="livemax")  # several workers: 1 while any live one serves it
        self.exposed = self.registry if not shared else _multiprocess_registry()
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
        if previous is not None:  # set to 0 first: in multiprocess mode the file keeps a removed series' value
            self.model_info.labels(*_info_labels(previous)).set(0)
            self.model_info.remove(*_info_labels(previous))
        self.model_info.labels(*_info_labels(current)).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.exposed)


def _multiprocess_registry() -> CollectorRegistry:
    """A registry that reads every worker's files (its own metrics are in them too)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def _info_labels(model: LoadedModel) -> tuple[str, ...]:
    return model.name, model.version, model.alias, model.contract.run_id, model.contract.kind


class NoMetrics:
    """Metrics switched off (config): the same calls, doing nothing."""

    def observe_request(self, *args) -> None: ...
    def observe_predictions(self, *args) -> None: ...
    def observe_batch(self, *args) -> None: ...
    def model_changed(self, *args) -> None: ...
