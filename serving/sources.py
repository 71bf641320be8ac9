"""Where a served model comes from: an exported bundle folder, or an alias in the MLflow registry.

Both end in the same place, a flat bundle folder (`modelpkg.package`'s layout: the graph, the contract
and the assets the contract lists, plus `bundle.json` naming the registered version), so everything
after this module is the same in development and in deployment. Only the registry source imports
MLflow, and only when it is used: a server started from bundles never loads it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelpkg.package import PackageFiles, load_model, package_files, resolve_version, write_bundle
from serving.config import SourceConfig

log = logging.getLogger(__name__)

BUNDLE_META = "bundle.json"  # registered name, version, alias and source URI of a bundle


@dataclass(frozen=True)
class ResolvedModel:
    """A model version on local disk, in the flat bundle layout, its files checked."""

    name: str
    version: str
    alias: str
    files: PackageFiles
    source: str  # where it came from: models:/<name>/<version>, or the bundle folder

    @property
    def directory(self) -> Path:
        return self.files.directory

    def write_meta(self, directory: Path) -> None:
        meta = {"name": self.name, "version": self.version, "alias": self.alias, "source": self.source}
        (directory / BUNDLE_META).write_text(json.dumps(meta, indent=2) + "\n")


class ModelSource(Protocol):
    def resolve(self, name: str, alias: str) -> ResolvedModel: ...


class BundleSource:
    """Deployment: `<root>/<name>/` holds each model, as `python -m serving.bundle` exported it."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def resolve(self, name: str, alias: str) -> ResolvedModel:
        return self.resolve_in(self.root / name, name, alias)

    def resolve_shadow(self, name: str, alias: str) -> ResolvedModel:
        """A shadow challenger lives beside its model, in `<root>/<name>@<alias>/`."""
        return self.resolve_in(self.root / f"{name}@{alias}", name, alias)

    @staticmethod
    def resolve_in(directory: Path, name: str, alias: str) -> ResolvedModel:
        files = package_files(directory)  # names whatever is missing, assets included
        meta_file = directory / BUNDLE_META
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        # A bundle without bundle.json is named relative to the bundle root: /v1/models shows `source`, and a
        # local path would tell every client how the machine is laid out.
        return ResolvedModel(name=name, version=str(meta.get("version", "unknown")), alias=meta.get("alias", alias),
                             files=files, source=meta.get("source", f"bundle {directory.name}/"))


class RegistrySource:
    """Development: resolve `<name>@<alias>` in MLflow and download that version to a local cache.

    The cache holds one bundle per version and run (`<name>/v<version>-<run id>`): a registered version
    never changes, so it is downloaded once; the run id keeps two stores' "version 1" apart.
    """

    def __init__(self, tracking_uri: str, cache_dir: Path):
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir)

    def resolve(self, name: str, alias: str) -> ResolvedModel:
        client = self._client()
        version = resolve_version(name, alias)  # LookupError naming the alias when none holds it
        run_id = client.get_model_version(name, version).run_id
        directory = self.cache_dir / name / f"v{version}-{run_id}"
        source = f"models:/{name}/{version}"
        if not (directory / BUNDLE_META).is_file():
            self._download(name, version, directory)
        resolved = ResolvedModel(name=name, version=version, alias=alias, files=package_files(directory), source=source)
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

    def _download(self, name: str, version: str, directory: Path) -> None:
        download_bundle(name, version, directory)
        log.info("downloaded models:/%s/%s to %s", name, version, directory)


def download_bundle(name: str, version: str, directory: Path) -> PackageFiles:
    """A registered version (current MLflow registry) -> a bundle folder: downloaded into a temporary
    folder, then flattened (graph, contract, assets; write_bundle never leaves half a bundle under the
    final name)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
        return write_bundle(load_model(name, version=version, dst_path=tmp).files, directory)


def source_for(config: SourceConfig) -> ModelSource:
    if config.kind == "bundles":
        return BundleSource(config.bundle_root)
    return RegistrySource(config.tracking_uri, config.cache_dir)
