"""The spike AUC's uncertainty: a bootstrap interval over simulations, and a caution below 50
test spikes — in metrics.json, in `elmpipe evaluate`'s output and in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from pipelines.cli import cli
from surrogate.checkpoints import save_checkpoint
from surrogate.evaluate import EvaluationConfig, evaluate
from surrogate.metrics import (
    FEW_SPIKES,
    ROC,
    auc_caution,
    auc_pair_counts,
    bootstrap_auc,
    resampled_aucs,
)
from surrogate.models import ELMConfig, build_model


def scored(rng, sims=12, steps=300, rate=0.02, decimals=2):
    labels = rng.random((sims, steps)) < rate
    scores = np.round(rng.random((sims, steps)) + 0.4 * labels, decimals)  # rounding: ties
    return labels, scores


def test_pair_counts_give_sklearn_auc_for_any_resample():
    rng = np.random.default_rng(3)
    labels, scores = scored(rng)
    counts, positives, negatives = auc_pair_counts(labels, scores)
    full = resampled_aucs(counts, positives, negatives, np.ones(12))[0]
    assert full == pytest.approx(roc_auc_score(labels.ravel(), scores.ravel()), abs=1e-12)
    for _ in range(5):
        drawn = rng.multinomial(12, np.full(12, 1 / 12))
        rows = np.repeat(np.arange(12), drawn)
        expected = roc_auc_score(labels[rows].ravel(), scores[rows].ravel())
        assert resampled_aucs(counts, positives, negatives, drawn)[0] == pytest.approx(
            expected, abs=1e-12
        )


def test_bootstrap_interval_is_seeded_and_brackets_the_auc():
    rng = np.random.default_rng(4)
    labels, scores = scored(rng, sims=40, steps=500)
    auc = ROC.of(labels, scores).auc
    low, high = bootstrap_auc(labels, scores)
    assert low < auc < high and high - low < 0.2
    assert bootstrap_auc(labels, scores) == [low, high]  # the same data, the same interval
    assert bootstrap_auc(labels, scores, seed=1) != [low, high]
    grouped = bootstrap_auc(labels, scores, max_groups=10)  # resampling groups of 4 simulations
    assert grouped[0] < auc < grouped[1]


def test_fewer_simulations_give_a_wider_interval():
    rng = np.random.default_rng(5)
    labels, scores = scored(rng, sims=200, steps=500)
    few = np.diff(bootstrap_auc(labels[:10], scores[:10]))[0]
    many = np.diff(bootstrap_auc(labels, scores))[0]
    assert few > 2 * many


def test_no_interval_without_spikes():
    labels = np.zeros((4, 100), bool)
    assert bootstrap_auc(labels, np.random.default_rng(0).random((4, 100))) is None


def test_caution_below_fifty_spikes_only():
    metrics = {"spike_auc": 0.993, "output_spikes": 14, "spike_auc_ci95": [0.95, 1.0]}
    caution = auc_caution(metrics)
    assert "rests on 14 output spikes, fewer than 50" in caution
    assert "0.950–1.000" in caution and "uncertain" in caution
    assert auc_caution({**metrics, "output_spikes": FEW_SPIKES}) is None
    assert auc_caution({"output_spikes": 3, "spike_note": "undefined"}) is None


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(
        ELMConfig(num_input=100, num_memory=4, num_branch=10, num_synapse_per_branch=20)
    )


def test_evaluation_stores_interval_and_caution(toy_store, model):
    few = evaluate(model, toy_store, "valid").metrics  # 3 of 8 toy simulations kept
    assert few["output_spikes"] < FEW_SPIKES
    low, high = few["spike_auc_ci95"]
    assert low <= few["spike_auc"] <= high
    assert f"rests on {few['output_spikes']} output spikes" in few["caution"]
    every = evaluate(model, toy_store, "valid", EvaluationConfig(spike_range=(0, 10_000))).metrics
    assert every["output_spikes"] >= FEW_SPIKES and "caution" not in every
    assert every["spike_auc_ci95"][0] <= every["spike_auc"] <= every["spike_auc_ci95"][1]


def test_evaluate_command_prints_interval_and_caution(toy_store, model, tmp_path):
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, model)
    out = tmp_path / "eval"
    args = ["evaluate", "-k", str(checkpoint), "-d", str(toy_store), "--split", "valid"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    low, high = metrics["spike_auc_ci95"]
    assert "spike_auc_ci95" in result.output and f"{low:.4f}–{high:.4f}" in result.output
    assert f"caution: {metrics['caution']}" in result.output


def _report(tmp_path, metrics, fit_warnings=(), dataset_warnings=()):
    from pipelines.config import RunConfig
    from pipelines.report import build_report

    run_dir = tmp_path / "fit" / "elm"
    run_dir.mkdir(parents=True)
    result = {
        "model": {"family": "elm"},
        "parameters": 8002,
        "best": {"epoch": 3},
        "provenance": {"warnings": list(fit_warnings)},
    }
    (run_dir / "result.json").write_text(json.dumps(result))
    description = {"cell": {}, "splits": {}, "warnings": list(dataset_warnings)}
    path = build_report(tmp_path, RunConfig(), description, {"elm": run_dir}, {"elm": metrics}, {})
    return path.read_text()


def test_report_cautions_instead_of_a_bold_auc(tmp_path):
    few = {"spike_auc": 0.993, "spike_auc_ci95": [0.951, 0.999], "output_spikes": 14}
    page = _report(
        tmp_path,
        few,
        fit_warnings=["valid: no output spike"],
        dataset_warnings=["[valid] no output spike in any of the 8 simulations"],
    )
    assert page.count('<div class="caution">') == 3
    assert "rests on 14 output spikes, fewer than 50" in page
    assert "No model is in bold" in page and '<tr class="best">' not in page
    assert "<td>0.9930</td><td>0.951–0.999</td>" in page
    assert "elm: valid: no output spike" in page
    assert "[valid] no output spike in any of the 8 simulations" in page


def test_report_bolds_the_best_auc_when_it_rests_on_enough_spikes(tmp_path):
    page = _report(
        tmp_path, {"spike_auc": 0.957, "spike_auc_ci95": [0.94, 0.97], "output_spikes": 96}
    )
    assert '<div class="caution">' not in page
    assert '<tr class="best">' in page and "The best model by AUC is in bold" in page
