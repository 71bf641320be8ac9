"""Where a served model comes from: an exported bundle folder, or an alias in the MLflow registry.

Both end in the same place, a flat bundle folder (`model.onnx` + `contract.json`, plus `bundle.json`
naming the registered version), so everything after this module is the same in development and in
deployment. Only the registry source imports MLflow, and only when it is used: a server started from
bundles never loads it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipelines.common.contract import CONTRACT_FILE, ONNX_FILE
from serving.config import SourceConfig

log = logging.getLogger(__name__)

BUNDLE_META = "bundle.json"  # registered name, version, alias and source URI of a bundle
MLFLOW_EXTRA_FILES = "extra_files"  # where mlflow's log_model(extra_files=...) puts the contract


@dataclass(frozen=True)
class ResolvedModel:
    """A model version on local disk, in the flat bundle layout."""

    name: str
    version: str
    alias: str
    directory: Path
    source: str  # where it came from: models:/churn/3, or the bundle folder

    def write_meta(self, directory: Path) -> None:
        meta = {"name": self.name, "version": self.version, "alias": self.alias, "source": self.source}
        (directory / BUNDLE_META).write_text(json.dumps(meta, indent=2) + "\n")


class ModelSource(Protocol):
    def resolve(self, name: str, alias: str) -> ResolvedModel: ...


def check_bundle(directory: Path) -> None:
    missing = [file for file in (ONNX_FILE, CONTRACT_FILE) if not (directory / file).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory}: not a model bundle, missing {', '.join(missing)}")


class BundleSource:
    """Deployment: `<root>/<name>/` holds each model, as `python -m serving.bundle` exported it."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def resolve(self, name: str, alias: str) -> ResolvedModel:
        directory = self.root / name
        check_bundle(directory)
        meta_file = directory / BUNDLE_META
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        return ResolvedModel(name=name, version=str(meta.get("version", "unknown")),
                             alias=meta.get("alias", alias), directory=directory,
                             source=meta.get("source", str(directory)))


class RegistrySource:
    """Development: resolve `<name>@<alias>` in MLflow and download that version to a local cache.

    The cache holds one folder per version and run (`<name>/v<version>-<run id>`): a registered version
    never changes, so it is downloaded once; the run id keeps two stores' "version 1" apart.
    """

    def __init__(self, tracking_uri: str, cache_dir: Path):
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir)

    def resolve(self, name: str, alias: str) -> ResolvedModel:
        client = self._client()
        version = client.get_model_version_by_alias(name, alias)
        directory = self.cache_dir / name / f"v{version.version}-{version.run_id}"
        source = f"models:/{name}/{version.version}"
        if not (directory / BUNDLE_META).is_file():
            self._download(source, directory)
        resolved = ResolvedModel(name=name, version=str(version.version), alias=alias, directory=directory,
                                 source=source)
        resolved.write_meta(directory)
        return resolved

    def _client(self):
        """MLflow, imported here and only here. The whole process talks to one store."""
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return MlflowClient()

    def _download(self, uri: str, directory: Path) -> None:
        """Download into a temporary folder, flatten it into a bundle, then rename: never half a model."""
        import mlflow

        directory.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
            downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=f"{tmp}/mlflow"))
            bundle = Path(tmp) / "bundle"
            bundle.mkdir()
            shutil.copy2(downloaded / ONNX_FILE, bundle / ONNX_FILE)
            contract = downloaded / MLFLOW_EXTRA_FILES / CONTRACT_FILE
            shutil.copy2(contract if contract.is_file() else downloaded / CONTRACT_FILE, bundle / CONTRACT_FILE)
            check_bundle(bundle)
            shutil.rmtree(directory, ignore_errors=True)
            bundle.rename(directory)
        log.info("downloaded %s to %s", uri, directory)


def source_for(config: SourceConfig) -> ModelSource:
    if config.kind == "bundles":
        return BundleSource(config.bundle_root)
    return RegistrySource(config.tracking_uri, config.cache_dir)
