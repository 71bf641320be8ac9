"""The models being served: load a bundle into an onnxruntime session, and swap versions atomically.

A `LoadedModel` is immutable: contract, session, adapter and settings of one version, together. The
store maps each configured name to its current `LoadedModel`; a request takes that object once, at its
start, and uses it to the end. Reload builds the new version completely (download, session, warm-up
prediction) before one dict assignment makes it current, so requests in flight finish on the old
session, new ones start on the new, and none sees half a model. Python drops the old session once its
last request ends.

The session, its input check, the codec and the label rule are `modelpkg.runtime`'s (`Predictor`,
`answers`): the server scores exactly as export's parity check and monitoring do. A model served with
`batching.enabled` has its own micro-batcher (serving/batcher.py), one per loaded version, so a batch
never mixes two versions across a reload.

A model that fails to load is recorded with its reason (for /ready and the log) and never stops the
other models from serving; a failed reload keeps the previous version serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import onnxruntime as ort

from modelpkg.contract import ModelContract
from modelpkg.runtime import Predictor, SessionSettings
from serving.adapter import Adapter
from serving.batcher import MicroBatcher
from serving.config import ModelConfig, ModelSettings, ServingConfig
from serving.errors import public, report
from serving.shadow import resolve_shadow
from serving.sources import BundleSource, ModelSource, ResolvedModel

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """The model is configured but not loaded (its reason says why)."""


class ModelLoadFailed(RuntimeError):
    """A version could not be loaded. The message is fit for clients (an error id, no details): the
    details are in the server log under that id."""


class SchemaChanged(RuntimeError):
    """A reload found a version whose inputs differ from the serving one's: refused unless allowed."""

    def __init__(self, name: str, version: str, changes: list[str]):
        super().__init__(f"{name} v{version} takes other inputs than the serving version: {'; '.join(changes)} "
                         f"(the serving version stays; reload with allow_schema_change=true to switch anyway)")
        self.version = version
        self.changes = changes


# What a client's record must look like, input by input: a change in any of these breaks some client's
# requests (422) and leaves monitoring with rows it cannot compare. Numeric bounds (minimum, maximum,
# training_range) follow each retraining's data and are not compared; `allowed` and `values` are sets.
SCHEMA_FIELDS = ("dtype", "shape", "allowed", "values", "integer")
SET_FIELDS = ("allowed", "values")


def input_schema(contract: ModelContract) -> dict[str, dict]:
    """Each input's SCHEMA_FIELDS, by input name."""
    return {spec.name: {field: getattr(spec, field, None) for field in SCHEMA_FIELDS} for spec in contract.inputs}


def schema_changes(old: ModelContract, new: ModelContract) -> list[str]:
    """What differs between two contracts' request schemas, in words; empty when a client cannot tell."""
    changes = [f"{field}: {getattr(old, field)!r} -> {getattr(new, field)!r}" for field in ("kind", "id_field")
               if getattr(old, field) != getattr(new, field)]
    before, after = input_schema(old), input_schema(new)
    changes += [f"input {name!r} removed" for name in before if name not in after]
    changes += [f"input {name!r} added" for name in after if name not in before]
    for name in (name for name in before if name in after):
        changes += [_field_change(name, field, before[name][field], after[name][field]) for field in SCHEMA_FIELDS
                    if _comparable(field, before[name][field]) != _comparable(field, after[name][field])]
    return changes


def _comparable(field: str, value):
    return frozenset(value) if field in SET_FIELDS and value is not None else value


def _field_change(name: str, field: str, old, new) -> str:
    if field in SET_FIELDS and old is not None and new is not None:
        removed, added = [v for v in old if v not in new], [v for v in new if v not in old]
        return f"{name}.{field}: removed {removed}, added {added}"
    return f"{name}.{field}: {old!r} -> {new!r}"


