"""Where a model package's files live, and the two calls that put one into MLflow and get it back.

One layout, two homes:
  - a bundle folder (deployment, tests): `model.onnx`, `contract.json` and the contract's assets side by side;
  - an MLflow ONNX model (the registry): `model.onnx` at its root, the contract and assets under
    `extra_files/` (where `mlflow.onnx.log_model(extra_files=...)` puts them).
`package_files` reads either; `log_model` writes the second; `load_model` resolves a registered name at an
alias or version and returns the local folder with the contract read. Nobody else knows a file name.

The export run that logs a package also logs the monitoring reference (`contract.REFERENCE_ARTIFACT`: held-out
rows with this model's predictions) and the test rows (`contract.HOLDOUT_ARTIFACT`: the simulator's traffic),
found again through the contract's run id. Imports pydantic and the standard library only; MLflow is
imported inside `log_model` and `load_model`, so a server reading bundles never loads it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from modelpkg.contract import CONTRACT_FILE, ModelContract

ONNX_FILE = "model.onnx"
MLFLOW_EXTRA_FILES = "extra_files"  # where MLflow's ONNX flavour keeps extra files beside the graph
MLFLOW_MODEL_NAME = "onnx"  # the logged model's name within its run (runs:/<id>/onnx)


class PackageError(FileNotFoundError):
    """A folder that is not a complete model package (the message names what is missing)."""


@dataclass(frozen=True)
class PackageFiles:
    """A package on local disk: its graph, its contract and the folder its assets are in."""

    directory: Path
    onnx_path: Path
    files_dir: Path  # holds contract.json and the assets
    contract: ModelContract

    def asset(self, name: str) -> Path:
        return self.files_dir / name

    def all_files(self) -> list[Path]:
        return [self.onnx_path, self.files_dir / CONTRACT_FILE, *(self.asset(a) for a in self.contract.assets)]


def package_files(directory: str | Path) -> PackageFiles:
    """Read a bundle folder or a downloaded MLflow ONNX model; raise naming any missing file."""
    directory = Path(directory)
    files_dir = directory / MLFLOW_EXTRA_FILES if (directory / MLFLOW_EXTRA_FILES / CONTRACT_FILE).is_file() else directory
    missing = [name for name, path in ((ONNX_FILE, directory / ONNX_FILE), (CONTRACT_FILE, files_dir / CONTRACT_FILE))
               if not path.is_file()]
    if missing:
        raise PackageError(f"{directory}: not a model package, missing {', '.join(missing)}")
    contract = ModelContract.load(files_dir)
    absent = [asset for asset in contract.assets if not (files_dir / asset).is_file()]
    if absent:
        raise PackageError(f"{directory}: the contract lists asset(s) {absent} that are not there")
    return PackageFiles(directory, directory / ONNX_FILE, files_dir, contract)


def write_bundle(files: PackageFiles, out: str | Path) -> PackageFiles:
    """Copy a package into the flat bundle layout at `out` (via a temporary sibling: never half a bundle)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for path in files.all_files():
        shutil.copy2(path, staging / path.name)
    package_files(staging)  # complete before it takes the name
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return package_files(out)


def save_package(directory: str | Path, onnx_bytes: bytes, contract: ModelContract,
                 assets: dict[str, str | Path] | None = None) -> PackageFiles:
    """Write a bundle from parts: the graph, the contract and the asset files (name -> source path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ONNX_FILE).write_bytes(onnx_bytes)
    for name, source in (assets or {}).items():
        shutil.copy2(source, directory / name)
    contract.save(directory)
    return package_files(directory)


def log_model(files: PackageFiles, *, signature=None, pip_requirements: list[str] | None = None,
              metadata: dict | None = None) -> str:
    """Log a package as an MLflow ONNX model in the active run (contract and assets as extra files);
    returns its model URI, ready for `mlflow.register_model`."""
    import mlflow
    import onnx

    info = mlflow.onnx.log_model(
        onnx.load(str(files.onnx_path)), name=MLFLOW_MODEL_NAME, save_as_external_data=False,
        extra_files=[str(path) for path in files.all_files()[1:]], signature=signature,
        pip_requirements=pip_requirements, onnx_execution_providers=["CPUExecutionProvider"],
        metadata={"kind": files.contract.kind, "model_type": files.contract.model_type} | (metadata or {}),
    )
    return info.model_uri


@dataclass(frozen=True)
class RegisteredPackage:
    name: str
    version: str
    files: PackageFiles

    @property
    def contract(self) -> ModelContract:
        return self.files.contract


def resolve_version(name: str, alias: str) -> str:
    """The version an alias points at now (LookupError naming what to do when there is none)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        raise LookupError(f"no version of registered model '{name}' holds alias '{alias}' in "
                          f"{mlflow.get_tracking_uri()}: train and register one first (make {name})") from error


def load_model(name: str, *, alias: str | None = None, version: str | None = None,
               dst_path: str | Path | None = None) -> RegisteredPackage:
    """Download `name` at a version (or the version an alias points at, resolved once: an alias may move
    meanwhile) from the current MLflow registry."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if (alias is None) == (version is None):
        raise ValueError("load_model takes an alias or a version, not both and not neither")
    version = str(version) if version is not None else resolve_version(name, alias)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        directory = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}",
                                                        dst_path=None if dst_path is None else str(dst_path))
    except MlflowException as error:
        raise LookupError(f"no version {version} of registered model '{name}' in {mlflow.get_tracking_uri()}") from error
    return RegisteredPackage(name, version, package_files(directory))
