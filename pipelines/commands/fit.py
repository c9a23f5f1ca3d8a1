"""elmpipe fit and elmpipe sweep: train one surrogate or a grid of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipelines.commands.common import (
    EPILOG,
    cluster_options,
    cluster_settings,
    comma_separated,
    config_option,
    data_option,
    family_options,
    field_option,
    given,
    model_options_given,
    out_option,
    quiet_option,
    sweep_axes_given,
    sweep_axis_options,
    with_options,
)
from pipelines.sweep import SweepConfig
from surrogate.general_fit import GeneralTrainConfig
from surrogate.models import surrogate_families
from surrogate.models.general_elm import GeneralELMConfig
from surrogate.neuronio_fit import FINE_TUNING, TrainSettings
from surrogate.warm_start import SHIPPED

# -- fit and sweep ----------------------------------------------------------------------------


def _with_init(field: str) -> str:
    """The default of a setting that a warm start changes (a fine-tuning: FINE_TUNING)."""
    return f"{TrainSettings.model_fields[field].default}; {FINE_TUNING[field]} with --init"


def _training_options(settings: type[TrainSettings]) -> list[Callable]:
    """The training options of a command whose settings are ``settings``: flags, types, choices
    and defaults come from it (`fit` and `sweep` tell the defaults a warm start changes;
    `pretrain` has no warm start, no weight average and no nexus output, and defaults of its
    own)."""
    warm_starts = settings is TrainSettings
    single_cell = ("ema_decay", "nexus_weight") if warm_starts else ()

    def default(field: str) -> str | None:
        return _with_init(field) if warm_starts else None

    return [
        field_option(
            settings,
            "track",
            multiple=True,
            help="Log the config, every epoch, the result and (with `elmpipe run`) the evaluation "
            "and the report's figures to TensorBoard (RUN/tensorboard) and/or MLflow; repeat for "
            "both. Needs pip install 'elmpipe[tracking]'",
        ),
        field_option(
            settings,
            "tracking_uri",
            help="MLflow tracking store, e.g. sqlite:///runs/mlflow.db or http://server:5000 "
            "(default: $MLFLOW_TRACKING_URI, else MLflow's sqlite:///mlflow.db here)",
        ),
        field_option(settings, "epochs", help="Epochs", default_text=default("epochs")),
        field_option(
            settings,
            "batches_per_epoch",
            help="Batches per epoch",
            default_text=default("batches_per_epoch"),
        ),
        field_option(settings, "batch_size", help="Windows per batch"),
        field_option(settings, "learning_rate", "--lr", help="Adam learning rate, cosine decay"),
        field_option(settings, "burn_in_ms", "--burn-in", help="Loss ignores the first N ms"),
        field_option(settings, "seed"),
        field_option(settings, "device"),
        field_option(settings, "loader_workers"),
        field_option(settings, "train_split", help="Split to train on"),
        field_option(settings, "valid_split", help="Split for per-epoch validation"),
        field_option(
            settings,
            "select_best",
            help="Validation metric that picks best.pt (released: soma_rmse; with little data, "
            "loss keeps the spike head from overfitting)",
            default_text=default("select_best"),
        ),
        field_option(
            settings,
            "spike_weight",
            help="The spike term's share w of the loss, "
            "w·BCE + (1 - w)·MSE; docs/how-much-data.md measures other values",
        ),
        field_option(settings, "weight_decay"),
        *(field_option(settings, name) for name in single_cell),
        field_option(settings, "patience"),
    ]


#: what `fit` and `sweep` train with
training_options = _training_options(TrainSettings)
#: how `fit` and `sweep` start from another model (`--init`)
warm_start_options = [
    field_option(
        TrainSettings,
        "init_synapses",
        help="A warm start from another cell: map each synapse's weight by row position, from "
        "the source synapse at the same place in the cell (subtree, distance from soma and "
        "nexus, diameter), or start them fresh",
    ),
    field_option(
        TrainSettings,
        "init_cell",
        help="The cell the --init model was trained on, when its file does not say (a released "
        "ELM: NeuronIO's Hay cell): a dataset or a morphology (.asc/.swc/.h5) of that cell",
    ),
]
TRAINING_FIELDS = tuple(TrainSettings.model_fields)


MORPHOLOGY_SUFFIXES = (".asc", ".swc", ".h5")


def _record_init_cell(options: dict[str, Any], out: Path) -> dict[str, Any]:
    """``--init-cell`` given as a morphology: its cell record (where each input sits) is
    written to OUT/init-cell.json, which the training settings then name (so the run folder
    holds what its warm start mapped from)."""
    given_cell = options.get("init_cell")
    if given_cell is None:
        return options
    if Path(given_cell).suffix.lower() not in MORPHOLOGY_SUFFIXES:
        options["init_cell"] = str(Path(given_cell).resolve())  # workers may run elsewhere
        return options
    from elmpipe.outputs import write_json_atomic
    from pipelines.commands.common import build_cell

    cell = build_cell(Path(given_cell), None)
    out.mkdir(parents=True, exist_ok=True)
    record_path = (out / "init-cell.json").resolve()
    write_json_atomic(record_path, cell.provenance())
    options["init_cell"] = str(record_path)
    return options


def _epoch_name(epoch: Any) -> str:
    return "0 (the warm start, before training)" if epoch == 0 else str(epoch)


@click.command(epilog=EPILOG)
@data_option
@out_option("Run folder.")
@with_options(family_options(surrogate_families(), "Model family"))
@with_options(training_options)
@with_options(warm_start_options)
@config_option("YAML with training settings and a `model:` section (options override it).")
@field_option(
    TrainSettings,
    "init",
    help="Start from this checkpoint instead of random weights, and fine-tune it (without model "
    "options, its architecture; the defaults of --epochs, --batches-per-epoch, --select-best "
    "change): ours, a released ELM state dict, "
    "'builtin' (the shipped surrogate of the built-in cell: of elmpipe's own, the start that "
    "fine-tuned best on new cells) or 'general' (the shipped cell-general model: a new cell's "
    "surrogate with no simulation of it, scored by `evaluate -k general`)",
)
@field_option(
    TrainSettings,
    "train_simulations",
    "--train-sims",
    help="Train on the first N complete simulations only",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option(
    "--export",
    "export_path",
    type=click.Path(path_type=Path),
    help="Also write the final model as TorchScript (a file name, checked before training).",
)
@quiet_option
def fit(data, out, family, config_path, resume, export_path, quiet, **options) -> None:
    """Train one surrogate (ELM by default) on a dataset.

    \b
    Defaults follow the released ELM NeuronIO training: Branch-ELM d_m 20 with 45 branches ×
    100 synapses, batch 8 of 500 ms windows after 500 ms, loss 0.5·BCE + 0.5·MSE, Adam 5e-4
    with cosine decay. A warm start (--init) fine-tunes instead: 6 epochs × 250 batches, best.pt
    by validation loss (what docs/how-much-data.md measured on new cells' small datasets).
    Writes metrics.jsonl/csv every epoch, last.pt (resumable), best.pt and, when finished,
    result.json.
    \b
    Examples:
      elmpipe fit -d data.zarr -o runs/elm20 --epochs 10 --batches-per-epoch 500
      elmpipe fit -d data.zarr -o runs/lstm50 --model lstm --hidden 50
      elmpipe fit -d data.zarr -o runs/elm20 --epochs 10 --batches-per-epoch 500 --resume
      elmpipe fit -d mycell.zarr -o runs/mycell --init builtin
      elmpipe fit -d mycell.zarr -o runs/mycell --init neuronio_best_model_state.pt \\
          --init-cell cell1.asc --init-synapses by-geometry   # a released NeuronIO ELM
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
    _record_init_cell(options, out)
    file_config = with_overrides(file_config, given(options, TRAINING_FIELDS))
    section = dict(file_config.model)
    if family is not None and family != section["family"]:
        if model_in_file:
            raise ConfigError(
                f"{config_path}: model.family: the file says {section['family']!r}, "
                f"--model says {family!r}"
            )
        section = {"family": family}
    family = section.pop("family")
    chosen = model_options_given(options, family)
    settings = file_config.settings()
    if settings.init and family == "elm" and not (chosen or model_in_file):
        from surrogate.warm_start import source_architecture

        section.update(source_architecture(settings.init))  # fine-tune the model it names
    num_input = dataset_inputs(data, settings.train_split)
    sources = [str(config_path)] if config_path else []
    if chosen or not sources:
        sources.append(OPTIONS)
    with checked(" and ".join(sources), "model"):
        model = surrogate_model(family, num_input, {**section, **chosen})
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
@click.option(
    "--models",
    default="elm",
    show_default=True,
    metavar="F[,F…]",
    help=f"Families, comma-separated ({', '.join(surrogate_families())}).",
)
@with_options(sweep_axis_options())
@with_options(training_options)
@with_options(warm_start_options)
@with_options(cluster_options)
@field_option(SweepConfig, "torch_threads")
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
@field_option(
    SweepConfig,
    "evaluate_split",
    help="Evaluate every point on this split with the NeuronIO protocol, e.g. test",
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
    **options,
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
    from pipelines.config import OPTIONS, checked
    from pipelines.sweep import plan_sweep, reference_metrics, run_sweep

    check_output_folder(out, "sweep folder")
    cluster_settings_ = cluster_settings(cluster, workers, address, cluster_config)
    starts = [init if init in SHIPPED else str(Path(init).resolve()) for init in inits]
    values: dict[str, Any] = {
        "models": comma_separated(models, str, "--models"),
        **sweep_axes_given(options),
        "train": given(_record_init_cell(options, out), TRAINING_FIELDS),
        "starts": (("scratch",) if scratch or not starts else ()) + tuple(starts),
        **given(
            {"torch_threads": torch_threads, "evaluate_split": evaluate_split},
            ("torch_threads", "evaluate_split"),
        ),
    }
    if (sizes := comma_separated(train_sims, int, "--train-sims")) is not None:
        values["train_simulations"] = sizes
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
        cluster_settings_,
        progress=not quiet,
        points=points,
        reference=reference,
    )
    _print_table(table, evaluate_split)
    click.echo(f"results: {out / 'results.csv'}")
    if (out / "learning_curve.png").exists():
        click.echo(f"learning curve: {out / 'learning_curve.png'}")


def _print_table(table: list[dict[str, Any]], evaluate_split: str | None) -> None:
    """Each point's headline metrics on the evaluated (else the validation) split."""
    from surrogate.metric_table import HEADLINE, find

    prefix = "valid" if evaluate_split is None else evaluate_split
    metrics = [find(key) for key in HEADLINE]
    heads = " ".join(f"{prefix + ' ' + m.label:>22}" for m in metrics)
    click.echo(f"{'name':<28} {'params':>9} {heads}")
    for row in table:
        cells = " ".join(f"{m.format(row.get(f'{prefix}_{m.key}'), '-'):>22}" for m in metrics)
        click.echo(f"{row['name']:<28} {row['parameters']:>9} {cells}")


@click.command(epilog=EPILOG)
@click.option(
    "--data",
    "-d",
    "stores",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A dataset of one cell; repeat it for every cell (the config's `stores` otherwise).",
)
@out_option("Run folder.")
@field_option(GeneralELMConfig, "num_memory", help="Memory units d_m")
@field_option(GeneralELMConfig, "num_branch", help="Branches d_tree")
@field_option(
    GeneralELMConfig, "num_synapse_per_branch", "--synapses-per-branch", help="Synapses per branch"
)
@field_option(
    GeneralELMConfig,
    "synapse_hidden",
    help="Hidden units of the function that gives each synapse its weight from its place",
)
@with_options(_training_options(GeneralTrainConfig))
@config_option("YAML with `stores`, a `model:` section and training settings (options win).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@quiet_option
def pretrain(stores, out, config_path, resume, quiet, **options) -> None:
    """Pretrain the cell-general Branch-ELM on datasets of several cells.

    \b
    One model for any morphology: each cell's routing and synapse weights come from where its
    segments sit (docs/surrogates.md), the rest is shared. Batches take every cell in turn;
    the epoch kept has the lowest validation loss averaged over the cells. Its best.pt then
    starts a fit of a new cell (`elmpipe fit --init OUT/best.pt`) or scores a cell zero-shot
    (`elmpipe evaluate -k OUT/best.pt -d CELL.zarr`).
    \b
    Examples:
      elmpipe pretrain -d cell2.zarr -d cell3.zarr -d builtin.zarr -o runs/general
      elmpipe pretrain -c configs/pretrain-general.yaml -o runs/general --epochs 40
    """
    from elmpipe.errors import ConfigError
    from elmpipe.outputs import check_output_folder
    from pipelines.config import OPTIONS, checked, read_yaml
    from surrogate.general_fit import pretrain as run_pretrain

    check_output_folder(out, "run folder")
    values: dict[str, Any] = read_yaml(config_path) if config_path else {}
    values.update(given(options, TRAINING_FIELDS))
    model = given(options, GeneralELMConfig.model_fields)
    values["model"] = {**(values.get("model") or {}), **model}
    if stores:
        values["stores"] = [str(Path(store).resolve()) for store in stores]
    elif "stores" not in values:
        raise ConfigError("give the cells' datasets: -d CELL.zarr (repeated) or `stores:`")
    sources = [str(config_path)] if config_path else []
    with checked(" and ".join([*sources, OPTIONS])):
        config = GeneralTrainConfig.model_validate(values)
    source = None if config_path is None else Path(config_path).as_posix()
    result = run_pretrain(config, out, resume=resume, progress=not quiet, source=source)
    best = result.best
    click.echo(
        f"{out}: {result.parameters} parameters, {result.epochs_run} epochs in "
        f"{result.seconds:.0f} s; best epoch {best.get('epoch')}: mean valid loss "
        f"{best.get('valid_loss')}"
    )
    for k, store in enumerate(config.stores):
        auc, rmse = best.get(f"valid_{k}_spike_auc"), best.get(f"valid_{k}_soma_rmse_mv")
        click.echo(f"  {store}: valid AUC {auc}, soma RMSE {rmse} mV")
