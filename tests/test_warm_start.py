"""Warm start (fit --init) and learning curves (sweep --train-sims) on the toy dataset."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from pipelines.cli import cli
from surrogate.checkpoints import CheckpointError, load_model, read_checkpoint
from surrogate.models import ELM, ELMConfig
from surrogate.models.routing import neuronio_routing
from surrogate.warm_start import warm_start

SMALL = ["--num-memory", "4", "--num-branch", "10", "--synapses-per-branch", "20"]
FAST = ["--epochs", "1", "--batches-per-epoch", "3", "-q"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def source(toy_store, tmp_path_factory):
    """A Branch-ELM trained briefly on the toy dataset (100 inputs)."""
    out = tmp_path_factory.mktemp("source") / "run"
    invoke("fit", "-d", toy_store, "-o", out, *SMALL, *FAST)
    return out / "best.pt"


def test_same_layout_takes_every_weight_and_reproduces_the_source(source):
    trained = load_model(source)
    fresh = ELM(trained.config)
    record = warm_start(fresh, source)
    assert record["layout"] == "same" and record["fresh"] == []
    x = (torch.rand(2, 50, 100) < 0.05).float()
    with torch.no_grad():
        assert torch.equal(fresh(x), trained(x))


@pytest.mark.parametrize("synapses", ["by-position", "fresh"])
def test_another_layout_takes_exactly_the_layout_free_parts(source, synapses):
    trained = load_model(source)
    config = trained.config.model_copy(update={"num_input": 60})  # another cell's channel count
    target = ELM(config)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    record = warm_start(target, source, synapses)
    state, given = target.state_dict(), trained.state_dict()
    taken = {"_proto_tau_m", "tau_s", "w_y.weight", "w_y.bias"} | {
        k for k in given if k.startswith("mlp.")
    }
    for name in taken:
        assert torch.equal(state[name], given[name]), name
    # the routing is the target's own
    index, mask = neuronio_routing(60, 10, 20)
    assert torch.equal(state["input_to_synapse_indices"], index)
    assert torch.equal(state["valid_indices_mask"], mask)
    if synapses == "fresh":
        assert torch.equal(state["_proto_w_s"], before["_proto_w_s"])
        assert "_proto_w_s" in record["fresh"]
    else:
        # every slot keeps its kind, and takes a weight from the same branch of the source
        kind_target = state["input_to_synapse_indices"] < 30
        kind_source = given["input_to_synapse_indices"] < 50
        source_w, target_w = given["_proto_w_s"].view(10, 20), state["_proto_w_s"].view(10, 20)
        for branch in range(10):
            for slot in range(20):
                value = target_w[branch, slot]
                candidates = [
                    s
                    for s in (slot, slot - 1, slot + 1)
                    if 0 <= s < 20
                    and kind_source.view(10, 20)[branch, s]
                    == kind_target.view(10, 20)[branch, slot]
                ]
                assert any(torch.equal(value, source_w[branch, s]) for s in candidates)
        assert "_proto_w_s" in record["transferred"]
    assert set(record["transferred"]) >= taken
    assert record["layout"].startswith("different (100 → 60")


def test_fine_tuning_never_returns_a_model_worse_than_its_start(source, toy_store, tmp_path):
    """The warm start is validated as epoch 0; a ruinous learning rate leaves it as best.pt."""
    out = tmp_path / "ruined"
    args = ["fit", "-d", toy_store, "-o", out, *SMALL, "--init", source, "--lr", "3"]
    result = invoke(*args, "--select-best", "loss", "--epochs", "2", "--batches-per-epoch", "5")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert "train_loss" not in rows[0] and rows[0]["valid_loss"] < rows[1]["valid_loss"]
    assert "best epoch 0 (the warm start, before training)" in result.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["epochs"] == 2 and summary["best"]["epoch"] == 0
    started, kept, last = (
        load_model(source),
        load_model(out / "best.pt"),
        load_model(out / "last.pt"),
    )
    x = (torch.rand(2, 50, 100) < 0.05).float()
    with torch.no_grad():
        assert torch.equal(kept(x), started(x))
        assert not torch.equal(last(x), started(x))


def test_a_different_architecture_is_refused(source):
    other = ELM(ELMConfig(num_input=100, num_memory=6, num_branch=10, num_synapse_per_branch=20))
    with pytest.raises(CheckpointError, match="num_memory 4 vs 6"):
        warm_start(other, source)


def test_a_released_elm_warm_starts_a_fit_on_another_layout(toy_store, tmp_path):
    from tests.test_checkpoints_export import released_state_dict

    released = tmp_path / "neuronio_best_model_state.pt"
    torch.save(released_state_dict(20), released)  # 1278 inputs, 45 branches × 100
    out = tmp_path / "run"
    result = invoke(
        "fit",
        "-d",
        toy_store,
        "-o",
        out,
        "--init",
        released,
        "--init-synapses",
        "by-position",
        *FAST,
    )
    assert "warm start from" in result.output and "1278 → 100 inputs" in result.output
    provenance = json.loads((out / "result.json").read_text())["provenance"]
    assert provenance["warm_start"]["synapses"] == "by-position"
    assert provenance["train_simulations"] == 24
    assert read_checkpoint(out / "best.pt")["provenance"]["warm_start"]["source"] == str(released)


def test_a_learning_curve_sweep(toy_store, source, tmp_path):
    out = tmp_path / "curve"
    args = ["sweep", "-d", toy_store, "-o", out, "--num-memory", "4", "--num-branch", "10"]
    args += ["--synapses-per-branch", "20", "--train-sims", "8,16", "--init", source]
    args += ["--evaluate-split", "valid", "--reference-checkpoint", source, "--cluster"]
    result = invoke(*args, "in-process", *FAST)
    rows = json.loads((out / "results.json").read_text())["results"]
    names = [row["name"] for row in rows]
    assert names == [
        "elm-m4-b10-n0008-scratch",
        "elm-m4-b10-n0008-init",
        "elm-m4-b10-n0016-scratch",
        "elm-m4-b10-n0016-init",
    ]
    assert [row["train_simulations"] for row in rows] == [8, 8, 16, 16]
    assert rows[0]["training_minutes"] == pytest.approx(8 * 1.2 / 60)
    assert all(0.0 <= row["valid_spike_auc"] <= 1.0 for row in rows)
    assert [row["warm_start_layout"] for row in rows] == [None, "same", None, "same"]
    assert (out / "learning_curve.png").stat().st_size > 10_000
    assert "learning curve:" in result.output
    reference = json.loads((out / "results.json").read_text())["reference"]
    assert reference["name"] == "best.pt" and 0 <= reference["spike_auc"] <= 1


def test_training_on_the_first_simulations_only(toy_store):
    from surrogate.data import WindowBatches

    small = WindowBatches(toy_store, "train", batch_size=4, limit=8)
    assert small.sims.tolist() == list(range(8))  # the first 8: the sets of a curve nest
    drawn = set()
    original = small.split.window
    small.split.window = lambda sim, start, length: (drawn.add(sim), original(sim, start, length))[
        1
    ]
    for i in range(30):
        small[i]
    assert drawn <= set(range(8)) and len(drawn) > 4
    with pytest.raises(ValueError, match="asked for"):
        WindowBatches(toy_store, "train", limit=100)


def test_the_shipped_surrogate_fits_the_built_in_cell(default_cell):
    """`--init builtin` names a packaged file: a d_m 20 Branch-ELM over the built-in cell's
    input channels (two per dendritic segment), so the demo's warm start is a same-layout one
    and takes every weight; a change to the built-in cell without a new pretraining fails here."""
    from surrogate.checkpoints import load_any
    from surrogate.warm_start import BUILTIN, resolve_source

    assert resolve_source("builtin") == BUILTIN and BUILTIN.is_file()
    shipped = load_any(BUILTIN)
    assert isinstance(shipped, ELM)
    assert shipped.config.num_input == 2 * len(default_cell.segments.region)
    assert (shipped.config.num_memory, shipped.config.branches) == (20, 45)
    target = ELM(ELMConfig(num_input=shipped.config.num_input, num_memory=20, num_branch=45))
    assert warm_start(target, BUILTIN)["layout"] == "same"
    x = (torch.rand(1, 300, target.config.num_input) < 0.02).float()
    assert torch.equal(target(x), shipped(x))


def test_nexus_target_trains_a_third_output_and_warm_starts_across_output_counts(
    source, toy_store, tmp_path
):
    """--nexus-weight: the model gets a third output fitted to the nexus voltage; a warm start
    from a two-output source keeps its spike and soma rows and starts the nexus row fresh."""
    import zarr

    from surrogate.data import Batch, WindowBatches, nexus_target
    from surrogate.neuronio_fit import loss_fn

    out = tmp_path / "nexus"
    result = invoke(
        "fit", "-d", toy_store, "-o", out, *SMALL, *FAST[:-1], "--nexus-weight", "0.5",
        "--init", source,
    )  # fmt: skip
    assert load_model(out / "best.pt").config.num_output == 3
    given = load_model(source)
    target = ELM(given.config.model_copy(update={"num_output": 3}))
    before = target.state_dict()["w_y.weight"].clone()
    warm_start(target, source)
    head = target.state_dict()["w_y.weight"]
    assert torch.equal(head[:2], given.state_dict()["w_y.weight"])  # spike and soma rows
    assert torch.equal(head[2], before[2])  # the nexus row as initialised
    assert torch.equal(target.state_dict()["_proto_w_s"], given.state_dict()["_proto_w_s"])
    assert json.loads((out / "config.json").read_text())["nexus_weight"] == 0.5
    warm = read_checkpoint(out / "best.pt")["provenance"]["warm_start"]
    assert warm["layout"] == "different (same inputs, 2 → 3 outputs)"
    assert "w_y rows 2 (outputs the source does not have)" in warm["fresh"]
    assert "fresh: w_y rows 2" in result.output
    invoke("evaluate", "-k", out / "best.pt", "-d", toy_store, "--split", "valid", "-o", out / "ev")
    assert "spike_auc" in json.loads((out / "ev" / "metrics.json").read_text())  # outputs 0, 1
    # the batches carry the nexus target of the windows they cut
    batches = WindowBatches(toy_store, "train", batch_size=2, window=100, min_start=0, nexus=True)
    batch = batches[0]
    nexus = zarr.open_group(str(toy_store), mode="r")["train"]["nexus_v"]
    rng = __import__("numpy").random.default_rng([0, 0])
    sims = rng.choice(batches.sims, size=2, replace=False)
    starts = rng.integers(0, batches.n_time - 100 + 1, 2)
    for row, (sim, start) in enumerate(zip(sims, starts, strict=True)):
        expected = nexus_target(nexus[int(sim), start : start + 100])
        assert torch.equal(batch.nexus[row], torch.from_numpy(expected))
    # the loss adds weight × the nexus MSE, and nothing without a weight
    output = torch.zeros(2, 100, 3)
    plain = loss_fn(output, batch)
    added = float(torch.mean(batch.nexus**2))
    assert float(loss_fn(output, batch, nexus_weight=0.5)) == pytest.approx(
        float(plain) + 0.5 * added, rel=1e-5
    )
    assert isinstance(batch, Batch) and WindowBatches(toy_store, "train")[0].nexus is None


def test_a_warm_start_defaults_to_the_fine_tuning_recipe(source, toy_store, tmp_path):
    """`--init` alone gives a fine-tuning (6 × 250 batches, best.pt by loss); what is given on
    the command line or in a config stands; without --init the released recipe stays."""
    from pipelines.config import FitFileConfig, with_overrides
    from surrogate.neuronio_fit import FINE_TUNING, TrainSettings

    released = TrainSettings()
    assert (released.epochs, released.batches_per_epoch, released.select_best) == (
        35,
        10000,
        "soma_rmse",
    )
    warm = TrainSettings(init="builtin")
    assert (
        {key: getattr(warm, key) for key in FINE_TUNING}
        == FINE_TUNING
        == {
            "epochs": 6,
            "batches_per_epoch": 250,
            "select_best": "loss",
        }
    )
    assert TrainSettings(init="builtin", epochs=2).epochs == 2
    file_config = with_overrides(FitFileConfig(epochs=3), {"init": "builtin"})
    assert (file_config.settings().epochs, file_config.settings().batches_per_epoch) == (3, 250)

    out = tmp_path / "warm"
    invoke("fit", "-d", toy_store, "-o", out, *SMALL, "--init", source, "--batches-per-epoch", 2)
    settings = read_checkpoint(out / "last.pt")["train_config"]
    assert (settings["epochs"], settings["batches_per_epoch"], settings["select_best"]) == (
        6,
        2,
        "loss",
    )
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 1 + 6  # header, start, 6
