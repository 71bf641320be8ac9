"""The paired bootstrap and its metrics, binary and multi-class (the rule on top: test_decision.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss as sklearn_log_loss
from sklearn.metrics import f1_score, roc_auc_score

from pipelines.common.bootstrap import log_loss, macro_f1, paired_bootstrap_gains, roc_auc


def labels_and_scores(seed: int, rows: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a sharp score and a noisy one (the noisy one ranks positives far less well)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(int)
    sharp = 1 / (1 + np.exp(-(3 * y - 1.5 + rng.normal(0, 1, rows))))
    noisy = 1 / (1 + np.exp(-(1 * y - 0.5 + rng.normal(0, 2, rows))))
    return y, sharp, noisy


def test_fast_metrics_match_scikit_learn():
    y, sharp, noisy = labels_and_scores(4)
    for p in (sharp, noisy, np.round(noisy, 1)):  # rounding makes ties: they count one half
        assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert log_loss(y, p) == pytest.approx(sklearn_log_loss(y, p), abs=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_gains_are_oriented_so_positive_means_the_second_model_is_better(metric):
    y, sharp, noisy = labels_and_scores(5)
    better = paired_bootstrap_gains(y, noisy, sharp, metric=metric, samples=200, seed=0)
    worse = paired_bootstrap_gains(y, sharp, noisy, metric=metric, samples=200, seed=0)
    assert len(better) == 200 and (better > 0).all()
    np.testing.assert_allclose(worse, -better)


def test_resamples_are_paired_and_seeded():
    y, sharp, noisy = labels_and_scores(6)
    first = paired_bootstrap_gains(y, noisy, sharp, metric="roc_auc", samples=50, seed=3)
    np.testing.assert_array_equal(first, paired_bootstrap_gains(y, noisy, sharp, metric="roc_auc", samples=50, seed=3))
    assert not np.array_equal(first, paired_bootstrap_gains(y, noisy, sharp, metric="roc_auc", samples=50, seed=4))
    assert (paired_bootstrap_gains(y, sharp, sharp, metric="roc_auc", samples=50, seed=3) == 0).all()


def test_one_class_rows_give_a_clear_error():
    with pytest.raises(ValueError, match="held every class"):
        paired_bootstrap_gains(np.zeros(10), np.full(10, 0.2), np.full(10, 0.3), metric="log_loss", samples=20, seed=0)


def test_multi_class_metrics_match_scikit_learn():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 4, 300)
    logits = rng.normal(0, 1, (300, 4))
    logits[np.arange(300), y] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sklearn_log_loss(y, p), abs=1e-12)
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p.argmax(axis=1), average="macro"), abs=1e-12)


def test_a_binary_matrix_scores_like_its_positive_column():
    y, sharp, _ = labels_and_scores(9)
    matrix = np.column_stack([1 - sharp, sharp])
    assert roc_auc(y, matrix) == roc_auc(y, sharp) and log_loss(y, matrix) == pytest.approx(log_loss(y, sharp))
