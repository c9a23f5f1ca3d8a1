"""`fit` refuses data it cannot learn or validate spikes from, and says why and what to do.

No training spike after the windows' start: an error. Validation windows without a spike: an
error when the best epoch is chosen by spike AUC (undefined there), a warning — printed, and
kept in result.json — when it is chosen by soma RMSE or loss.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipelines.cli import EXIT_BAD_INPUT, cli
from tests.toy_dataset import make_toy_dataset

SMALL = ["--num-memory", "4", "--num-branch", "10", "--synapses-per-branch", "20"]
FAST = ["--epochs", "1", "--batches-per-epoch", "2", "-q", *SMALL]


@pytest.fixture(scope="module")
def silent_valid(tmp_path_factory):
    path = tmp_path_factory.mktemp("silent") / "valid.zarr"
    return make_toy_dataset(path, {"train": 8, "valid": 4}, silent=("valid",))


def fit(store, out, *options):
    return CliRunner().invoke(cli, ["fit", "-d", str(store), "-o", str(out), *FAST, *options])


def test_no_validation_spike_is_an_error_when_auc_picks_the_best_epoch(silent_valid, tmp_path):
    result = fit(silent_valid, tmp_path / "run", "--select-best", "spike_auc")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "hold no output spike" in result.output
    assert "validation spike AUC is undefined" in result.output
    assert "Add validation simulations" in result.output
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize(
    ("select_best", "consequence"),
    [
        ("loss", "a loss whose spike term then rewards predicting no spike"),
        ("soma_rmse", "chosen by soma RMSE alone"),
    ],
)
def test_no_validation_spike_is_a_recorded_warning_otherwise(
    silent_valid, tmp_path, select_best, consequence
):
    out = tmp_path / "run"
    result = fit(silent_valid, out, "--select-best", select_best)
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert "validation spike AUC is undefined" in warning and consequence in warning
    recorded = json.loads((out / "result.json").read_text())["provenance"]["warnings"]
    assert recorded == [warning.removeprefix("warning: ")]


def test_no_training_spike_is_an_error(tmp_path):
    store = make_toy_dataset(tmp_path / "t.zarr", {"train": 8, "valid": 4}, silent=("train",))
    result = fit(store, tmp_path / "run")
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "none of the 8 training simulations has an output spike after 500 ms" in result.output
    assert "spike output cannot be learned" in result.output


def test_spiking_splits_fit_without_a_warning(toy_store, tmp_path):
    out = tmp_path / "run"
    result = fit(toy_store, out)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    assert json.loads((out / "result.json").read_text())["provenance"]["warnings"] == []
