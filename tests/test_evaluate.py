"""The windowed NeuronIO evaluation: window layout, stitching, per-file rescaling, filtering."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from pipelines.cli import EXIT_BAD_INPUT, cli
from surrogate.checkpoints import save_checkpoint
from surrogate.evaluate import EvaluationConfig, evaluate, predict, window_starts
from surrogate.models import ELMConfig, build_model


def test_seventeen_windows_for_six_seconds():
    starts = window_starts(6000, 500, 350)
    assert len(starts) == 17 and starts[-1] == 5600
    assert window_starts(400, 500, 350) == [0]


class Clock(torch.nn.Module):
    """Soma channel = 0.1 × (input channel 0, or the step's position in its window)."""

    def __init__(self, show_position: bool) -> None:
        super().__init__()
        self.show_position = show_position

    def forward(self, x):
        position = torch.arange(x.shape[1], dtype=x.dtype).expand(x.shape[0], -1)
        value = position if self.show_position else x[..., 0]
        return torch.stack([torch.zeros_like(value), 0.1 * value], dim=-1)


def test_stitching_uses_window_0_then_steps_150_to_499():
    n_time = 6000
    inputs = np.zeros((2, n_time, 3), dtype=np.float32)
    inputs[:, :, 0] = np.arange(n_time)  # channel 0 carries absolute time
    cpu = torch.device("cpu")
    _, placed = predict(Clock(False), inputs, EvaluationConfig(), cpu)
    np.testing.assert_allclose(placed[0], np.arange(n_time), rtol=1e-6)  # nothing misplaced
    _, position = predict(Clock(True), inputs, EvaluationConfig(), cpu)
    np.testing.assert_allclose(position[0, :500], np.arange(500), atol=1e-3)  # window 0
    assert position[0, 500:].min() > 149.5 and position[0, 500:].max() < 499.5  # after burn-in
    np.testing.assert_allclose(position[0, 5750:], np.arange(150, 400), atol=1e-3)  # last window


@pytest.fixture(scope="module")
def checkpoint(toy_store, tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(
        ELMConfig(num_input=100, num_memory=4, num_branch=10, num_synapse_per_branch=20)
    )
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model)
    return path, model


def test_evaluate_filters_and_rescales_per_file(toy_store, checkpoint):
    _, model = checkpoint
    config = EvaluationConfig(sims_per_file=4)
    result = evaluate(model, toy_store, "valid", config)
    m = result.metrics
    group = zarr.open_group(str(toy_store), mode="r")["valid"]
    n_spikes = group["n_spikes"][:]
    kept = int(((n_spikes >= 0) & (n_spikes <= 24)).sum())
    assert m["simulations"] == 8 and m["simulations_kept"] == kept
    assert m["time_points"] == kept * (1200 - 500)
    assert 0 <= m["spike_auc"] <= 1
    assert m["soma_rmse_mv"] > 0 and "soma_rmse_raw_mv (not rescaled)" in m
    assert len(result.examples) == min(3, kept)


def test_no_spikes_in_the_kept_set_gives_a_note(toy_store, checkpoint):
    _, model = checkpoint
    result = evaluate(model, toy_store, "valid", EvaluationConfig(spike_range=(0, 0)))
    if result.metrics["simulations_kept"]:
        assert "no output spikes" in result.metrics["spike_note"]
        assert "spike_auc" not in result.metrics
    assert not any(isinstance(v, float) and np.isnan(v) for v in result.metrics.values())


def test_evaluate_command_writes_metrics_and_plots(toy_store, checkpoint, tmp_path):
    path, _ = checkpoint
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--checkpoint",
            str(path),
            "--data",
            str(toy_store),
            "--split",
            "valid",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "valid" and "soma_rmse_mv" in metrics
    assert (out / "roc.png").stat().st_size > 10_000
    assert (out / "traces.png").stat().st_size > 10_000
    with (out / "spikes.csv").open() as handle:
        spikes = list(csv.DictReader(handle))
    assert len(spikes) == metrics["output_spikes"]
    cost = [float(row["negatives_above"]) for row in spikes]
    assert cost == sorted(cost, reverse=True)  # the costliest spikes first
    assert np.mean(cost) == pytest.approx(1 - metrics["spike_auc"], abs=1e-6)
    assert all(500 <= int(row["time_ms"]) < 1200 for row in spikes)  # after the skipped 500 ms
    nexus = zarr.open_group(str(toy_store), mode="r")["valid"]["nexus_v"]
    for row in spikes:  # the highest nexus voltage within 10 ms of the spike
        sim, t = int(row["simulation"]), int(row["time_ms"])
        assert float(row["nexus_max_mv"]) == pytest.approx(
            nexus[sim, t - 10 : t + 11].max(), abs=0.01
        )
    assert "spikes.csv" in result.output
    bad = CliRunner().invoke(
        cli, ["evaluate", "--checkpoint", str(path), "--data", str(toy_store), "--split", "nope"]
    )
    assert bad.exit_code == EXIT_BAD_INPUT and "nope" in bad.output


def test_released_elm_on_imported_neuronio_files(tmp_path):
    """A released-layout ELM state dict evaluated on NeuronIO pickles imported into our schema."""
    import pickle

    from pipelines.cluster import ClusterConfig
    from pipelines.neuronio_files import import_neuronio
    from tests.test_checkpoints_export import released_state_dict

    rng = np.random.default_rng(0)
    folder = tmp_path / "Data_test"
    folder.mkdir()
    for f in range(2):
        sims = []
        for _ in range(2):
            exc = {
                np.int64(s): [np.int64(t) for t in np.flatnonzero(rng.random(1000) < 0.01)]
                for s in range(639)
            }
            inh = {
                np.int64(s): [np.int64(t) for t in np.flatnonzero(rng.random(1000) < 0.008)]
                for s in range(639)
            }
            sims.append(
                {
                    "somaVoltageLowRes": rng.normal(-67, 4, 1000).astype(np.float16),
                    "nexusVoltageLowRes": rng.normal(-60, 4, 1000).astype(np.float16),
                    "exInputSpikeTimes": exc,
                    "inhInputSpikeTimes": inh,
                    "outputSpikeTimes": np.sort(rng.uniform(510, 990, 3)).astype(np.float16),
                }
            )
        params = {
            "allSegmentsType": ["basal"] * 262 + ["apical"] * 377,
            "totalSimDurationInSec": 1.0,
            "numSimulations": 2,
        }
        experiment = {"Params": params, "Results": {"listOfSingleSimulationDicts": sims}}
        (folder / f"file_{f}_sim__{f}.p").write_bytes(pickle.dumps(experiment, protocol=2))
    store = tmp_path / "neuronio.zarr"
    import_neuronio(folder, store, "test", cluster=ClusterConfig(kind="in-process"), progress=False)
    state = tmp_path / "neuronio_best_model_state.pt"
    torch.save(released_state_dict(20), state)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        cli, ["evaluate", "-k", str(state), "-d", str(store), "--split", "test", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["simulations"] == 4 and metrics["time_points"] == 4 * 500
    assert metrics["output_spikes"] > 0 and 0 <= metrics["spike_auc"] <= 1