@dataclass(frozen=True)
class LoadedModel:
    """One version, ready to predict: what it is (contract, version), what runs it (session, adapter) and
    how it is served (settings: limits, threads, execution)."""

    name: str
    version: str
    alias: str
    source: str
    contract: ModelContract
    predictor: Predictor  # the codec and the onnxruntime session
    adapter: Adapter
    settings: ModelSettings
    loaded_at: float
    batcher: MicroBatcher | None = None  # batching.enabled: concurrent requests share graph calls

    def predict(self, records: list[Any]) -> list[dict]:
        """Decoded records -> one answer per record."""
        return self.adapter.outputs(*self.predictor.scores(records))

    @property
    def session(self) -> ort.InferenceSession:
        return self.predictor.session

    def decode_and_predict(self, decode: Callable[[], list[Any]]) -> tuple[list[Any], list[dict]]:
        """The whole CPU part of a request (decode, feeds, graph): what `execution: thread` runs off the loop."""
        records = decode()
        return records, self.predict(records)

    def describe(self) -> dict:
        """What /v1/models says about this model."""
        contract, settings = self.contract, self.settings
        return {
            "name": self.name, "status": "loaded", "version": self.version, "alias": self.alias,
            "run_id": contract.run_id, "source": self.source, "kind": contract.kind,
            "model_type": contract.model_type, "labels": contract.labels,
            "positive_label": contract.positive_label, "threshold": contract.threshold,
            "id_field": contract.id_field, "media_type": self.adapter.media_type,
            "inputs": [spec.model_dump(exclude_defaults=True) for spec in contract.inputs],
            "metrics": contract.metrics, "created_at": contract.created_at, "loaded_at": self.loaded_at,
            "serving": {"execution": settings.execution, "max_batch": settings.max_batch,
                        "max_body_bytes": settings.max_body_bytes, "media_types": list(self.adapter.media_types),
                        "batching": settings.batching.model_dump(), "top_k": settings.top_k},
        }


def load_model(resolved: ResolvedModel, model_config: ModelConfig, config: ServingConfig,
               on_batch: Callable[[str, int, int], None] | None = None) -> LoadedModel:
    """Open one bundle and prove it predicts (on the adapter's example) before anyone relies on it.
    `on_batch(name, requests, records)` hears of every batched graph call (the metrics)."""
    contract = resolved.files.contract
    if contract.name != model_config.name:
        raise ValueError(f"{resolved.directory}: contract is for model {contract.name!r}, not {model_config.name!r}")
    settings = config.settings(model_config.name)
    predictor = Predictor(resolved.files, settings=SessionSettings(**settings.onnxruntime.model_dump()),
                          max_batch=settings.max_batch, example=model_config.example)
    model = LoadedModel(name=resolved.name, version=resolved.version, alias=resolved.alias, source=resolved.source,
                        contract=contract, predictor=predictor, adapter=Adapter(predictor.codec, top_k=settings.top_k),
                        settings=settings, loaded_at=time.time())
    model.predict(model.adapter.example_records())
    if not settings.batching.enabled:
        return model
    tell = (lambda requests, records: on_batch(model.name, requests, records)) if on_batch else None
    return replace(model, batcher=MicroBatcher(model.predict, max_wait_ms=settings.batching.max_wait_ms,
                                               max_records=settings.batching.max_records, on_batch=tell))


