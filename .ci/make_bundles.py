"""Build one bundle of each kind (churn, toy image, toy text) for the extras check, with the full venv.

    python .ci/make_bundles.py OUT_DIR

Writes OUT_DIR/bundles/<name>/ (each registered and exported through the project's own release path, in a
throwaway MLflow store under OUT_DIR) and OUT_DIR/serving.yaml: configs/serving.yaml serving those three.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{out}/mlflow.db"
    sys.path.insert(0, str(REPO))
    from tests import factories

    for name, kind in factories.KINDS.items():
        released = kind.export()
        factories.bundle(name, released.version, out / "bundles" / name)
    config = yaml.safe_load((REPO / "configs" / "serving.yaml").read_text())
    config["models"] = [{"name": name} for name in factories.KINDS]
    config["prediction_log"]["path"] = str(out / "predictions.db")
    config["source"] |= {"kind": "bundles", "bundle_root": str(out / "bundles")}
    (out / "serving.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"bundles of {', '.join(factories.KINDS)} and serving.yaml in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
