"""Train stage: load and validate the texts, split them, fit two baselines and the LoRA classifier.

Outputs (artifacts of this stage's run, read by later stages through MLflow):
  splits/{train,valid,test}.parquet   text, label, source (and splits/shifted.parquet with a shifted source)
  baselines.json                      valid/test macro-F1 of TF-IDF + logistic regression and the linear probe
  model/                              the fine-tuned classifier, LoRA merged into the base (transformers format)
  adapter/                            the LoRA adapter and head alone (small: what a fine-tune adds)
Baselines and the LoRA fit are child runs, so the MLflow UI compares them side by side.
"""

from __future__ import annotations

import json
import logging
import time

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from modelpkg.runtime import class_indices
from pipelines.common import tracking
from pipelines.common.metrics import argmax_metrics, softmax
from pipelines.common.runner import StageContext
from pipelines.common.torch_train import adamw, fit, seeded_order, trainable_parameters
from pipelines.text.data import load_texts, split_texts, validate_texts
from pipelines.text.model import (classification_loss, labelled_batches, load_classifier, load_tokenizer,
                                  mean_pooled_embeddings, predict_logits, with_lora)

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


def labels_of(ctx: StageContext, frame: pd.DataFrame) -> list[str]:
    return list(ctx.config.data.labels) if ctx.config.data.labels else sorted(frame["label"].unique())


