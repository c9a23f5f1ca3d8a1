"""The cell-general Branch-ELM: one set of weights, a surrogate for any cell's geometry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from elmpipe.dataset import Dataset
from elmpipe.errors import EXIT_BAD_INPUT
from surrogate.checkpoints import load_model, save_checkpoint
from surrogate.drive import input_rate_hz
from surrogate.geometry import CellGeometry
from surrogate.models import build_model, model_config
from surrogate.models.general_elm import (
    REFERENCE_RATE_HZ,
    GeneralELM,
    GeneralELMConfig,
    canonical_order,
)
from tests.precision import assert_float32_close
from tests.toy_dataset import make_toy_dataset, toy_geometry

SMALL = GeneralELMConfig(num_memory=4, num_branch=6, num_synapse_per_branch=30, synapse_hidden=8)


def permuted(record: dict, order: np.ndarray) -> dict:
    """The same cell with its segment table in another row order (another file of it)."""
    table = {k: [v[i] for i in order] for k, v in record["segment_table"].items()}
    return {**record, "segment_table": table}


def trained_like(model: GeneralELM) -> GeneralELM:
    """Weights away from their initialisation, so that f_θ depends on the features."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    return model


def test_the_same_cell_written_twice_gives_the_same_outputs():
    model = trained_like(GeneralELM(SMALL))
    cell = toy_geometry(50)
    order = np.random.default_rng(0).permutation(50)
    first, second = model.for_cell(cell), model.for_cell(permuted(cell, order))
    x = (torch.rand(2, 200, 100, generator=torch.Generator().manual_seed(1)) < 0.05).float()
    channels = np.r_[order, 50 + order]  # the second file's row i is the first's row order[i]
    with torch.no_grad():
        assert_float32_close(second(x[:, :, channels]), first(x), eps_units=200)


def test_branches_read_the_same_regions_of_any_cell():
    geometry = CellGeometry.from_record(toy_geometry(50))
    order = canonical_order(geometry)
    subtrees = geometry.subtree()[list(order)]
    assert (np.diff(subtrees) >= 0).all()  # basal, then up to the nexus, then the tuft
    within = [geometry.landmark_position()[list(order)][subtrees == k] for k in range(3)]
    assert all((np.diff(part) >= 0).all() for part in within)


def test_a_materialized_cell_model_is_a_plain_elm_with_the_same_outputs(tmp_path):
    model = trained_like(GeneralELM(SMALL))
    cell = toy_geometry(40, l_max=1300.0, nexus=700.0)
    view, plain = model.for_cell(cell), model.materialize(cell)
    assert type(plain).__name__ == "ELM" and plain.config.segment_order is not None
    save_checkpoint(tmp_path / "cell.pt", plain)
    again = load_model(tmp_path / "cell.pt")
    x = (torch.rand(1, 150, 80, generator=torch.Generator().manual_seed(2)) < 0.05).float()
    with torch.no_grad():
        assert_float32_close(again(x), view(x), eps_units=200)


def test_a_cell_driven_harder_gets_proportionally_smaller_synapse_weights():
    """The drive (mean excitatory input rate per channel) scales the weights f_θ computes: a
    cell that needed twice the reference drive gets half the weights, in the view and in the
    materialized ELM alike; everything else is the same model."""
    model = trained_like(GeneralELM(SMALL)).requires_grad_(False)
    cell = toy_geometry(40)
    reference = model.for_cell(cell).synapse_weights()
    harder = model.for_cell(cell, 2 * REFERENCE_RATE_HZ).synapse_weights()
    assert reference.abs().sum() > 0
    assert_float32_close(harder, reference / 2, eps_units=8)
    plain = model.materialize(cell, 2 * REFERENCE_RATE_HZ)
    assert_float32_close(plain.synapse_weights().detach(), harder, eps_units=8)
    assert torch.equal(plain.w_y.weight, model.for_cell(cell).w_y.weight)
    assert model.for_cell(cell, REFERENCE_RATE_HZ).synapse_weights().equal(reference)
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(ValueError, match="input rate must be positive"):
            model.for_cell(cell, bad)


