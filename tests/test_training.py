"""Training: it learns, it resumes exactly, its best checkpoint is a true copy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from surrogate.checkpoints import load_model, read_checkpoint
from surrogate.models import ELMConfig, LSTMConfig
from surrogate.neuronio_fit import TrainConfig, fit
from surrogate.train import TrainingError

ELM_SMALL = ELMConfig(num_input=100, num_memory=10, num_branch=10, num_synapse_per_branch=20)


def config(**changes) -> TrainConfig:
    values = {
        "model": ELM_SMALL,
        "batch_size": 8,
        "batches_per_epoch": 100,
        "epochs": 2,
        "learning_rate": 5e-3,
        "loader_workers": 0,
        "valid_batches": 4,
    }
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained(toy_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "elm"
    return fit(config(), toy_store, out, progress=False), out


def test_training_lowers_the_loss_and_beats_a_constant_predictor(trained):
    result, out = trained
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert not list(out.glob(".*.partial"))  # every file was written whole, then renamed
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert result.last["valid_spike_auc"] > 0.6  # a constant predictor scores 0.5
    assert result.last["valid_soma_rmse_mv"] < 2.0  # the target's spread is ≈ 4 mV
    assert (out / "metrics.csv").read_text().startswith("epoch") or "epoch" in (
        out / "metrics.csv"
    ).read_text()
    assert json.loads((out / "result.json").read_text())["parameters"] == result.parameters


def test_run_folder_holds_a_loadable_model(trained, toy_store):
    _, out = trained
    model = load_model(out / "last.pt")
    from surrogate.data import WindowBatches

    batch = WindowBatches(toy_store, "valid")[0]
    with torch.no_grad():
        assert model(batch.inputs).shape == (8, 500, 2)


def test_resume_reproduces_the_uninterrupted_run(toy_store, tmp_path):
    short = config(batches_per_epoch=15, epochs=3)
    straight = fit(short, toy_store, tmp_path / "straight", progress=False)
    # the same run "killed" after its first epoch: epochs beyond are cut, then resumed
    partial = tmp_path / "resumed"
    killed = short.model_copy(update={"epochs": 3})
    fit_one_epoch(killed, toy_store, partial)
    resumed = fit(short, toy_store, partial, resume=True, progress=False)
    assert resumed.epochs_run == 2
    a = read_checkpoint(tmp_path / "straight" / "last.pt")["state_dict"]
    b = read_checkpoint(partial / "last.pt")["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.last["train_loss"] == resumed.last["train_loss"]


def fit_one_epoch(config, store, out):
    """Run a config but stop after its first epoch, as a kill would (last.pt of epoch 1)."""
    import surrogate.train as train_module

    class Stop(Exception):
        pass

    original = train_module._write_metrics

    def write_then_stop(path, history):
        original(path, history)
        raise Stop

    train_module._write_metrics = write_then_stop
    try:
        with pytest.raises(Stop):
            fit(config, store, out, progress=False)
    finally:
        train_module._write_metrics = original


def test_spike_weight_shares_the_loss_between_spikes_and_soma(toy_store, tmp_path):
    """loss = w·BCE + (1 − w)·MSE; the default w 0.5 is the released loss, and a fit trains and
    validates with the weight it was given."""
    from surrogate.data import WindowBatches
    from surrogate.neuronio_fit import NeuronIOFit, loss_fn

    batch = WindowBatches(toy_store, "train", batch_size=4)[0]
    output = torch.randn(*batch.spikes.shape, 2, generator=torch.Generator().manual_seed(0))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(output[..., 0], batch.spikes)
    mse = torch.mean((output[..., 1] - batch.soma) ** 2)
    assert float(loss_fn(output, batch)) == pytest.approx(float(0.5 * bce + 0.5 * mse), rel=1e-6)
    assert float(loss_fn(output, batch, spike_weight=0.8)) == pytest.approx(
        float(0.8 * bce + 0.2 * mse), rel=1e-6
    )
    run = config(batches_per_epoch=3, epochs=1, spike_weight=0.8)
    result = fit(run, toy_store, tmp_path / "w", progress=False)
    model = load_model(tmp_path / "w" / "last.pt")
    task = NeuronIOFit(run, toy_store)
    with torch.no_grad():
        losses = []
        for valid in task.valid:
            out = model(valid.inputs)
            burn = run.valid_burn_in_ms
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                out[:, burn:, 0], valid.spikes[:, burn:]
            )
            mse = torch.mean((out[:, burn:, 1] - valid.soma[:, burn:]) ** 2)
            losses.append(float(0.8 * bce + 0.2 * mse))
    assert result.last["valid_loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    with torch.no_grad():  # the training loss too
        trained = task.loss(model, valid, torch.device("cpu"))
        bce = torch.nn.functional.binary_cross_entropy_with_logits(out[..., 0], valid.spikes)
        mse = torch.mean((out[..., 1] - valid.soma) ** 2)
    assert float(trained) == pytest.approx(float(0.8 * bce + 0.2 * mse), rel=1e-5)
    with pytest.raises(ValueError, match="spike_weight"):
        config(spike_weight=1.0)


def test_weight_decay_is_decoupled_and_reaches_the_fit(toy_store, tmp_path):
    """AdamW-style decay: with no gradient, a step multiplies every weight by exactly 1 − lr·λ
    (coupled L2 would be rescaled by Adam's statistics); a fit given a decay ends with smaller
    weights than the same fit without; the default (0, as released) is plain Adam."""
    from surrogate.train import LoopSettings, _optimizer

    layer = torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in layer.parameters()]
    step = _optimizer(LoopSettings(learning_rate=0.01, weight_decay=0.5), layer)
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    step.step()
    for p, old in zip(layer.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), old * (1 - 0.01 * 0.5))
    assert _optimizer(LoopSettings(), layer).param_groups[0]["weight_decay"] == 0
    with pytest.raises(ValueError, match="weight_decay"):
        LoopSettings(optimizer="adamax", weight_decay=0.1)

    norms = {}
    for decay in (0.0, 5.0):
        run = config(batches_per_epoch=20, epochs=1, weight_decay=decay, valid_split=None)
        fit(run, toy_store, tmp_path / f"wd{decay}", progress=False)
        model = load_model(tmp_path / f"wd{decay}" / "last.pt")
        norms[decay] = float(torch.linalg.vector_norm(model._proto_w_s.detach()))
        stored = json.loads((tmp_path / f"wd{decay}" / "config.json").read_text())
        assert stored["weight_decay"] == decay
    assert norms[5.0] < 0.9 * norms[0.0]


def test_ema_decay_scores_and_saves_the_average_and_resumes_it(toy_store, tmp_path):
    """With ``ema_decay`` d the average starts as the first step's weights and then moves by
    (1 − d) towards each new step's; validation, best.pt and the result are the average's,
    last.pt keeps the live weights (for resume) and the average, and a killed run resumes to
    the same average as an uninterrupted one. Off by default, as released."""
    from surrogate.train import LoopSettings, _weight_average

    assert _weight_average(LoopSettings(), torch.nn.Linear(2, 1)) is None
    layer = torch.nn.Linear(2, 1, bias=False)
    average = _weight_average(LoopSettings(ema_decay=0.9), layer)
    for value in (1.0, 3.0, 5.0):
        layer.weight.data.fill_(value)
        average.update_parameters(layer)
    expected = 0.9 * (0.9 * 1.0 + 0.1 * 3.0) + 0.1 * 5.0
    assert float(average.module.weight.detach()[0, 0]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="ema_decay"):
        LoopSettings(ema_decay=1.0)

    run = config(batches_per_epoch=15, epochs=3, ema_decay=0.9)
    straight = fit(run, toy_store, tmp_path / "ema", progress=False)
    last = read_checkpoint(tmp_path / "ema" / "last.pt")
    averaged = {
        k.removeprefix("module."): v for k, v in last["averaged"].items() if k != "n_averaged"
    }
    assert int(last["averaged"]["n_averaged"]) == 45
    assert not torch.equal(averaged["_proto_w_s"], last["state_dict"]["_proto_w_s"])
    # the history scores the average, not the live weights: re-validate both to tell
    from surrogate.neuronio_fit import NeuronIOFit
    from surrogate.train import _validated

    task = NeuronIOFit(run, toy_store)
    model = load_model(tmp_path / "ema" / "last.pt")
    live = _validated(task, model, torch.device("cpu"))
    model.load_state_dict(averaged)
    mean = _validated(task, model, torch.device("cpu"))
    assert straight.last["valid_loss"] == pytest.approx(mean["valid_loss"])
    assert straight.last["valid_loss"] != pytest.approx(live["valid_loss"])

    partial = tmp_path / "resumed"
    fit_one_epoch(run, toy_store, partial)
    # after one epoch, best.pt is that epoch's average, not its live weights
    killed = read_checkpoint(partial / "last.pt")
    best = read_checkpoint(partial / "best.pt")
    assert best["metrics"]["epoch"] == 1
    for key, value in best["state_dict"].items():
        assert torch.equal(value, killed["averaged"][f"module.{key}"]), key
    assert not torch.equal(best["state_dict"]["_proto_w_s"], killed["state_dict"]["_proto_w_s"])
    fit(run, toy_store, partial, resume=True, progress=False)
    again = read_checkpoint(partial / "last.pt")["averaged"]
    for key, value in last["averaged"].items():
        assert torch.equal(value, again[key]), key


def test_ema_decay_keeps_the_live_batchnorm_statistics(toy_store, tmp_path):
    """BatchNorm's running statistics are not trained by the optimiser: the averaged TCN that
    is validated and saved carries the live model's, not those it was built with."""
    from surrogate.models import TCNConfig

    tcn = TCNConfig(num_input=100, depth=2, width=8, first_kernel=9, kernel=5)
    fit(config(model=tcn, batches_per_epoch=5, epochs=1, ema_decay=0.9), toy_store, tmp_path)
    best = read_checkpoint(tmp_path / "best.pt")["state_dict"]
    live = read_checkpoint(tmp_path / "last.pt")["state_dict"]
    statistics = [key for key in live if key.endswith(("running_mean", "running_var"))]
    assert statistics
    for key in statistics:
        assert torch.equal(best[key], live[key]), key
    assert float(best[statistics[0]].abs().sum()) > 0  # moved from the zeros it starts at


def test_refuses_to_overwrite_or_resume_another_run(toy_store, tmp_path):
    short = config(batches_per_epoch=3, epochs=1, valid_split=None)
    fit(short, toy_store, tmp_path / "r", progress=False)
    with pytest.raises(TrainingError, match="--resume"):
        fit(short, toy_store, tmp_path / "r", progress=False)
    with pytest.raises(TrainingError, match="different training config"):
        fit(
            short.model_copy(update={"seed": 5}),
            toy_store,
            tmp_path / "r",
            resume=True,
            progress=False,
        )


def test_best_is_a_copy_not_an_alias(toy_store, tmp_path):
    run = config(batches_per_epoch=20, epochs=3)
    fit(run, toy_store, tmp_path / "b", progress=False)
    best = read_checkpoint(tmp_path / "b" / "best.pt")
    last = read_checkpoint(tmp_path / "b" / "last.pt")
    history = last["history"]
    best_epoch = int(np.argmin([row["valid_soma_rmse_mv"] for row in history])) + 1
    assert best["metrics"]["epoch"] == best_epoch
    if best_epoch != len(history):  # an earlier epoch was best: its weights must differ
        assert any(
            not torch.equal(best["state_dict"][k], last["state_dict"][k])
            for k in best["state_dict"]
        )


@pytest.mark.parametrize(
    ("select", "key", "pick"),
    [("loss", "valid_loss", np.argmin), ("spike_auc", "valid_spike_auc", np.argmax)],
)
def test_best_epoch_follows_the_chosen_metric(toy_store, tmp_path, select, key, pick):
    fit(
        config(batches_per_epoch=15, epochs=4, select_best=select),
        toy_store,
        tmp_path,
        progress=False,
    )
    history = read_checkpoint(tmp_path / "last.pt")["history"]
    expected = int(pick([row[key] for row in history])) + 1
    assert read_checkpoint(tmp_path / "best.pt")["metrics"]["epoch"] == expected
    if select == "spike_auc":  # here a different epoch than the default soma RMSE would pick
        assert expected != int(np.argmin([row["valid_soma_rmse_mv"] for row in history])) + 1


def test_patience_stops_where_the_full_run_stopped_improving(toy_store, tmp_path):
    """Early stopping keeps the full run's epochs up to the stop, and its best.pt."""
    run = config(batches_per_epoch=15, epochs=6, select_best="spike_auc")
    fit(run, toy_store, tmp_path / "full", progress=False)
    history = read_checkpoint(tmp_path / "full" / "last.pt")["history"]
    aucs = [row["valid_spike_auc"] for row in history]
    # the first epoch that is `patience` epochs past the best so far
    stop = next(
        (e for e in range(1, 7) if e - (int(np.argmax(aucs[:e])) + 1) >= 1),
        None,
    )
    assert stop is not None and stop < 6  # the toy run does stop improving
    result = fit(run.model_copy(update={"patience": 1}), toy_store, tmp_path / "early",
                 progress=False)  # fmt: skip
    assert result.epochs_run == stop
    done = json.loads((tmp_path / "early" / "result.json").read_text())
    assert done["stopped_early"] and done["epochs"] == stop
    early = read_checkpoint(tmp_path / "early" / "last.pt")["history"]
    assert [r["valid_spike_auc"] for r in early] == aucs[:stop]
    a = read_checkpoint(tmp_path / "early" / "best.pt")
    b = read_checkpoint(tmp_path / "full" / "best.pt")
    if b["metrics"]["epoch"] <= stop:
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_patience_may_change_on_resume(toy_store, tmp_path):
    run = config(batches_per_epoch=3, epochs=2, valid_split="valid")
    fit(run, toy_store, tmp_path / "r", progress=False)
    (tmp_path / "r" / "result.json").unlink()  # as if killed after its last epoch
    result = fit(run.model_copy(update={"patience": 3}), toy_store, tmp_path / "r",
                 resume=True, progress=False)  # fmt: skip
    assert result.epochs_run == 0


def test_loader_workers_do_not_change_the_result(toy_store, tmp_path):
    run = config(batches_per_epoch=6, epochs=1, valid_split=None)
    fit(run, toy_store, tmp_path / "w0", progress=False)
    fit(run.model_copy(update={"loader_workers": 2}), toy_store, tmp_path / "w2", progress=False)
    a = read_checkpoint(tmp_path / "w0" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "w2" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lstm_trains_through_the_same_trainer(toy_store, tmp_path):
    run = config(
        model=LSTMConfig(num_input=100, hidden=16),
        batches_per_epoch=30,
        epochs=2,
        learning_rate=2e-2,
    )
    fit(run, toy_store, tmp_path / "lstm", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "lstm" / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[1]["valid_soma_rmse_mv"] < rows[0]["valid_soma_rmse_mv"]


def test_channel_mismatch_is_reported(toy_store, tmp_path):
    wrong = config(model=ELMConfig(num_input=1278))
    with pytest.raises(TrainingError, match="100 input channels, the model expects 1278"):
        fit(wrong, toy_store, tmp_path / "x", progress=False)
