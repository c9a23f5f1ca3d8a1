"""The NeuronIO metrics on small hand-computed cases, and their edge cases."""

from __future__ import annotations

import numpy as np
import pytest

import surrogate.metrics as neuronio_metrics
from surrogate import metric_table
from surrogate.metrics import ROC, MetricError, rescale_to, soma_metrics


def test_auc_of_a_textbook_case():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert ROC.of(labels, scores).auc == pytest.approx(0.75)


def test_perfect_and_inverted_rankings():
    labels = np.array([0, 0, 0, 1, 1])
    assert ROC.of(labels, np.array([0.1, 0.2, 0.3, 0.8, 0.9])).auc == 1.0
    assert ROC.of(labels, np.array([0.9, 0.8, 0.7, 0.2, 0.1])).auc == 0.0


def test_tp_and_partial_auc_on_the_chance_diagonal():
    roc = ROC(fpr=np.array([0.0, 0.5, 1.0]), tpr=np.array([0.0, 0.5, 1.0]))
    # argmin |fpr − 0.01| is index 0, forced to 1
    assert roc.tp_at(0.01) == 0.5
    # TPR = grid on the diagonal: mean of the first 200 grid points = 99.5 / 19999
    assert roc.auc_at(0.01) == pytest.approx(99.5 / 19999)
    # f = 0.0025 → i = 50: mean of the first 50 grid points = 24.5 / 19999
    assert roc.auc_at(0.0025) == pytest.approx(24.5 / 19999)


def test_tp_at_fp_picks_the_nearest_roc_point():
    roc = ROC(fpr=np.array([0.0, 0.002, 0.009, 0.5, 1.0]), tpr=np.array([0.0, 0.3, 0.6, 0.9, 1.0]))
    assert roc.tp_at(0.0025) == 0.3
    assert roc.tp_at(0.01) == 0.6
    # on the grid TPR rises linearly to 0.3 at FPR 0.002, then towards 0.6 at 0.009
    grid = np.linspace(0, 1, 20000)[:50]
    expected = np.interp(grid, roc.fpr, roc.tpr).mean()
    assert roc.auc_at(0.0025) == pytest.approx(expected)
    assert 0.1 < roc.auc_at(0.0025) < 0.3


def test_the_metric_table_keys_and_constant_predictions():
    labels = np.array([[0, 1, 0, 0, 1, 0]])
    soma = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    metrics, note = metric_table.compute(
        metric_table.Pooled(labels, np.full((1, 6), 0.3), soma, soma + 1, soma)
    )
    assert note is None
    assert metrics["spike_auc"] == 0.5  # a constant predictor is at chance
    assert set(metrics) == {
        "spike_auc",
        "spike_auc_ci95",
        "tp_at_0.0025_fp",
        "auc_at_0.0025_fp",
        "tp_at_0.01_fp",
        "auc_at_0.01_fp",
        "soma_rmse_mv",
        "soma_mae_mv",
        "soma_explained_variance_pct",
        "soma_rmse_raw_mv (not rescaled)",
        "simulations_kept",
        "output_spikes",
    }
    assert metrics["soma_rmse_mv"] == 1.0 and metrics["soma_rmse_raw_mv (not rescaled)"] == 0.0
    assert (metrics["simulations_kept"], metrics["output_spikes"]) == (1, 2)
    scores = [v for m, v in metrics.items() if metric_table.find(m).is_score]
    assert len(scores) == 9 and all(np.isfinite(scores))


def test_no_spikes_is_a_clear_error_not_nan():
    with pytest.raises(MetricError, match="no output spikes"):
        ROC.of(np.zeros(10), np.random.default_rng(0).random(10))
    with pytest.raises(MetricError, match="only spikes"):
        ROC.of(np.ones(4), np.arange(4.0))
    with pytest.raises(MetricError, match="no time points"):
        ROC.of(np.array([]), np.array([]))


def test_rescaling_to_the_truths_mean_and_sd():
    np.testing.assert_allclose(
        rescale_to(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])), [10, 20, 30]
    )
    np.testing.assert_allclose(
        rescale_to(np.array([3.0, 2.0, 1.0]), np.array([10.0, 20.0, 30.0])), [30, 20, 10]
    )
    np.testing.assert_allclose(rescale_to(np.full(3, 7.0), np.array([1.0, 2.0, 6.0])), [3, 3, 3])


def test_soma_metrics_by_hand():
    metrics = soma_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0]))
    assert metrics["soma_rmse_mv"] == pytest.approx(0.5)
    assert metrics["soma_mae_mv"] == pytest.approx(0.25)
    # 100·(1 − Var([0, 0, 0, −1]) / Var([1, 2, 3, 4])) = 100·(1 − 0.1875/1.25)
    assert metrics["soma_explained_variance_pct"] == pytest.approx(85.0)
    flat = soma_metrics(np.full(4, 2.0), np.full(4, 2.0))
    assert flat["soma_rmse_mv"] == 0.0 and np.isnan(flat["soma_explained_variance_pct"])


def test_spike_ranks_by_hand_and_their_mean_is_one_minus_auc():
    labels = np.array([0, 1, 0, 0, 1, 0, 1])
    scores = np.array([0.1, 0.9, 0.5, 0.4, 0.4, 0.2, 0.05])
    # spike at 0.9: no negative above; at 0.4: 0.5 above, 0.4 tied (half) → 1.5/4; at 0.05: all 4
    np.testing.assert_allclose(neuronio_metrics.spike_ranks(labels, scores), [0, 0.375, 1])
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.02
    scores = np.round(rng.random(5000) + labels, 2)  # rounding makes ties
    ranks = neuronio_metrics.spike_ranks(labels, scores)
    assert ranks.mean() == pytest.approx(1 - ROC.of(labels, scores).auc)