class ModelStore:
    """Current version of every configured model, by name, with the reason a model is missing."""

    def __init__(self, config: ServingConfig, source: ModelSource,
                 on_change: Callable[[str, LoadedModel | None, LoadedModel], None] | None = None,
                 on_batch: Callable[[str, int, int], None] | None = None):
        self.config = config
        self.source = source
        self.on_change = on_change
        self.on_batch = on_batch
        self._models: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {model.name: "not loaded yet" for model in config.models}
        self._shadows: dict[str, LoadedModel] = {}  # each model's shadow challenger, when one is loaded
        self._shadow_errors: dict[str, str] = {}  # why a model with shadow enabled has none
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

    def shadow(self, name: str) -> LoadedModel | None:
        """The challenger scored beside `name` (serving/shadow.py), or None: shadow off, or none loaded."""
        return self._shadows.get(name)

    def shadow_state(self, name: str) -> dict:
        """What /v1/models says of a model's shadow: off, loaded (version, alias) or unavailable (why)."""
        shadow_config = self.config.model(name).shadow
        if not shadow_config.enabled:
            return {"enabled": False}
        shadow = self._shadows.get(name)
        if shadow is None:
            return {"enabled": True, "alias": shadow_config.alias, "status": "unavailable",
                    "error": self._shadow_errors.get(name, "not loaded yet")}
        return {"enabled": True, "alias": shadow_config.alias, "status": "loaded", "version": shadow.version,
                "source": shadow.source}

    def load_shadow(self, name: str) -> LoadedModel | None:
        """Load (or reload) the challenger that shadows `name`, when enabled. A missing or broken challenger
        only means no shadow: recorded for /v1/models, never raised (the champion serves regardless)."""
        shadow_config = self.config.model(name).shadow
        champion = self._models.get(name)
        if not shadow_config.enabled or champion is None:
            self._shadows.pop(name, None)
            return None
        try:
            shadow = self._load_shadow(name, shadow_config.alias, champion)
        except Exception as error:  # noqa: BLE001 - a shadow never stops serving
            self._shadows.pop(name, None)
            self._shadow_errors[name] = f"{type(error).__name__}: {error}"[:500]
            log.warning("no shadow for %s (alias %r): %s", name, shadow_config.alias, self._shadow_errors[name])
            return None
        self._shadows[name] = shadow
        self._shadow_errors.pop(name, None)
        log.info("shadowing %s v%s with v%s (%s)", name, champion.version, shadow.version, shadow_config.alias)
        return shadow

    def _load_shadow(self, name: str, alias: str, champion: LoadedModel) -> LoadedModel:
        """A shadow scores the champion's decoded records: it must take the same inputs. No batcher of its
        own: the scorer thread batches (serving/shadow.py)."""
        shadow = load_model(resolve_shadow(self.source, name, alias), self.config.model(name), self.config)
        changes = schema_changes(champion.contract, shadow.contract)
        if changes:
            raise SchemaChanged(name, shadow.version, changes)
        return replace(shadow, batcher=None)

    def problems(self, *, required_only: bool = False) -> dict[str, str]:
        """Why each configured model that is not serving is not serving (empty: all ready)."""
        return {model.name: self._errors.get(model.name, "not loaded") for model in self.config.models
                if model.name not in self._models and (model.required or not required_only)}

    def load(self, name: str, *, allow_schema_change: bool = False) -> LoadedModel:
        """Resolve, load and swap in the current version of `name`; on failure keep what was serving.
        A version whose inputs differ from the serving one's is refused (SchemaChanged) unless allowed.
        A failure is logged in full under an error id; /ready, /v1/models and the raised
        ModelLoadFailed carry only that id (an exception's text names local paths)."""
        model_config = self.config.model(name)
        try:
            resolved = self.source.resolve(name, model_config.alias)
            model = load_model(resolved, model_config, self.config, self.on_batch)
        except Exception as error:
            reason = public("failed to load", report(log, f"model {name!r} failed to load", error))
            if name not in self._models:
                self._errors[name] = reason
            raise ModelLoadFailed(reason) from error
        previous = self._models.get(name)
        changes = schema_changes(previous.contract, model.contract) if previous and not allow_schema_change else []
        if changes:
            log.warning("reload of %s refused: v%s takes other inputs than v%s: %s", name, model.version,
                        previous.version, "; ".join(changes))
            raise SchemaChanged(name, model.version, changes)
        self._models[name] = model  # the atomic swap: one reference assignment
        self._errors.pop(name, None)
        log.info("serving %s version %s (%s)%s", name, model.version, model.source,
                 f", replacing version {previous.version}" if previous else "")
        if self.on_change:
            self.on_change(name, previous, model)
        return model

    async def drain(self) -> None:
        """Shutdown: run what still waits in each serving version's batcher and answer it (a version
        replaced by a reload gets no new requests, and its waiting ones run when their window passes)."""
        for name in self.names:
            model = self._models.get(name)
            if model is not None and model.batcher is not None:
                await model.batcher.close()

    def load_all(self) -> None:
        """Start-up: try every model; one that fails is logged and reported by /ready, the rest serve."""
        for name in self.names:
            try:
                self.load(name)
            except Exception:  # already logged and recorded by load()
                pass
            self.load_shadow(name)

    def reload(self, names: list[str] | None = None, *, allow_schema_change: bool = False) -> dict[str, dict]:
        """Switch each model to its alias's current version. One reload at a time. Each answer says what
        now serves: its version, its source and whether it came from a bundle folder (which a registry
        promotion does not change) or from the registry. A version with other inputs is refused (its
        answer lists `schema_changes`) unless `allow_schema_change`."""
        results: dict[str, dict] = {}
        with self._reload_lock:
            for name in names or self.names:
                previous = self._models.get(name)
                before = previous.version if previous else None
                try:
                    model = self.load(name, allow_schema_change=allow_schema_change)
                    results[name] = {"ok": True, "previous": before, "version": model.version, "source": model.source,
                                     "from": "bundles" if isinstance(self.source, BundleSource) else "registry"}
                except SchemaChanged as refused:
                    results[name] = {"ok": False, "previous": before, "version": refused.version,
                                     "error": str(refused), "schema_changes": refused.changes}
                except ModelLoadFailed as error:
                    results[name] = {"ok": False, "previous": before, "error": str(error)}
                except Exception as error:  # after the load (a listener): logged, answered by id only
                    results[name] = {"ok": False, "previous": before,
                                     "error": public("failed to switch", report(log, f"reload of {name!r}", error))}
                if self.config.model(name).shadow.enabled:  # hot reload reloads the shadow too
                    self.load_shadow(name)
                    results[name]["shadow"] = self.shadow_state(name)
        return results