def label_ids(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """The `label` column as class indices, by the repo's one rule (an unknown label is an error)."""
    return class_indices(frame["label"], labels, "the text model")


def load_and_split(ctx: StageContext) -> tuple[dict[str, pd.DataFrame], list[str]]:
    config = ctx.config
    data = load_texts(config.data, seed=config.seed)
    tracking.log_loaded_data(data.sha256, data.source, ", ".join(data.paths) or None, len(data.frame), data.notes,
                             synthetic_warning="SYNTHETIC DATA: no text files found; metrics say nothing about real texts")
    frame = data.frame
    if config.split.max_rows and len(frame) > config.split.max_rows:
        share = config.split.max_rows / len(frame)
        frame = frame.groupby("label", group_keys=False).sample(frac=share, random_state=config.seed)
        mlflow.set_tag("sampled", f"{len(frame)} of {len(data.frame)} texts (split.max_rows)")
    splits = split_texts(frame, valid_fraction=config.split.valid_fraction,
                         test_fraction=config.split.test_fraction, seed=config.seed,
                         shifted_source=config.split.shifted_source)
    splits["train"] = with_extra_rows(ctx, splits)
    labels = labels_of(ctx, data.frame)
    for name, frame in splits.items():
        tracking.log_split(frame.reset_index(drop=True), name, targets="label")
        mlflow.log_metric(f"{name}_rows", len(frame))
    balance = {name: frame["label"].value_counts().to_dict() for name, frame in splits.items()}
    tracking.log_json(balance, "data/class_balance.json")
    ctx.summary["data"] = f"{data.source} ({len(data.frame)} texts, sha256 {data.sha256[:12]})"
    return splits, labels


def with_extra_rows(ctx: StageContext, splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Retraining adds recent labelled production texts to the training split (never to valid/test), after
    the same validation as the files (a blank text or an unknown label is named, not learned), and without
    any text that valid or test hold."""
    extra, config = ctx.extra_train_data, ctx.config.data
    if extra is None or len(extra) == 0:
        return splits["train"]
    rows = pd.DataFrame({"file": "production", "line": range(1, len(extra) + 1), "source": "production",
                         "text": extra["text"].astype(str).to_numpy(), "label": extra["label"].astype(str).to_numpy()})
    recent, _ = validate_texts(rows, labels=config.labels, label_names={}, min_class_examples=1,
                               max_chars=config.max_chars)
    held_out = set(splits["valid"]["text"]) | set(splits["test"]["text"]) | set(splits["train"]["text"])
    recent = recent[~recent["text"].isin(held_out)][["text", "label", "source"]]
    mlflow.log_param("extra_train_rows", len(recent))
    return pd.concat([splits["train"], recent], ignore_index=True)


def fit_tfidf(ctx: StageContext, splits, labels) -> dict[str, float]:
    """The classical baseline: word 1..n-grams, TF-IDF weighted, logistic regression."""
    settings = ctx.config.baselines
    with tracking.child_run("tfidf_logistic_regression", project=ctx.project, model_name="tfidf_logistic_regression"):
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, settings.tfidf_max_ngram), sublinear_tf=True, min_df=1),
                              LogisticRegression(C=settings.tfidf_C, max_iter=2000))
        model.fit(splits["train"]["text"], label_ids(splits["train"], labels))
        metrics = {}
        for split in ("valid", "test"):
            probabilities = model.predict_proba(splits[split]["text"])
            metrics |= argmax_metrics(split, label_ids(splits[split], labels), probabilities)
        mlflow.log_metrics(metrics)
    return metrics


def fit_probe(ctx: StageContext, splits, labels, tokenizer) -> dict[str, float]:
    """A linear probe: logistic regression on the frozen encoder's mean-pooled sentence embeddings."""
    from transformers import AutoModel

    from pipelines.text.model import base_model_path

    with tracking.child_run("linear_probe", project=ctx.project, model_name="linear_probe"):
        encoder = AutoModel.from_pretrained(base_model_path(ctx.config.model.base_model))
        embed = {name: mean_pooled_embeddings(encoder, tokenizer, splits[name]["text"].tolist(), ctx.config.model.max_length)
                 for name in SPLITS}
        probe = LogisticRegression(C=ctx.config.baselines.probe_C, max_iter=2000)
        probe.fit(embed["train"], label_ids(splits["train"], labels))
        metrics = {}
        for split in ("valid", "test"):
            metrics |= argmax_metrics(split, label_ids(splits[split], labels), probe.predict_proba(embed[split]))
        mlflow.log_metrics(metrics)
    return metrics


def linear_schedule(optimizer, total_steps: int, warmup_share: float):
    warmup = max(1, int(total_steps * warmup_share))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min((step + 1) / warmup, max(
        0.0, (total_steps - step) / max(1, total_steps - warmup))))


def fit_lora(ctx: StageContext, splits, labels, tokenizer):
    """LoRA on the pretrained encoder, the head trained in full (or, with lora.enabled false, every weight);
    early stopping on valid macro-F1. Returns the merged model, the history, test metrics and the run's name."""
    config = ctx.config
    settings = config.train
    texts, y = splits["train"]["text"].tolist(), label_ids(splits["train"], labels)
    valid_texts, valid_y = splits["valid"]["text"].tolist(), label_ids(splits["valid"], labels)
    name = "lora" if config.lora.enabled else "full_finetune"
    with tracking.child_run(name, project=ctx.project, model_name=name):
        torch.manual_seed(config.seed)
        model = load_classifier(config.model.base_model, labels)
        if config.lora.enabled:
            model = with_lora(model, config.lora)
            mlflow.log_params({"lora.r": config.lora.r, "lora.alpha": config.lora.alpha,
                               "lora.target_modules": ",".join(config.lora.target_modules)})
        trainable, total = trainable_parameters(model)
        mlflow.log_metrics({"trainable_parameters": trainable, "total_parameters": total,
                            "trainable_share": trainable / total})
        log.info("%s trains %d of %d parameters (%.2f%%)", name, trainable, total, 100 * trainable / total)
        optimizer = adamw([p for p in model.parameters() if p.requires_grad],
                          lr=settings.learning_rate, weight_decay=settings.weight_decay)
        steps = settings.epochs * -(-len(texts) // settings.batch_size)
        history = fit(
            model, optimizer, settings=settings, scheduler=linear_schedule(optimizer, steps, settings.warmup_share),
            batches=lambda epoch: labelled_batches(tokenizer, texts, y, seeded_order(len(texts), config.seed, epoch),
                                                   settings.batch_size, config.model.max_length),
            loss_of=classification_loss,
            evaluate=lambda m: argmax_metrics("valid", valid_y, softmax(predict_logits(
                m, tokenizer, valid_texts, config.model.max_length))),
        )
        test_probabilities = softmax(predict_logits(model, tokenizer, splits["test"]["text"].tolist(), config.model.max_length))
        metrics = argmax_metrics("test", label_ids(splits["test"], labels), test_probabilities)
        mlflow.log_metrics(metrics)
        if config.lora.enabled:
            with tracking.temporary_dir() as tmp:
                model.save_pretrained(tmp / "adapter")
                mlflow.log_artifacts(str(tmp / "adapter"), "adapter")
    ctx.summary |= {f"{name}_trainable_parameters": f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)",
                    f"{name}_epochs": len(history.epochs), f"{name}_train_seconds": history.seconds}
    return (model.merge_and_unload() if config.lora.enabled else model), history, metrics, name


def run(ctx: StageContext) -> None:
    started = time.perf_counter()
    splits, labels = load_and_split(ctx)
    tokenizer = load_tokenizer(ctx.config.model.base_model)
    table = {"tfidf_logistic_regression": fit_tfidf(ctx, splits, labels),
             "linear_probe": fit_probe(ctx, splits, labels, tokenizer)}
    merged, history, metrics, name = fit_lora(ctx, splits, labels, tokenizer)
    table[name] = metrics
    with tracking.temporary_dir() as tmp:
        merged.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        (tmp / "model" / "labels.json").write_text(json.dumps(labels))
        mlflow.log_artifacts(str(tmp / "model"), "model")
    tracking.log_json(table, "baselines.json")
    for name, metrics in table.items():
        ctx.summary[f"{name}_test_macro_f1"] = metrics["test_macro_f1"]
    mlflow.log_metric("train_stage_seconds", time.perf_counter() - started)


def load_split(ctx: StageContext, name: str) -> pd.DataFrame:
    return pd.read_parquet(ctx.artifact("train", tracking.split_artifact(name)))


def load_trained(ctx: StageContext):
    """The merged classifier, its tokenizer and labels, as the train stage logged them."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = ctx.artifact("train", "model")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    return model, AutoTokenizer.from_pretrained(folder), json.loads((folder / "labels.json").read_text())
