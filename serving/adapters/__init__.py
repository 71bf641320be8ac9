"""Adapters by model kind: the contract's `kind` picks the code that speaks for the model.

Adding a model of a new kind (vision, text) = one adapter module + one entry here + one entry in
configs/serving.yaml; routes, limits, logging, metrics and reload come for free.
"""

from __future__ import annotations

from serving.adapters.base import Adapter, InvalidRequest
from serving.adapters.tabular import TabularClassifier

ADAPTERS: dict[str, type[Adapter]] = {
    "tabular_classifier": TabularClassifier,
    # "image_classifier": ImageClassifier,   (serving/adapters/image.py, when vision lands)
    # "text_classifier": TextClassifier,     (serving/adapters/text.py, when text lands)
}

__all__ = ["ADAPTERS", "Adapter", "InvalidRequest", "adapter_class"]


def adapter_class(kind: str) -> type[Adapter]:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"no serving adapter for model kind {kind!r} (known: {', '.join(ADAPTERS)})") from None
