"""The shared torch pieces (pipelines/common/torch_train.py, torch_onnx.py, quantize.py) on tiny real models."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from modelpkg.runtime import open_session
from pipelines.common import tracking
from pipelines.common.onnx_parity import check_parity
from pipelines.common.quantize import (Variant, choose_variant, cpu_flags, quantize_dynamic_int8, quantize_static_int8,
                                       speed_table)
from pipelines.common.torch_onnx import (EMBEDDING, LOGITS, PROBABILITIES, Embedding, export_onnx, fit_projection,
                                         head_features)
from pipelines.common.torch_train import LoopConfig, adamw, fit, seeded_order, trainable_parameters


def two_blobs(rows: int = 200, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (rows,), generator=generator)
    x = torch.randn(rows, 4, generator=generator) + y[:, None] * 2.0
    return x, y


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def batches(x, y, size=32, seed=0):
    return lambda epoch: ((x[rows], y[rows]) for rows in seeded_order(len(x), seed, epoch).split(size))


def loss_of(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def accuracy(x, y):
    return lambda model: {"valid_accuracy": float((model(x).argmax(1) == y).float().mean())}


@pytest.fixture
def run(tmp_mlflow):
    tracking.configure_tracking("torch-loop")
    with mlflow.start_run() as active:
        yield active


def test_fit_learns_logs_every_epoch_and_reports_the_best(run):
    x, y = two_blobs()
    model = mlp()
    history = fit(model, torch.optim.Adam(model.parameters(), lr=0.05), batches=batches(x, y), loss_of=loss_of,
                  evaluate=accuracy(x, y), settings=LoopConfig(epochs=4, patience=4, monitor="valid_accuracy",
                                                               log_every_steps=2))
    assert history.best_score > 0.9 and len(history.epochs) == 4 and not history.stopped_early
    client = MlflowClient()
    logged = client.get_metric_history(run.info.run_id, "valid_accuracy")
    assert [m.step for m in logged] == [0, 1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "train_loss_step")) == history.steps // 2
    assert client.get_run(run.info.run_id).data.metrics["best_valid_accuracy"] == history.best_score


def test_early_stopping_stops_and_restores_the_best_epochs_weights(run):
    x, y = two_blobs()
    model = mlp()
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.95])  # best at epoch 1; one worse epoch is tolerated, the second stops
    seen: list[dict] = []

    def evaluate(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"valid_macro_f1": next(scores)}

    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches=batches(x, y), loss_of=loss_of,
                  evaluate=evaluate, settings=LoopConfig(epochs=5, patience=1))
    assert history.stopped_early and len(history.epochs) == 4 and history.best_epoch == 1
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, seen[1][name])  # epoch 1's weights, not the last epoch's


@pytest.mark.parametrize("tie_break, best_epoch", [(None, 1), ("valid_log_loss", 3)])
def test_a_tie_on_the_monitored_score_goes_to_the_lower_tie_break_metric(run, tie_break, best_epoch):
    x, y = two_blobs()
    model = mlp()
    scores = iter([(0.9, 0.5), (1.0, 0.3), (1.0, 0.4), (1.0, 0.1), (1.0, 0.2), (1.0, 0.2)])
    seen: list[dict] = []

    def evaluate(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        accuracy_, loss = next(scores)
        return {"valid_accuracy": accuracy_, "valid_log_loss": loss}

    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches=batches(x, y), loss_of=loss_of,
                  evaluate=evaluate, settings=LoopConfig(epochs=6, patience=1, monitor="valid_accuracy",
                                                         tie_break=tie_break))
    assert history.best_epoch == best_epoch and history.best_score == 1.0
    # without a tie-break epochs 2 and 3 do not improve on epoch 1, and patience stops the fit after epoch 3
    assert len(history.epochs) == (4 if tie_break is None else 6)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, seen[best_epoch][name])


def test_a_fixed_budget_validates_every_nth_epoch_and_the_last_and_logs_the_loss_every_epoch(run):
    x, y = two_blobs()
    model = mlp()
    evaluated: list[int] = []

    def evaluate(m):
        evaluated.append(len(evaluated))
        return {"valid_accuracy": accuracy(x, y)(m)["valid_accuracy"]}

    history = fit(model, adamw(model.parameters(), lr=0.05), batches=batches(x, y), loss_of=loss_of,
                  evaluate=evaluate, settings=LoopConfig(epochs=5, patience=5, monitor="valid_accuracy",
                                                         restore_best=False, evaluate_every=3))
    assert len(evaluated) == 2  # after epochs 3 and 5
    assert [sorted(epoch) for epoch in history.epochs] == [["epoch", "train_loss"]] * 2 + [
        ["epoch", "train_loss", "valid_accuracy"]] + [["epoch", "train_loss"]] + [["epoch", "train_loss", "valid_accuracy"]]
    client = MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid_accuracy")] == [2, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [0, 1, 2, 3, 4]
    assert history.best_score > 0.9


def test_one_training_step_changes_only_the_trainable_weights(run):
    x, y = two_blobs()
    model = mlp()
    model[0].requires_grad_(False)  # a frozen "backbone"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert trainable_parameters(model) == (16 * 2 + 2, 4 * 16 + 16 + 16 * 2 + 2)
    fit(model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1),
        batches=lambda epoch: iter([(x[:32], y[:32])]), loss_of=loss_of, evaluate=accuracy(x, y),
        settings=LoopConfig(epochs=1, monitor="valid_accuracy"))
    after = model.state_dict()
    assert torch.equal(after["0.weight"], before["0.weight"]) and torch.equal(after["0.bias"], before["0.bias"])
    assert not torch.equal(after["2.weight"], before["2.weight"])


def test_seeded_order_is_a_permutation_fixed_by_seed_and_epoch():
    first = seeded_order(50, seed=3, epoch=0)
    assert sorted(first.tolist()) == list(range(50))
    assert torch.equal(first, seeded_order(50, seed=3, epoch=0))
    assert not torch.equal(first, seeded_order(50, seed=3, epoch=1))


# ------------------------------------------------------------------------------------------- torch -> ONNX
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small classifier trained on two blobs (confident, as real models are), exported."""
    model, (x, y) = mlp(1), two_blobs(400, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        loss_of(model, (x, y)).backward()
        optimizer.step()
    model.eval()
    path = export_onnx(model, (torch.randn(2, 4),), tmp_path_factory.mktemp("onnx") / "mlp.onnx",
                       input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return model, path


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_export_keeps_the_batch_axis_dynamic_and_matches_torch(exported, rows):
    model, path = exported
    x = torch.randn(rows, 4)
    probabilities, logits = open_session(path).run([PROBABILITIES, LOGITS], {"x": x.numpy()})
    with torch.no_grad():
        check_parity(model(x).numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(probabilities, torch.softmax(model(x), -1).detach().numpy(), atol=1e-6)


def test_the_embedding_output_is_the_head_input_projected_onto_unit_variance_components(exported, tmp_path):
    """The third output monitoring watches: PCA of the head's input on 'validation' rows, exported in the graph."""
    model, _ = exported
    head = model[-1]  # the last Linear: its input is the hidden layer
    valid, test = two_blobs(300, seed=4)[0], two_blobs(50, seed=5)[0]
    features = head_features(head, [lambda: model(valid[:150]), lambda: model(valid[150:])])
    assert features.shape == (300, 16)
    projection = fit_projection(features, 3)
    projected = projection.apply(features)
    np.testing.assert_allclose(projected.std(axis=0, ddof=1), 1, atol=1e-4)
    np.testing.assert_allclose(np.corrcoef(projected.T), np.eye(3), atol=1e-4)  # uncorrelated components
    path = export_onnx(model, (torch.randn(2, 4),), tmp_path / "embedded.onnx", input_names=["x"],
                       dynamic_axes={"x": {0: "batch"}}, embedding=Embedding(head, projection))
    probabilities, embedding = open_session(path).run([PROBABILITIES, EMBEDDING], {"x": test.numpy()})
    expected = projection.apply(head_features(head, [lambda: model(test)]))
    np.testing.assert_allclose(embedding, expected, atol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(probabilities, torch.softmax(model(test), -1).numpy(), atol=1e-6)


# ------------------------------------------------------------------------------------------ quantization
def test_int8_variants_quantize_run_and_stay_close(exported, tmp_path):
    _, path = exported
    x = two_blobs(100, seed=2)[0].numpy()
    dynamic = quantize_dynamic_int8(path, tmp_path / "dynamic.onnx")
    static = quantize_static_int8(path, tmp_path / "static.onnx", [{"x": x[i:i + 1]} for i in range(50)])
    fp32 = open_session(path).run([PROBABILITIES], {"x": x})[0]
    for quantized in (dynamic, static):
        probabilities = open_session(quantized).run([PROBABILITIES], {"x": x})[0]
        assert np.abs(probabilities - fp32).mean() < 0.05  # a 4-16-2 net: int8 steps are coarse for it
        assert (probabilities.argmax(1) == fp32.argmax(1)).mean() > 0.9
    assert all(isinstance(flag, str) for flag in cpu_flags())


def table(**rows) -> pd.DataFrame:
    return pd.DataFrame([{"variant": k, "latency_ms_b1": v[0], "f1": v[1]} for k, v in rows.items()]).set_index("variant")


def test_choose_variant_ships_the_fastest_int8_within_the_quality_bound_and_says_why():
    measured = table(fp32=(1.0, 0.93), dynamic=(0.3, 0.925), static=(0.2, 0.90))
    shipped, why = choose_variant(measured, fp32="fp32", candidates=["dynamic", "static"], quality_name="f1", max_drop=0.01)
    assert shipped == "dynamic" and why.startswith("dynamic ships") and "rejected: static" in why
    shipped, why = choose_variant(measured, fp32="fp32", candidates=["static"], quality_name="f1", max_drop=0.01)
    assert shipped == "fp32" and "failed a bound" in why
    neighbours = table(fp32=(1.0, 0.93), dynamic=(0.3, 0.93)).assign(batch_effect=[0.0, 0.3])
    shipped, why = choose_variant(neighbours, fp32="fp32", candidates=["dynamic"], quality_name="f1", max_drop=0.01,
                                  max_batch_effect=0.01)
    assert shipped == "fp32" and "moves by up to 0.300 with the batch" in why
    slow = table(fp32=(1.0, 0.93), dynamic=(1.5, 0.93))
    assert choose_variant(slow, fp32="fp32", candidates=["dynamic"], quality_name="f1", max_drop=0.01)[0] == "fp32"


def test_speed_table_measures_each_variant_and_reports_speedups():
    variants = [Variant("slow", 2.0, lambda: sum(range(20000)), lambda: sum(range(20000)), 0.9),
                Variant("fast", 1.0, lambda: None, lambda: None, 0.8)]
    measured = speed_table(variants, repeats=20, quality_name="f1")
    assert list(measured.index) == ["slow", "fast"] and measured.loc["fast", "speedup_b1_vs_first"] > 1
    assert set(measured.columns) == {"size_mb", "latency_ms_b1", "throughput_b32_per_s", "f1", "speedup_b1_vs_first"}
