"""The contract's own rules, the package layout (bundle and MLflow) and `load_model` against a real registry."""

from __future__ import annotations

import shutil

import mlflow
import pytest
from pydantic import ValidationError

from modelpkg.contract import CONTRACT_FILE, ModelContract
from modelpkg.package import (MLFLOW_EXTRA_FILES, ONNX_FILE, PackageError, load_model, log_model, package_files,
                              write_bundle)
from pipelines.common import registry, tracking
from tests.modelpkg.conftest import contract, image_contract, text_contract


def test_threshold_and_positive_label_go_together_and_need_two_labels():
    with pytest.raises(ValidationError, match="go together"):
        image_contract(threshold=0.5)
    with pytest.raises(ValidationError, match="exactly two labels"):
        image_contract(threshold=0.5, positive_label="red")
    with pytest.raises(ValidationError, match="not one of"):
        text_contract(threshold=0.5, positive_label="neutral")
    with pytest.raises(ValidationError, match="distinct"):
        image_contract(labels=["red", "red", "blue"])
    assert text_contract(threshold=0.3, positive_label="negative").positive_index == 0
    assert text_contract().positive_index == 1  # no positive label named: the last class, as 0/1 orders it


def test_a_contract_round_trips_through_its_file(tmp_path):
    written = text_contract()
    written.save(tmp_path)
    assert ModelContract.load(tmp_path) == written
    assert (tmp_path / CONTRACT_FILE).is_file()


def test_package_files_name_every_missing_file(tmp_path, text_package):
    with pytest.raises(PackageError, match="missing model.onnx, contract.json"):
        package_files(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(text_package.directory, broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(PackageError, match=r"asset\(s\) \['tokenizer.json'\]"):
        package_files(broken)


def test_write_bundle_copies_the_graph_the_contract_and_every_asset(tmp_path, text_package):
    out = write_bundle(text_package, tmp_path / "bundles" / "text")
    assert sorted(p.name for p in out.directory.iterdir()) == ["contract.json", "model.onnx", "tokenizer.json"]
    assert out.contract == text_package.contract
    assert not list((tmp_path / "bundles").glob(".*partial*"))  # no staging folder left behind


def test_log_model_and_load_model_round_trip_through_the_registry(tmp_mlflow, tmp_path, text_package):
    tracking.configure_tracking("toy")
    with mlflow.start_run():
        uri = log_model(text_package)
    version = registry.register_version(uri, "toy")
    registry.set_alias("toy", registry.CHAMPION, version)
    by_alias = load_model("toy", alias=registry.CHAMPION, dst_path=tmp_path / "a")
    by_version = load_model("toy", version=version, dst_path=tmp_path / "b")
    assert by_alias.version == by_version.version == "1"
    assert by_alias.contract == text_package.contract
    # the MLflow layout: graph at the root, contract and assets as extra files
    assert by_alias.files.onnx_path == by_alias.files.directory / ONNX_FILE
    assert by_alias.files.files_dir.name == MLFLOW_EXTRA_FILES
    assert by_alias.files.asset("tokenizer.json").read_bytes() == text_package.asset("tokenizer.json").read_bytes()


def test_load_model_names_what_is_missing(tmp_mlflow):
    tracking.configure_tracking("toy")
    with pytest.raises(LookupError, match="no version of registered model 'toy' holds alias 'champion'"):
        load_model("toy", alias="champion")
    with pytest.raises(ValueError, match="an alias or a version"):
        load_model("toy")


def test_contract_and_package_import_nothing_but_pydantic_and_the_standard_library():
    """What serving reads to find a model must not pull training code (or MLflow) into the server."""
    import subprocess
    import sys

    code = ("import sys, modelpkg.contract, modelpkg.package; "
            "heavy = [m for m in ('mlflow', 'numpy', 'pandas', 'sklearn', 'onnx', 'torch', 'pipelines') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_contract_kinds_are_the_three_the_codecs_serve():
    from modelpkg.codecs import codec_class
    from modelpkg.contract import KINDS

    assert [codec_class(kind).kind for kind in KINDS] == list(KINDS)
    with pytest.raises(ValueError, match="no codec for model kind 'audio_classifier'"):
        codec_class("audio_classifier")
    assert contract(kind="tabular_classifier", inputs=[], probability_output="p", labels=["a", "b"]).kind