def test_the_drive_is_the_mean_excitatory_rate_per_channel(toy_store):
    """Spikes per second per excitatory channel after the 500 ms fade-in, over the first
    simulations of the split."""
    from elmpipe.dataset import SKIP_MS

    split = Dataset(toy_store).split("train")
    inputs = split.read("inputs", np.arange(3))[:, SKIP_MS:, :]
    excitatory = inputs[:, :, split.channel_sign > 0]
    expected = excitatory.sum() / (3 * excitatory.shape[2] * excitatory.shape[1] / 1000.0)
    assert input_rate_hz(toy_store, "train", max_sims=3) == pytest.approx(expected, rel=1e-12)
    assert input_rate_hz(toy_store, "train", max_sims=10**6) != input_rate_hz(
        toy_store, "train", max_sims=3
    )


def test_training_a_cell_view_trains_the_shared_weights():
    model = GeneralELM(SMALL)
    views = [model.for_cell(toy_geometry(n)) for n in (30, 50)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for view, n in zip(views, (30, 50), strict=True):
        x = (torch.rand(2, 50, 2 * n) < 0.1).float()
        view(x).square().mean().backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None}
    assert {"synapse_function.0.weight", "mlp.network.0.weight", "w_y.weight"} <= grads
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # the family is registered: its checkpoints load like any model's
    assert isinstance(build_model(model_config(SMALL.model_dump())), GeneralELM)


def test_pretraining_on_two_cells_gives_a_model_that_serves_each(toy_store, tmp_path):
    from surrogate.evaluate import evaluate
    from surrogate.general_fit import GeneralTrainConfig, pretrain

    other = make_toy_dataset(
        tmp_path / "other.zarr",
        {"train": 12, "valid": 4},
        seed=5,
        geometry=toy_geometry(50, l_max=1400.0, nexus=800.0),
    )
    config = GeneralTrainConfig(
        stores=(str(toy_store), str(other)),
        model=SMALL,
        epochs=2,
        batches_per_epoch=6,
        valid_batches=2,
        loader_workers=1,
    )
    result = pretrain(config, tmp_path / "run", progress=False)
    assert result.epochs_run == 2
    assert {"valid_0_loss", "valid_1_loss", "valid_loss", "valid_spike_auc"} <= set(result.best)
    provenance = result.summary["provenance"]
    assert provenance["train_simulations"] == [24, 12]
    assert provenance["input_rate_hz"] == [input_rate_hz(s, "train") for s in (toy_store, other)]
    # shareable as it is: no absolute paths (stores outside the working folder by name)
    assert provenance["stores"] == [toy_store.name, "other.zarr"]
    model = load_model(tmp_path / "run" / "best.pt")
    assert isinstance(model, GeneralELM)
    for store, split in ((toy_store, "valid"), (other, "train")):  # each cell's surrogate
        metrics = evaluate(model.materialize(Dataset(store).cell), store, split).metrics
        assert 0.0 <= metrics["spike_auc"] <= 1.0 and metrics["soma_rmse_mv"] > 0


