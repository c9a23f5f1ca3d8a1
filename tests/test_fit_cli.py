"""The fit and sweep commands, and the sweep grid."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from pipelines.cli import EXIT_BAD_INPUT, cli
from pipelines.sweep import SweepConfig, grid
from surrogate.models.tcn import tcn_shape

FAST = ["--epochs", "1", "--batches-per-epoch", "4", "-q"]


def test_fit_command_trains_and_exports(toy_store, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "fit",
            "-d",
            str(toy_store),
            "-o",
            str(out),
            "--num-memory",
            "4",
            "--num-branch",
            "10",
            "--synapses-per-branch",
            "20",
            *FAST,
            "--spike-weight",
            "0.8",
            "--weight-decay",
            "0.3",
            "--ema-decay",
            "0.99",
            "--export",
            str(tmp_path / "exports" / "m.ts"),  # a folder not made yet
        ],
    )
    assert result.exit_code == 0, result.output
    assert "parameters" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["num_input"] == 100 and config["model"]["num_memory"] == 4
    assert config["spike_weight"] == 0.8 and config["weight_decay"] == 0.3
    assert config["ema_decay"] == 0.99
    scripted = torch.jit.load(str(tmp_path / "exports" / "m.ts"))
    assert scripted(torch.zeros(1, 10, 100)).shape == (1, 10, 2)
    again = CliRunner().invoke(cli, ["fit", "-d", str(toy_store), "-o", str(out), *FAST])
    assert again.exit_code == EXIT_BAD_INPUT and "--resume" in again.output


def test_shipped_hay_surrogate_recipe_trains(toy_store, tmp_path):
    """configs/hay-surrogate.yaml (the recipe that reached test AUC ≈ 0.99 on the Hay cell) is a
    valid fit config: on a toy dataset, shortened, it trains with its settings."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "configs" / "hay-surrogate.yaml"
    out = tmp_path / "run"
    args = ["fit", "-c", str(recipe), "-d", str(toy_store), "-o", str(out)]
    too_many = CliRunner().invoke(cli, [*args, *FAST])
    assert too_many.exit_code == EXIT_BAD_INPUT and "1024" in too_many.output  # 24 here
    short = ["--train-sims", "24", "--num-branch", "10", "--synapses-per-branch", "20", *FAST]
    result = CliRunner().invoke(cli, [*args, *short])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["spike_weight"] == 0.8 and config["select_best"] == "loss"
    assert config["patience"] == 4 and config["learning_rate"] == 5e-4
    assert config["model"]["num_memory"] == 20 and config["train_simulations"] == 24


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "elm", "--hidden", "5"], "hidden"),
        (["--num-branch", "1", "--synapses-per-branch", "20"], "num_synapse_per_branch"),
        (["--train-split", "nope"], "nope"),
        (["--model", "tcn", "--tcn", "7by128"], "DEPTHxWIDTHxFIELD"),
        (["--epochs", "0"], "epochs"),
        (["--spike-weight", "1"], "--spike-weight"),
        (["--weight-decay", "-0.1"], "--weight-decay"),
        (["--ema-decay", "1"], "--ema-decay"),
    ],
)
def test_fit_bad_options(toy_store, tmp_path, args, message):
    result = CliRunner().invoke(
        cli, ["fit", "-d", str(toy_store), "-o", str(tmp_path / "r"), *FAST, *args]
    )
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert message in result.output


def test_sweep_runs_every_point_once(toy_store, tmp_path):
    args = [
        "sweep",
        "-d",
        str(toy_store),
        "-o",
        str(tmp_path / "sw"),
        "--models",
        "elm,lstm",
        "--num-memory",
        "2,4",
        "--num-branch",
        "10",
        "--lstm-hidden",
        "6",
        "--cluster",
        "in-process",
        *FAST,
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    table = json.loads((tmp_path / "sw" / "results.json").read_text())["results"]
    assert [row["name"] for row in table] == ["elm-m2-b10", "elm-m4-b10", "lstm-h6"]
    assert all(row["parameters"] > 0 for row in table)
    stamp = (tmp_path / "sw" / "elm-m2-b10" / "last.pt").stat().st_mtime_ns
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0
    assert (tmp_path / "sw" / "elm-m2-b10" / "last.pt").stat().st_mtime_ns == stamp  # skipped
    assert (tmp_path / "sw" / "results.csv").read_text().count("\n") == 4
    # changed settings: the finished points are not passed off as the new ones, nor overwritten
    changed = CliRunner().invoke(cli, [*args, "--lr", "0.01"])
    assert changed.exit_code == EXIT_BAD_INPUT, changed.output
    assert "elm-m2-b10" in changed.output and "learning_rate" in changed.output
    assert (tmp_path / "sw" / "elm-m2-b10" / "last.pt").stat().st_mtime_ns == stamp
    assert (tmp_path / "sw" / "results.csv").read_text().count("\n") == 4


def test_sweep_with_its_defaults_on_the_default_local_cluster(toy_store, tmp_path):
    """What a new user runs: default cluster (local worker processes), default batch loaders.

    Loaders used to be processes, which dask's (daemonic) worker processes may not start.
    """
    out = tmp_path / "sweep"
    args = ["sweep", "-d", toy_store, "-o", out, "--num-memory", "2", "--num-branch", "10"]
    result = CliRunner().invoke(
        cli, [*map(str, args), "--models", "elm,lstm", "--lstm-hidden", "4", *FAST]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["results"]
    assert [row["name"] for row in rows] == ["elm-m2-b10", "lstm-h4"]
    assert all(row["valid_spike_auc"] is not None for row in rows)
    assert json.loads((out / "elm-m2-b10" / "config.json").read_text())["loader_workers"] == 2


def test_grid_and_tcn_shapes():
    points = grid(SweepConfig(models=("elm", "tcn"), num_memory=(1, 20), num_branch=(15, 45)), 1278)
    assert list(points) == [
        "elm-m1-b15",
        "elm-m1-b45",
        "elm-m20-b15",
        "elm-m20-b45",
        "tcn-7x128x153",
    ]
    assert points["elm-m20-b15"].model.num_branch == 15
    assert tcn_shape("7x128x153") == {"depth": 7, "width": 128, "first_kernel": 45, "kernel": 19}
    assert tcn_shape("1x128x43")["first_kernel"] == 43
    with pytest.raises(ValueError, match="models"):
        SweepConfig(models=("gru",))
    with pytest.raises(ValueError, match="DEPTHxWIDTHxFIELD"):
        SweepConfig(tcn=("7by128",))
