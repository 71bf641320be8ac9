"""`python -m serving.bundle`: export a registered model as a self-contained bundle (what `make bundle` does).

    python -m serving.bundle --model churn [--alias champion] [--out dist/bundles/churn]

The bundle is the flat folder the server reads in deployment (`python -m serving --bundles dist/bundles`):
`model.onnx`, `contract.json` and `bundle.json` (registered name, version, alias, source). It is loaded
and run once on the contract's example before it is written, so a bundle that exists is one that serves.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from pipelines.common.contract import CONTRACT_FILE, ONNX_FILE
from serving.config import DEFAULT_CONFIG, ModelConfig, ServingConfig, load_serving_config
from serving.models import load_model
from serving.sources import BUNDLE_META, RegistrySource, ResolvedModel

log = logging.getLogger(__name__)
BUNDLE_FILES = (ONNX_FILE, CONTRACT_FILE, BUNDLE_META)


def export_bundle(config: ServingConfig, name: str, alias: str, out: Path) -> ResolvedModel:
    """Resolve `name@alias` in the registry, prove it serves, copy it to `out`."""
    model_config = next((m for m in config.models if m.name == name), ModelConfig(name=name, alias=alias))
    resolved = RegistrySource(config.source.tracking_uri, config.source.cache_dir).resolve(name, alias)
    load_model(resolved, model_config, config)  # proves it loads and predicts
    out.mkdir(parents=True, exist_ok=True)
    for file in BUNDLE_FILES:
        shutil.copy2(resolved.directory / file, out / file)
    return ResolvedModel(name=name, version=resolved.version, alias=alias, directory=out, source=resolved.source)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.bundle", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="registered model name, e.g. churn")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--out", help="bundle folder (default: <source.bundle_root>/<model> from the config)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_serving_config(args.config)
    out = Path(args.out) if args.out else config.source.bundle_root / args.model
    bundle = export_bundle(config, args.model, args.alias, out)
    print(f"bundle of {bundle.name} version {bundle.version} ({bundle.source}, alias {args.alias}) written to {out}")


if __name__ == "__main__":
    main()
