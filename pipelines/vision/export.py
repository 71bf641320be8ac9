"""Export stage: the shipped ONNX graph released through the common path as `vision`.

What is vision's own: the contract fields (one image input [batch, 3, H, W], the classes, the
preprocessing the codec applies: size, colour mode, mean and std, the pixel limit) and the "native"
side of the parity check: the same graph fed with tensors from the training path (uint8 array ->
`to_tensor`), while the release scores the package through the serving codec (PNG bytes -> base64
request -> Pillow decode -> `normalise`). Their agreement on every test image is the preprocessing
parity serving relies on.
"""

from __future__ import annotations

import numpy as np
import onnx

from modelpkg.contract import InputSpec
from modelpkg.runtime import open_session
from pipelines.common import tracking
from pipelines.common.optimize import shipped_graph
from pipelines.common.release import Candidate, release
from pipelines.common.runner import StageContext
from pipelines.common.torch_onnx import PROBABILITIES
from pipelines.vision.model import to_tensor
from pipelines.vision.optimize import INPUT
from pipelines.vision.train import load_split, load_trained, split_images


def contract_fields(labels: list[str], graph_fields: dict, variant: str, settings, config) -> dict:
    shape = [None, 3, settings.height, settings.width]
    return dict(kind="image_classifier", model_type=f"resnet18 ({config.model.weights} weights, {variant})",
                inputs=[InputSpec(name=INPUT, dtype="float32", shape=shape)], **graph_fields,
                labels=labels, preprocessing=settings.model_dump())


def native_probabilities(graph_path, images) -> np.ndarray:
    session = open_session(graph_path)
    return np.concatenate([session.run([PROBABILITIES], {INPUT: images[i:i + 64].numpy()})[0]
                           for i in range(0, len(images), 64)])


def run(ctx: StageContext) -> None:
    config = ctx.config
    shipped = shipped_graph(ctx)
    graph_path = shipped.path
    _, labels, settings = load_trained(ctx)
    test, valid = load_split(ctx, "test"), load_split(ctx, "valid")
    onnx.checker.check_model(str(graph_path))
    release(ctx, Candidate(
        onnx_bytes=graph_path.read_bytes(),
        contract_fields=contract_fields(labels, shipped.contract_fields, shipped.variant, settings, config),
        native_test=native_probabilities(graph_path, to_tensor(split_images(test), settings)),
        test=test.drop(columns=["row"]), valid=valid.drop(columns=["row"]),
        pip_requirements=tracking.pinned_requirements("onnxruntime", "pillow"),
    ), config.export)
