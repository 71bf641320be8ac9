"""`python -m serving.bundle`: export a registered model as a self-contained bundle (what `make bundle` does).

    python -m serving.bundle --model NAME [--alias champion] [--out dist/bundles/NAME]

The bundle is the flat folder the server reads in deployment (`python -m serving --bundles dist/bundles`):
the package's files (`model.onnx`, `contract.json` and any assets the contract lists, a tokenizer say,
in `modelpkg.package`'s layout) and `bundle.json` (registered name, version, alias, source). It is loaded
and run once on the model's example before it is written, so a bundle that exists is one that serves.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from modelpkg.package import write_bundle
from serving.config import DEFAULT_CONFIG, ModelConfig, ServingConfig, load_serving_config, with_overrides
from serving.models import load_model
from serving.sources import RegistrySource, ResolvedModel

log = logging.getLogger(__name__)


def export_bundle(config: ServingConfig, name: str, alias: str, out: Path) -> ResolvedModel:
    """Resolve `name@alias` in the registry, prove it serves, copy it to `out`."""
    if name not in {model.name for model in config.models}:  # not served yet: default settings
        config = with_overrides(config, models=[*config.model_dump()["models"], ModelConfig(name=name).model_dump()])
    resolved = RegistrySource(config.source.tracking_uri, config.source.cache_dir).resolve(name, alias)
    load_model(resolved, config.model(name), config)  # proves it loads and predicts
    bundle = ResolvedModel(name=name, version=resolved.version, alias=alias, files=write_bundle(resolved.files, out),
                           source=resolved.source)
    bundle.write_meta(out)
    return bundle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.bundle", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="registered model name (as in configs/serving.yaml)")
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
