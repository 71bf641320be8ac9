"""Evaluate stage: the fine-tuned classifier on the test split, beside the baselines trained on the same split.

Logged: accuracy, macro-F1, per-class precision/recall (classification report), confusion matrix,
calibration (expected calibration error and a reliability diagram), the most confident mistakes as a
table, two token attributions for a few test texts, and the comparison table. The attributions answer
two questions: occlusion says how much each word moves the predicted class's probability when left out
(model-agnostic, exact for short texts); attention rollout says where the [CLS] vector the head reads draws
its information from, through all six layers (gradient-free, one forward pass).
"""

from __future__ import annotations

import html
import json

import mlflow
import numpy as np
import pandas as pd
import torch

from pipelines.common.evaluate import log_argmax_evaluation
from pipelines.common.runner import StageContext
from pipelines.common.metrics import softmax
from pipelines.text.model import predict_logits
from pipelines.text.train import label_ids, load_split, load_trained


def occlusion(model, tokenizer, text: str, target: int, max_length: int) -> list[tuple[str, float]]:
    """Each word's share of the decision: P(target | text) - P(target | text without that word)."""
    words = text.split()
    variants = [text] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    p = softmax(predict_logits(model, tokenizer, variants, max_length))[:, target]
    return [(word, float(p[0] - p[i + 1])) for i, word in enumerate(words)]


def attention_rollout(model, tokenizer, text: str, max_length: int) -> list[tuple[str, float]]:
    """Each word's share of what reaches the [CLS] position the head reads (attention rollout, Abnar &
    Zuidema 2020): per layer the heads' mean attention plus the identity for the residual path, rows
    renormalised, multiplied from the first layer to the last; a word's share is the sum over its word
    pieces (the rest goes to [CLS] and [SEP]; words past max_length get 0). It shows where attention flows,
    not what decided the class: occlusion measures that."""
    words = text.split()
    inputs = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length,
                       return_tensors="pt", return_token_type_ids=False)
    model.set_attn_implementation("eager")  # the fused (sdpa) attention returns no attention weights
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    tokens = attentions[0].shape[-1]
    rollout = torch.eye(tokens)
    for layer in attentions:
        mixed = layer[0].mean(0) + torch.eye(tokens)
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    shares = np.zeros(len(words))
    for position, word in enumerate(inputs.word_ids()):
        if word is not None:
            shares[word] += float(rollout[0, position])
    return list(zip(words, shares.tolist()))


def attribution_html(rows: list[tuple[str, str, str, list[tuple[str, float]]]], title: str) -> str:
    """Words shaded green when they push towards the predicted class, red when against."""
    blocks = []
    for text_id, truth, predicted, weights in rows:
        scale = max((abs(w) for _, w in weights), default=1.0) or 1.0
        spans = " ".join(
            f'<span title="{w:+.3f}" style="background: rgba({"0,160,0" if w > 0 else "200,0,0"},{abs(w) / scale:.2f})">'
            f"{html.escape(word)}</span>" for word, w in weights)
        blocks.append(f"<p><b>{html.escape(text_id)}</b> true <i>{html.escape(truth)}</i>, predicted "
                      f"<i>{html.escape(predicted)}</i><br>{spans}</p>")
    return f"<html><body><h3>{html.escape(title)}</h3>" + "".join(blocks) + "</body></html>"


def confident_mistakes(test: pd.DataFrame, probabilities: np.ndarray, labels: list[str], n: int) -> pd.DataFrame:
    predicted = probabilities.argmax(axis=1)
    frame = pd.DataFrame({"text": test["text"].to_numpy(), "label": test["label"].to_numpy(),
                          "predicted": np.asarray(labels)[predicted], "confidence": probabilities.max(axis=1)})
    return frame[frame["label"] != frame["predicted"]].sort_values("confidence", ascending=False).head(n)


def run(ctx: StageContext) -> None:
    config = ctx.config
    model, tokenizer, labels = load_trained(ctx)
    test = load_split(ctx, "test")
    y = label_ids(test, labels)
    probabilities = softmax(predict_logits(model, tokenizer, test["text"].tolist(), config.model.max_length))
    predicted = probabilities.argmax(axis=1)
    metrics = log_argmax_evaluation(y, probabilities, labels, config.evaluate.calibration_bins)
    mistakes = confident_mistakes(test, probabilities, labels, config.evaluate.confident_mistakes)
    mlflow.log_table(mistakes, "evaluate/confident_mistakes.json")
    examples = list(test.head(config.evaluate.attribution_examples).itertuples())
    max_length = config.model.max_length
    for artifact, title, attribute in (
            ("evaluate/attributions.html", "Occlusion attributions (word left out: change in P(predicted))",
             lambda text, target: occlusion(model, tokenizer, text, target, max_length)),
            ("evaluate/attention_rollout.html", "Attention rollout (each word's share of what reaches [CLS])",
             lambda text, target: attention_rollout(model, tokenizer, text, max_length))):
        rows = [(f"test row {i}", row.label, labels[predicted[i]], attribute(row.text, int(predicted[i])))
                for i, row in enumerate(examples)]
        if rows:
            mlflow.log_text(attribution_html(rows, title), artifact)
    baselines = json.loads(ctx.artifact("train", "baselines.json").read_text())
    table = pd.DataFrame({name: {k.removeprefix("test_"): v for k, v in m.items() if k.startswith("test_")}
                          for name, m in baselines.items()}).T
    mlflow.log_table(table.reset_index(names="model"), "evaluate/comparison.json")
    ctx.summary |= {"model_table": "Test split, every model:\n" + table.round(4).to_string(),
                    "test_macro_f1": metrics["test_macro_f1"], "test_ece": metrics["test_ece"]}
