"""elmpipe evaluate: the NeuronIO evaluation of one checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.commands.common import EPILOG, data_option, field_option, given, out_option
from pipelines.config import OPTIONS, EvaluateStage, checked

# -- evaluate ---------------------------------------------------------------------------------


@click.command(epilog=EPILOG)
@click.option(
    "--checkpoint",
    "-k",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Our checkpoint (best.pt), a released ELM neuronio_best_model_state.pt, or a model "
    "that ships with elmpipe: 'builtin' (the built-in cell's surrogate) or 'general' (the "
    "cell-general model, zero-shot on the data's cell).",
)
@data_option
@field_option(EvaluateStage, "split", help="Split to evaluate")
@out_option("Folder for metrics.json and plots (default: beside the checkpoint).", False)
@click.option(
    "--published-config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="model_config.json of a released ELM (default: the one beside it).",
)
@field_option(
    EvaluateStage,
    "sims_per_file",
    help="Simulations z-scored together (NeuronIO files; imports use their files)",
)
@field_option(EvaluateStage, "device")
def evaluate(checkpoint, data, split, out, published_config, sims_per_file, device) -> None:
    """Evaluate a surrogate with the NeuronIO protocol; write metrics.json, roc.png, traces.png
    and spikes.csv.

    \b
    500 ms windows every 350 ms from a zero state (150 ms burn-in), soma prediction rescaled to
    the ground truth's mean and SD per file, simulations with 0–24 output spikes, first 500 ms
    dropped; spike AUC with its 95 % bootstrap interval over simulations, TP and partial AUC at
    0.25 % and 1 % false positives, soma RMSE, MAE and explained variance (plus the raw RMSE
    before rescaling); a caution when the AUC rests on fewer than 50 output spikes. spikes.csv
    lists every output spike evaluated with the fraction of non-spike bins scored above it (its
    share of 1 − AUC), the costliest first, and the highest nexus voltage around it: whether
    the surrogate misses a few whole events, or the spikes that dendritic calcium spikes drive,
    or is weak everywhere.

    \b
    Examples:
      elmpipe evaluate -k runs/elm/best.pt -d data.zarr
      elmpipe evaluate -k runs/elm/best.pt -d data.zarr --split valid -o runs/elm/eval-valid
      elmpipe evaluate -k neuronio_best_model_state.pt -d neuronio.zarr \\
          --published-config model_config.json
    """
    from elmpipe.dataset import Dataset
    from elmpipe.outputs import check_output_folder
    from pipelines.evaluation_output import write_evaluation
    from surrogate.checkpoints import load_any
    from surrogate.drive import input_rate_hz
    from surrogate.evaluate import EvaluationConfig
    from surrogate.evaluate import evaluate as run_evaluate
    from surrogate.metric_table import METRICS
    from surrogate.models.general_elm import GeneralELM
    from surrogate.train import pick_device
    from surrogate.warm_start import SHIPPED, for_the_cell, resolve_source

    with checked(OPTIONS):
        stage = EvaluateStage(
            **given(
                {"split": split, "sims_per_file": sims_per_file, "device": device},
                ("split", "sims_per_file", "device"),
            )
        )
    split = stage.split
    if str(checkpoint) in SHIPPED:  # a model that ships with elmpipe: evaluated into ./
        out = out or Path(f"eval-{checkpoint}-{split}")
        checkpoint = resolve_source(str(checkpoint))
    out = check_output_folder(out or checkpoint.parent / f"eval-{split}", "evaluation folder")
    device = pick_device(stage.device)
    model = load_any(checkpoint, published_config)
    if isinstance(model, GeneralELM):  # only a cell-general model needs the data's cell
        rate = input_rate_hz(data, split)  # the drive of the data it is to serve
        model = for_the_cell(model, Dataset(data).cell, checkpoint, rate)
    result = run_evaluate(
        model, data, split, EvaluationConfig(sims_per_file=stage.sims_per_file), device
    )
    write_evaluation(result, out, checkpoint)
    m = result.metrics
    click.echo(
        f"{split}: {m['simulations_kept']}/{m['simulations']} simulations, "
        f"{m['output_spikes']} output spikes in {m['time_points']} ms"
    )
    if "caution" in m:
        click.echo(f"caution: {m['caution']}")
    for metric in METRICS:
        value = m.get(metric.key)
        if metric.is_score and value is not None:
            click.echo(f"  {metric.key:<34} {value:.4f}")
        elif isinstance(value, list) and len(value) == 2:  # an interval
            click.echo(
                f"  {metric.key:<34} {value[0]:.4f}–{value[1]:.4f} (95 % bootstrap over the "
                f"{m['simulations_kept']} simulations)"
            )
    if result.spikes:
        click.echo("  " + worst_spikes_line(result.spikes))
        click.echo("  " + calcium_spikes_line(result.spikes))
    for key in ("note", "spike_note"):
        if key in m:
            click.echo(f"  note: {m[key]}")
    click.echo(f"written to {out}")


def worst_spikes_line(spikes: list[dict[str, float]], count: int = 5) -> str:
    """How much of 1 − AUC the ``count`` costliest spikes (``spikes`` comes costliest first)
    account for, and where they are."""
    worst = spikes[:count]
    where = ", ".join(f"sim {row['simulation']} at {row['time_ms']} ms" for row in worst)
    lost = sum(row["negatives_above"] for row in worst) / len(spikes)
    total = sum(row["negatives_above"] for row in spikes) / len(spikes)
    return (
        f"1 - AUC {total:.4f}, of which the costliest {len(worst)} of {len(spikes)} spikes "
        f"{lost:.4f} ({where}; spikes.csv)"
    )


def calcium_spikes_line(spikes: list[dict[str, float]]) -> str:
    """How much of 1 − AUC falls on the spikes a dendritic calcium spike drove."""
    from surrogate.evaluate import NEXUS_CALCIUM_MV, NEXUS_WINDOW_MS

    calcium = [row for row in spikes if row["nexus_max_mv"] > NEXUS_CALCIUM_MV]
    lost = sum(row["negatives_above"] for row in calcium) / len(spikes)
    return (
        f"with the nexus above {NEXUS_CALCIUM_MV:g} mV within {NEXUS_WINDOW_MS} ms (a dendritic "
        f"calcium spike): {len(calcium)} of {len(spikes)} spikes, {lost:.4f} of 1 - AUC"
    )
