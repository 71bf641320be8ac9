"""Export stage: the shipped ONNX graph and its tokenizer, released through the common path as `text`.

What is text's own: the contract fields (token inputs, labels, the tokenizer as an asset, max length)
and the "native" side of the parity check. Optimize already proved the ONNX graph equals torch; here the
native probabilities are the same graph fed by the *training* tokenizer (transformers), while the release
scores the package through the serving codec (the `tokenizers` library reading tokenizer.json). Their
agreement on every test text is the tokenizer parity serving relies on.
"""

from __future__ import annotations

import numpy as np
import onnx

from modelpkg.codecs import DEFAULT_MAX_BATCH
from modelpkg.contract import InputSpec
from modelpkg.runtime import open_session
from pipelines.common import tracking
from pipelines.common.optimize import shipped_graph
from pipelines.common.release import Candidate, release
from pipelines.common.runner import StageContext
from pipelines.common.torch_onnx import PROBABILITIES
from pipelines.text.optimize import onnx_outputs
from pipelines.text.train import load_split, load_trained

TOKENIZER_FILE = "tokenizer.json"


def contract_fields(graph: onnx.ModelProto, labels: list[str], graph_fields: dict, variant: str, config) -> dict:
    inputs = [InputSpec(name=node.name, dtype="int64", shape=[None, None]) for node in graph.graph.input]
    return dict(kind="text_classifier", model_type=f"{config.model.base_model}-lora-r{config.lora.r} ({variant})",
                inputs=inputs, **graph_fields, labels=labels, assets=[TOKENIZER_FILE],
                preprocessing={"tokenizer": TOKENIZER_FILE, "max_length": config.model.max_length,
                               "pad_token": "[PAD]", "unknown_token": "[UNK]"})


def run(ctx: StageContext) -> None:
    config = ctx.config
    shipped = shipped_graph(ctx)
    graph_path = shipped.path
    _, tokenizer, labels = load_trained(ctx)
    test, valid = load_split(ctx, "test"), load_split(ctx, "valid")
    with tracking.temporary_dir() as tmp:
        tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
        # In the chunks the release scores the package in: a dynamically quantized graph scales activations
        # per batch, so its outputs depend on what else is in the batch (docs/text.md has the numbers).
        native = onnx_outputs(open_session(graph_path), tokenizer, test["text"].tolist(), config.model.max_length,
                              PROBABILITIES, batch_size=DEFAULT_MAX_BATCH)
        release(ctx, Candidate(
            onnx_bytes=graph_path.read_bytes(),
            contract_fields=contract_fields(onnx.load(str(graph_path), load_external_data=False), labels,
                                            shipped.contract_fields, shipped.variant, config),
            native_test=np.asarray(native), test=test, valid=valid, assets={TOKENIZER_FILE: tmp / TOKENIZER_FILE},
            pip_requirements=tracking.pinned_requirements("onnxruntime", "tokenizers"),
        ), config.export)
