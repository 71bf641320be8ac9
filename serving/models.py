"""The models being served: load a bundle into an onnxruntime session, and swap versions atomically.

A `LoadedModel` is immutable: contract, session and adapter of one version, together. The store maps
each configured name to its current `LoadedModel`; a request takes that object once, at its start, and
uses it to the end. Reload builds the new version completely (download, session, warm-up prediction)
before one dict assignment makes it current, so requests in flight finish on the old session, new ones
start on the new, and none sees half a model. Python drops the old session once its last request ends.

A model that fails to load is recorded with its reason (for /ready and the log) and never stops the
other models from serving; a failed reload keeps the previous version serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import onnxruntime as ort

from pipelines.common.contract import ONNX_FILE, ModelContract
from serving.adapters import Adapter, adapter_class
from serving.config import ModelConfig, OnnxRuntimeConfig, ServingConfig
from serving.sources import ModelSource, ResolvedModel

log = logging.getLogger(__name__)
ORT_LOG_ERRORS_ONLY = 3  # onnxruntime severity: 0 verbose ... 3 error, 4 fatal


class ModelUnavailable(RuntimeError):
    """The model is configured but not loaded (its reason says why)."""


@dataclass(frozen=True)
class LoadedModel:
    """One version, ready to predict: what it is (contract, version) and what runs it (session, adapter)."""

    name: str
    version: str
    alias: str
    source: str
    contract: ModelContract
    session: ort.InferenceSession
    adapter: Adapter
    loaded_at: float

    def predict(self, records: list[Any]) -> list[dict]:
        names = self.adapter.output_names
        outputs = self.session.run(names, self.adapter.feeds(records))
        return self.adapter.outputs(dict(zip(names, outputs)))

    def describe(self) -> dict:
        """What /v1/models says about this model."""
        contract = self.contract
        return {
            "name": self.name, "status": "loaded", "version": self.version, "alias": self.alias,
            "run_id": contract.run_id, "source": self.source, "kind": contract.kind,
            "model_type": contract.model_type, "labels": contract.labels,
            "positive_label": contract.positive_label, "threshold": contract.threshold,
            "inputs": [spec.model_dump(exclude_defaults=True) for spec in contract.inputs],
            "metrics": contract.metrics, "created_at": contract.created_at, "loaded_at": self.loaded_at,
        }


def open_session(path: Path, config: OnnxRuntimeConfig) -> ort.InferenceSession:
    """CPU session sized by the config. Small models want one thread and no spinning: the request
    concurrency already keeps the cores busy, and spinning threads would steal the event loop's CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = ORT_LOG_ERRORS_ONLY
    if not config.allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_inputs(contract: ModelContract, session: ort.InferenceSession) -> None:
    """The graph must take exactly the inputs the contract describes, or every request would fail."""
    graph = {node.name for node in session.get_inputs()}
    promised = {spec.name for spec in contract.inputs}
    if graph != promised:
        raise ValueError(f"contract and ONNX graph disagree on inputs: only in contract {sorted(promised - graph)}, "
                         f"only in graph {sorted(graph - promised)}")


def load_model(resolved: ResolvedModel, model_config: ModelConfig, config: ServingConfig) -> LoadedModel:
    """Open one bundle and prove it predicts (on the adapter's example) before anyone relies on it."""
    contract = ModelContract.load(resolved.directory)
    if contract.name != model_config.name:
        raise ValueError(f"{resolved.directory}: contract is for model {contract.name!r}, not {model_config.name!r}")
    session = open_session(resolved.directory / ONNX_FILE, config.onnxruntime)
    check_inputs(contract, session)
    adapter = adapter_class(contract.kind)(contract, max_batch=config.limits.max_batch, example=model_config.example)
    model = LoadedModel(name=resolved.name, version=resolved.version, alias=resolved.alias, source=resolved.source,
                        contract=contract, session=session, adapter=adapter, loaded_at=time.time())
    model.predict(adapter.example_records())
    return model


class ModelStore:
    """Current version of every configured model, by name, with the reason a model is missing."""

    def __init__(self, config: ServingConfig, source: ModelSource,
                 on_change: Callable[[str, LoadedModel | None, LoadedModel], None] | None = None):
        self.config = config
        self.source = source
        self.on_change = on_change
        self._models: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {model.name: "not loaded yet" for model in config.models}
        self._reload_lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.config.models]

    def get(self, name: str) -> LoadedModel:
        """The current version; raises ModelUnavailable with the reason when there is none."""
        model = self._models.get(name)
        if model is None:
            raise ModelUnavailable(f"model {name!r} is not loaded: {self._errors.get(name, 'unknown model')}")
        return model

    def current(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    def problems(self) -> dict[str, str]:
        """Why each configured model that is not serving is not serving (empty: all ready)."""
        return {name: self._errors.get(name, "not loaded") for name in self.names if name not in self._models}

    def load(self, name: str) -> LoadedModel:
        """Resolve, load and swap in the current version of `name`; on failure keep what was serving."""
        model_config = self.config.model(name)
        try:
            resolved = self.source.resolve(name, model_config.alias)
            model = load_model(resolved, model_config, self.config)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            log.error("model %r failed to load: %s", name, reason, exc_info=True)
            if name not in self._models:
                self._errors[name] = reason
            raise
        previous = self._models.get(name)
        self._models[name] = model  # the atomic swap: one reference assignment
        self._errors.pop(name, None)
        log.info("serving %s version %s (%s)%s", name, model.version, model.source,
                 f", replacing version {previous.version}" if previous else "")
        if self.on_change:
            self.on_change(name, previous, model)
        return model

    def load_all(self) -> None:
        """Start-up: try every model; one that fails is logged and reported by /ready, the rest serve."""
        for name in self.names:
            try:
                self.load(name)
            except Exception:  # already logged and recorded by load()
                pass

    def reload(self, names: list[str] | None = None) -> dict[str, dict]:
        """Switch each model to its alias's current version. One reload at a time."""
        results: dict[str, dict] = {}
        with self._reload_lock:
            for name in names or self.names:
                previous = self._models.get(name)
                before = previous.version if previous else None
                try:
                    results[name] = {"ok": True, "previous": before, "version": self.load(name).version}
                except Exception as error:
                    results[name] = {"ok": False, "previous": before, "error": f"{type(error).__name__}: {error}"}
        return results
