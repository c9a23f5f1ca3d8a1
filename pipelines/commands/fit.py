"""elmpipe fit and elmpipe sweep: train one surrogate or a grid of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipelines.commands.common import (
    EPILOG,
    FiniteRange,
    cluster_options,
    comma_separated,
    config_option,
    data_option,
    out_option,
    quiet_option,
    with_options,
)
from surrogate.tracking import BACKENDS

# -- fit and sweep ----------------------------------------------------------------------------


def _train_overrides(**options: Any) -> dict[str, Any]:
    names = {
        "epochs": "epochs",
        "batches_per_epoch": "batches_per_epoch",
        "batch_size": "batch_size",
        "lr": "learning_rate",
        "burn_in": "burn_in_ms",
        "seed": "seed",
        "device": "device",
        "loader_workers": "loader_workers",
        "train_split": "train_split",
        "valid_split": "valid_split",
        "init": "init",
        "init_synapses": "init_synapses",
        "train_sims": "train_simulations",
        "select_best": "select_best",
        "patience": "patience",
        "nexus_weight": "nexus_weight",
        "spike_weight": "spike_weight",
        "weight_decay": "weight_decay",
        "ema_decay": "ema_decay",
        "track": "track",
        "tracking_uri": "tracking_uri",
    }
    return {names[k]: v for k, v in options.items() if v is not None and v != ()}


training_options = [
    click.option(
        "--track",
        type=click.Choice(BACKENDS),
        multiple=True,
        help="Log the config, every epoch, the result and (with `elmpipe run`) the evaluation "
        "and the report's figures to TensorBoard (RUN/tensorboard) and/or MLflow; repeat for "
        "both. Needs pip install 'elmpipe[tracking]'.",
    ),
    click.option(
        "--tracking-uri",
        help="MLflow tracking store, e.g. sqlite:///runs/mlflow.db or http://server:5000 "
        "(default: $MLFLOW_TRACKING_URI, else MLflow's sqlite:///mlflow.db here).",
    ),
    click.option("--epochs", type=int, help="Epochs (released ELMs: 35)."),
    click.option("--batches-per-epoch", type=int, help="Batches per epoch (released: 10000)."),
    click.option("--batch-size", type=int, help="Windows per batch (default 8)."),
    click.option("--lr", type=float, help="Adam learning rate (default 5e-4, cosine decay)."),
    click.option("--burn-in", type=int, help="Loss ignores the first N ms of each window (0)."),
    click.option("--seed", type=int, help="Seed of initialisation and batches (0)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Default: auto."),
    click.option("--loader-workers", type=int, help="Threads preparing batches ahead (default 2)."),
    click.option("--train-split", help="Split to train on (default train)."),
    click.option("--valid-split", help="Split for per-epoch validation (default valid)."),
    click.option(
        "--select-best",
        type=click.Choice(["soma_rmse", "loss", "spike_auc"]),
        help="Validation metric that picks best.pt (default soma_rmse, as released; with little "
        "data, loss keeps the spike head from overfitting).",
    ),
    click.option(
        "--spike-weight",
        type=FiniteRange(min=0, max=1, min_open=True, max_open=True),
        help="The spike term's share of the loss, w·BCE + (1 - w)·MSE (default 0.5, as "
        "released). On the Hay study 0.8 lifted test AUC from 0.988 to 0.990 on average with the "
        "released schedule (configs/hay-surrogate.yaml, docs/how-much-data.md).",
    ),
    click.option(
        "--weight-decay",
        type=FiniteRange(min=0),
        help="Decoupled weight decay (AdamW): each step shrinks every weight by lr × this "
        "(default 0, as released). It holds a fit on little data back from memorising it: with "
        "--lr 0.0003, 0.3 took a warm start on 256 Hay simulations from test AUC 0.987 to 0.988 "
        "and soma RMSE 0.72 to 0.70 mV (docs/how-much-data.md).",
    ),
    click.option(
        "--ema-decay",
        type=FiniteRange(min=0, max=1, min_open=True, max_open=True),
        help="Validate, pick and save a moving average of the weights, updated every batch "
        "with this decay (e.g. 0.999: about the last 1 000 batches), instead of the last "
        "batch's weights (default: off, as released).",
    ),
    click.option(
        "--nexus-weight",
        type=FiniteRange(min=0),
        help="Also predict the nexus voltage as a third output, its MSE weighted by this in the "
        "loss (default 0: off, as released). The nexus shows the dendritic calcium spikes that "
        "drive the spikes surrogates miss most. On the Hay study 0.02 lifted test AUC by 0.002 in "
        "20 000 batches, not in 350 000 (docs/how-much-data.md).",
    ),
    click.option(
        "--patience",
        type=click.IntRange(min=1),
        help="Stop after N epochs without a better validation result (default: run every "
        "epoch). The schedule is not shortened, so best.pt is the full run's whenever its best "
        "epoch comes first.",
    ),
]


def _epoch_name(epoch: Any) -> str:
    return "0 (the warm start, before training)" if epoch == 0 else str(epoch)


@click.command(epilog=EPILOG)
@data_option
@out_option("Run folder.")
@click.option(
    "--model",
    "family",
    type=click.Choice(["elm", "lstm", "tcn"]),
    help="Model family (default: the config's, else elm).",
)
@click.option("--num-memory", type=int, help="ELM memory units d_m (default 20).")
@click.option("--num-branch", type=int, help="Branch-ELM branches (default 45).")
@click.option("--synapses-per-branch", type=int, help="Synapses per branch (default 100).")
@click.option("--version", "elm_version", type=click.Choice(["v1", "v2"]), help="ELM update rule.")
@click.option("--activation", type=click.Choice(["relu", "silu"]), help="ELM MLP activation.")
@click.option("--hidden", type=int, help="LSTM hidden units (default 50).")
@click.option("--tcn", "tcn_shape", help="TCN DEPTHxWIDTHxFIELD (default 7x128x153).")
@with_options(training_options)
@config_option("YAML with training settings and a `model:` section (options override it).")
@click.option(
    "--init",
    help="Start from this checkpoint (ours, or a released ELM state dict; 'builtin': the "
    "shipped surrogate of the built-in cell) instead of random weights.",
)
@click.option(
    "--init-synapses",
    type=click.Choice(["by-position", "fresh"]),
    help="Warm start across input layouts: map synapse weights by position (default) or "
    "start them fresh.",
)
@click.option("--train-sims", type=int, help="Train on the first N complete simulations only.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option(
    "--export",
    "export_path",
    type=click.Path(path_type=Path),
    help="Also write the final model as TorchScript (a file name, checked before training).",
)
@quiet_option
def fit(
    data,
    out,
    family,
    num_memory,
    num_branch,
    synapses_per_branch,
    elm_version,
    activation,
    hidden,
    tcn_shape,
    config_path,
    resume,
    export_path,
    quiet,
    **training,
) -> None:
    """Train one surrogate (ELM by default) on a dataset.

    \b
    Defaults follow the released ELM NeuronIO training: Branch-ELM d_m 20 with 45 branches ×
    100 synapses, batch 8 of 500 ms windows after 500 ms, loss 0.5·BCE + 0.5·MSE, Adam 5e-4
    with cosine decay. Writes metrics.jsonl/csv every epoch, last.pt (resumable), best.pt and,
    when finished, result.json.
    \b
    Examples:
      elmpipe fit -d data.zarr -o runs/elm20 --epochs 10 --batches-per-epoch 500
      elmpipe fit -d data.zarr -o runs/lstm50 --model lstm --hidden 50
      elmpipe fit -d data.zarr -o runs/elm20 --epochs 10 --batches-per-epoch 500 --resume
    """
    from elmpipe.errors import ConfigError
    from elmpipe.outputs import check_output_file, check_output_folder
    from pipelines.config import OPTIONS, FitFileConfig, checked, load_config, with_overrides
    from pipelines.sweep import dataset_inputs, surrogate_model
    from surrogate.neuronio_fit import TrainConfig
    from surrogate.neuronio_fit import fit as run_fit

    check_output_folder(out, "run folder")
    if export_path is not None:
        export_path = check_output_file(export_path, "TorchScript export")
    file_config = load_config(config_path, FitFileConfig) if config_path else FitFileConfig()
    model_in_file = "model" in file_config.model_fields_set
    file_config = with_overrides(file_config, _train_overrides(**training))
    section = dict(file_config.model)
    if family is not None and family != section["family"]:
        if model_in_file:
            raise ConfigError(
                f"{config_path}: model.family: the file says {section['family']!r}, "
                f"--model says {family!r}"
            )
        section = {"family": family}
    options = {
        "num_memory": num_memory,
        "num_branch": num_branch,
        "num_synapse_per_branch": synapses_per_branch,
        "version": elm_version,
        "activation": activation,
        "hidden": hidden,
        "tcn": tcn_shape,
    }
    given = {k: v for k, v in options.items() if v is not None}
    settings = file_config.settings()
    num_input = dataset_inputs(data, settings.train_split)
    family = section.pop("family")
    sources = [str(config_path)] if config_path else []
    if given or not sources:
        sources.append(OPTIONS)
    with checked(" and ".join(sources), "model"):
        model = surrogate_model(family, num_input, {**section, **given})
    config = TrainConfig.of(settings, model)
    result = run_fit(config, data, out, resume=resume, progress=not quiet)
    best = result.best
    click.echo(
        f"{out}: {result.parameters} parameters, {result.epochs_run} epochs in "
        f"{result.seconds:.0f} s; best epoch {_epoch_name(best.get('epoch'))}: valid AUC "
        f"{best.get('valid_spike_auc')}, soma RMSE {best.get('valid_soma_rmse_mv')} mV"
    )
    warm = result.summary["provenance"].get("warm_start")
    if warm:
        from surrogate.warm_start import describe

        click.echo(describe(warm))
    if export_path:
        from surrogate.checkpoints import load_model
        from surrogate.export import export_torchscript

        export_torchscript(load_model(out / "best.pt"), export_path)
        click.echo(f"TorchScript: {export_path}")


@click.command(epilog=EPILOG)
@data_option
@out_option("Sweep folder.")
@click.option("--models", default="elm", show_default=True, help="Families: elm,lstm,tcn.")
@click.option("--num-memory", help="ELM memory units, e.g. 1,2,5,10,20,50.")
@click.option("--num-branch", help="ELM branches, e.g. 15,45.")
@click.option("--synapses-per-branch", type=int, help="ELM synapses per branch (default 100).")
@click.option("--lstm-hidden", help="LSTM hidden sizes, e.g. 25,50,100.")
@click.option("--tcn", "tcn_shapes", help="TCN shapes, e.g. 7x128x153,1x128x43.")
@with_options(training_options)
@with_options(cluster_options)
@click.option(
    "--cluster-config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML whose `cluster:` section configures SLURM/PBS (e.g. configs/*.yaml).",
)
@click.option(
    "--torch-threads",
    type=int,
    default=1,
    show_default=True,
    help="PyTorch threads per grid point.",
)
@click.option(
    "--train-sims",
    help="Learning curve: training-set sizes, e.g. 8,16,32,64 (the first N simulations, nested).",
)
@click.option(
    "--init",
    "inits",
    multiple=True,
    help="Also warm-start every point from this checkpoint ('builtin': the shipped surrogate "
    "of the built-in cell); repeatable.",
)
@click.option(
    "--scratch/--no-scratch",
    default=True,
    show_default=True,
    help="Train from scratch too (with --init).",
)
@click.option(
    "--evaluate-split",
    help="Evaluate every point on this split with the NeuronIO protocol (e.g. test).",
)
@click.option(
    "--reference-checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A model (e.g. a released ELM) evaluated on the same split: a line in the figure.",
)
@quiet_option
def sweep(
    data,
    out,
    models,
    num_memory,
    num_branch,
    synapses_per_branch,
    lstm_hidden,
    tcn_shapes,
    cluster,
    workers,
    address,
    cluster_config,
    torch_threads,
    train_sims,
    inits,
    scratch,
    evaluate_split,
    reference_checkpoint,
    quiet,
    **training,
) -> None:
    """Train a grid of surrogates, one task per grid point, and tabulate them.

    \b
    Grid points already finished are skipped when the sweep is run again; interrupted ones
    resume. Writes OUT/<point>/ run folders and OUT/results.csv|json. With --train-sims and
    --evaluate-split it is a learning curve: every size trained from scratch (and from each
    --init), evaluated, and drawn in OUT/learning_curve.png against simulated training minutes.
    \b
    Examples:
      elmpipe sweep -d data.zarr -o runs/sweep --num-memory 1,2,5,10,20,50 --num-branch 15,45 \\
          --models elm,lstm --lstm-hidden 25,50 --epochs 5 --batches-per-epoch 500
      elmpipe sweep -d hay.zarr -o runs/curve --num-memory 20 --train-sims 16,32,64,128 \\
          --init runs/builtin/best.pt --evaluate-split test --epochs 10
    """
    from elmpipe.outputs import check_output_folder
    from pipelines.cluster import ClusterConfig
    from pipelines.config import OPTIONS, checked, read_yaml
    from pipelines.sweep import SweepConfig, plan_sweep, reference_metrics, run_sweep

    check_output_folder(out, "sweep folder")
    cluster_section: dict[str, Any] = {}
    if cluster_config:
        cluster_section = read_yaml(cluster_config).get("cluster") or {}
        with checked(str(cluster_config), "cluster"):
            ClusterConfig.model_validate(cluster_section)
    updates = {"kind": cluster, "workers": workers, "address": address}
    with checked(OPTIONS):
        cluster_settings = ClusterConfig.model_validate(
            {**cluster_section, **{k: v for k, v in updates.items() if v is not None}}
        )
    values: dict[str, Any] = {
        "models": comma_separated(models, str, "--models"),
        "train": _train_overrides(**training),
        "torch_threads": torch_threads,
    }
    for key, text in (
        ("num_memory", num_memory),
        ("num_branch", num_branch),
        ("lstm_hidden", lstm_hidden),
    ):
        if (parsed := comma_separated(text, int, f"--{key.replace('_', '-')}")) is not None:
            values[key] = parsed
    if tcn_shapes:
        values["tcn"] = comma_separated(tcn_shapes, str, "--tcn")
    if synapses_per_branch is not None:
        values["synapses_per_branch"] = synapses_per_branch
    if (sizes := comma_separated(train_sims, int, "--train-sims")) is not None:
        values["train_simulations"] = sizes
    starts = [init if init == "builtin" else str(Path(init).resolve()) for init in inits]
    values["starts"] = (("scratch",) if scratch or not starts else ()) + tuple(starts)
    values["evaluate_split"] = evaluate_split
    with checked(OPTIONS):
        sweep_config = SweepConfig(**values)
    points = plan_sweep(sweep_config, data)
    reference = None
    if reference_checkpoint is not None:
        reference = reference_metrics(reference_checkpoint, data, evaluate_split or "test")
    table = run_sweep(
        sweep_config,
        data,
        out,
        cluster_settings,
        progress=not quiet,
        points=points,
        reference=reference,
    )
    prefix = "valid" if evaluate_split is None else evaluate_split
    click.echo(f"{'name':<28} {'params':>9} {prefix + ' AUC':>10} {'RMSE mV':>8}")
    for row in table:
        auc, rmse = row.get(f"{prefix}_spike_auc"), row.get(f"{prefix}_soma_rmse_mv")
        auc = "-" if auc is None else f"{auc:.4f}"
        rmse = "-" if rmse is None else f"{rmse:.3f}"
        click.echo(f"{row['name']:<28} {row['parameters']:>9} {auc:>10} {rmse:>8}")
    click.echo(f"results: {out / 'results.csv'}")
    if (out / "learning_curve.png").exists():
        click.echo(f"learning curve: {out / 'learning_curve.png'}")