def test_pretrain_then_fit_and_evaluate_a_cell_from_the_command_line(
    toy_store, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from pipelines.cli import cli
    from pipelines.config import load_config
    from surrogate.checkpoints import read_checkpoint
    from surrogate.general_fit import GeneralTrainConfig

    other = make_toy_dataset(
        tmp_path / "other.zarr",
        {"train": 12, "valid": 4},
        seed=6,
        geometry=toy_geometry(50, 1400.0),
    )
    fast = ["--epochs", "1", "--batches-per-epoch", "4", "-q"]
    small = ["--num-memory", "4", "--num-branch", "6", "--synapses-per-branch", "30"]
    runner = CliRunner()
    general = tmp_path / "general"
    done = runner.invoke(
        cli, ["pretrain", "-d", str(toy_store), "-d", str(other), "-o", str(general), *small, *fast]
    )
    assert done.exit_code == 0, done.output
    assert str(other) in done.output and "valid AUC" in done.output
    # from a config, run where the stores are: the provenance names both as given, nothing more
    monkeypatch.chdir(tmp_path)
    Path("pretrain.yaml").write_text("stores: [other.zarr]\n")
    again = runner.invoke(cli, ["pretrain", "-c", "pretrain.yaml", "-o", "g2", *small, *fast])
    assert again.exit_code == 0, again.output
    provenance = read_checkpoint(Path("g2") / "best.pt")["provenance"]
    assert provenance["config"] == "pretrain.yaml" and provenance["stores"] == ["other.zarr"]
    # a new cell's fit starts from the general model's ELM of that cell
    fit = runner.invoke(
        cli, ["fit", "-d", str(toy_store), "-o", str(tmp_path / "fit"), "--init",
              str(general / "best.pt"), *small, *fast],
    )  # fmt: skip
    assert fit.exit_code == 0, fit.output
    assert "the cell-general model's ELM of this cell, every weight" in fit.output
    zero_shot = runner.invoke(
        cli, ["evaluate", "-k", str(general / "best.pt"), "-d", str(toy_store), "--split",
              "valid", "-o", str(tmp_path / "zero-shot")],
    )  # fmt: skip
    assert zero_shot.exit_code == 0, zero_shot.output
    assert "spike_auc" in json.loads((tmp_path / "zero-shot" / "metrics.json").read_text())
    # the shipped pretraining configs are valid
    for name in ("pretrain-general.yaml", "pretrain-general-heldout.yaml"):
        config = Path(__file__).resolve().parents[1] / "configs" / name
        assert load_config(config, GeneralTrainConfig).model.num_memory == 20


def test_pretraining_keeps_the_epoch_its_select_best_names(toy_store):
    """`--select-best` was taken and ignored by pretrain (the loss chose, whatever was asked)."""
    from surrogate.general_fit import GeneralFit, GeneralTrainConfig

    def fit(**settings: Any) -> GeneralFit:
        config = GeneralTrainConfig(stores=(str(toy_store),), model=SMALL, **settings)
        return GeneralFit(config)

    best = {"valid_loss": 0.50, "valid_soma_rmse_mv": 1.0, "valid_spike_auc": 0.90}
    lower_loss_only = {"valid_loss": 0.40, "valid_soma_rmse_mv": 1.1, "valid_spike_auc": 0.80}
    higher_auc_only = {"valid_loss": 0.60, "valid_soma_rmse_mv": 1.2, "valid_spike_auc": 0.95}
    assert fit().config.select_best == "loss"  # the documented default
    assert fit().improved(lower_loss_only, best) and not fit().improved(higher_auc_only, best)
    by_rmse = fit(select_best="soma_rmse")
    assert not by_rmse.improved(lower_loss_only, best)
    assert by_rmse.improved({**lower_loss_only, "valid_soma_rmse_mv": 0.9}, best)
    by_auc = fit(select_best="spike_auc")
    assert by_auc.improved(higher_auc_only, best) and not by_auc.improved(lower_loss_only, best)


def test_pretrain_refuses_what_the_general_model_cannot_learn(toy_store, tmp_path):
    from click.testing import CliRunner

    from pipelines.cli import cli

    runner = CliRunner()
    fast = ["--epochs", "1", "--batches-per-epoch", "2", "--num-memory", "4", "-q"]
    base = ["pretrain", "-d", str(toy_store), "-o", str(tmp_path / "g"), *fast]
    for option in (["--nexus-weight", "0.5"], ["--ema-decay", "0.99"], ["--init", "builtin"]):
        done = runner.invoke(cli, [*base, *option])
        assert done.exit_code == EXIT_BAD_INPUT and "No such option" in done.output, done.output
    config = tmp_path / "nexus.yaml"
    config.write_text(f"stores: [{toy_store}]\nnexus_weight: 0.5\n")
    done = runner.invoke(cli, ["pretrain", "-c", str(config), "-o", str(tmp_path / "g"), *fast])
    assert done.exit_code == EXIT_BAD_INPUT and "nexus_weight" in done.output, done.output
    assert not (tmp_path / "g").exists()
