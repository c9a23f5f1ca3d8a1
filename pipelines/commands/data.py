"""elmpipe simulate and elmpipe dataset: make, describe and convert datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from elmpipe.dataset.schema import SIMS_PER_FILE
from elmpipe.errors import InputError
from pipelines.commands.common import (
    EPILOG,
    FiniteRange,
    apical_trees,
    cell_model_overrides,
    cluster_options,
    cluster_settings,
    config_option,
    input_scale_option,
    morphology_option,
    out_option,
    parameters_option,
    quiet_option,
    with_options,
)

# -- simulate ---------------------------------------------------------------------------------


@click.command(epilog=EPILOG)
@out_option("Zarr dataset to create or complete (a folder, e.g. data.zarr).")
@click.option("--split", default="train", show_default=True, help="Split (group) to fill.")
@click.option("--n-sims", "-n", required=True, type=int, help="Simulations the split should hold.")
@config_option(
    "YAML with cell/protocol/simulation/cluster settings, or a run config (its data stage)."
)
@morphology_option
@parameters_option
@click.option("--seed", type=int, help="Dataset seed (simulation k depends on seed, split, k).")
@click.option(
    "--duration-ms",
    type=float,
    help="Simulated time per simulation, whole milliseconds (default 6000).",
)
@click.option(
    "--engine",
    type=click.Choice(["coreneuron", "neuron-cvode", "neuron-fixed"]),
    help="coreneuron (default: fast, reference-checked), neuron-cvode (NeuronIO's reference "
    "run) or neuron-fixed.",
)
@click.option(
    "--adaptive-step",
    is_flag=True,
    default=None,
    help="coreneuron: a 0.05 ms step while the soma is below -65 mV, the replay step "
    "(0.0125 ms) around spikes: replay-grade data for less than --dt-ms 0.0125 costs "
    "(docs/simulation-engines.md). simulation.adaptive in a config sets its parameters.",
)
@click.option(
    "--dt-ms",
    type=FiniteRange(min=0, min_open=True),
    help="Fixed step (ms). Default: a store's own; for a new store's generated inputs 0.025 "
    "(coreneuron: trains surrogates as well as 0.0125, for half the time); for replays of "
    "NeuronIO data and the adaptive step's fine windows 0.0125, the step that reproduces the "
    "reference runs; for replays of elmpipe data their source's.",
)
@click.option("--record-dendrites/--no-record-dendrites", default=None, help="Store dend_v.")
@click.option(
    "--replay",
    type=click.Path(path_type=Path),
    help="Replay the inputs of this dataset instead of generating new ones.",
)
@click.option("--replay-split", default=None, help="Split of --replay to take inputs from.")
@input_scale_option
@with_options(cluster_options)
@quiet_option
def simulate(
    out: Path,
    split: str,
    n_sims: int,
    config_path: Path | None,
    morphology: Path | None,
    parameters: str | None,
    seed: int | None,
    duration_ms: float | None,
    engine: str | None,
    adaptive_step: bool | None,
    dt_ms: float | None,
    record_dendrites: bool | None,
    replay: Path | None,
    replay_split: str | None,
    input_scale: float | str | None,
    cluster: str | None,
    workers: int | None,
    address: str | None,
    cluster_config: Path | None,
    quiet: bool,
) -> None:
    """Simulate the cell with NeuronIO inputs into a Zarr dataset, in parallel, resumably.

    \b
    Running the same command again completes only what is missing: finished simulations are
    never recomputed; an interrupted one, or one found damaged on disk (a missing or torn
    chunk file), is redone from scratch. Options override --config, which may also be a run
    config: its data stage is used, the settings `elmpipe run` simulates that run's store with.
    \b
    Before the first simulation of a new store, the protocol's input scale is calibrated to the
    cell (a few 6 s probe simulations per tried scale; cached, and known in advance for the
    built-in and the Hay cell) unless --input-scale gives it; a store keeps the scale it was
    made with. docs/own-cell.md explains the calibration.
    \b
    Examples:
      elmpipe simulate -o data.zarr --split train -n 64 --duration-ms 2000
      elmpipe simulate -o data.zarr --split test -n 16 -m my_cell.asc --workers 8
      elmpipe simulate -o data.zarr --split test -n 32 --dt-ms 0.0125
      elmpipe simulate -o data.zarr -n 64 -m my_cell.asc --input-scale 1.7
      elmpipe simulate -o replay.zarr --split test -n 4 --replay neuronio.zarr
      elmpipe simulate -c configs/hay-study.yaml -o runs/hay-study/data.zarr -n 2048
    """
    from pipelines.config import SimulateConfig, load_simulate_config, with_overrides
    from pipelines.simulation_stage import simulate as run_simulate

    if replay is not None and input_scale is not None:
        raise InputError("--input-scale applies to generated inputs, not to --replay")
    config = load_simulate_config(config_path) if config_path else SimulateConfig()
    overrides: dict[str, Any] = {
        "cell.morphology": str(morphology) if morphology else None,
        "cell.apical_trees": apical_trees(),
        **cell_model_overrides(),
        "cell.parameters": parameters,
        "seed": seed,
        "simulation.duration_ms": duration_ms,
        "simulation.engine": engine,
        "simulation.adaptive": {} if adaptive_step else None,
        "simulation.dt_ms": dt_ms,
        "simulation.record_dendrites": record_dendrites,
    }
    if input_scale is not None:
        if config.protocol.kind != "neuronio":
            raise InputError(f"{config_path}: --input-scale applies to generated (neuronio) inputs")
        overrides["protocol.kind"] = "neuronio"
        overrides["protocol.input_scale"] = input_scale
    if replay is not None:
        overrides["protocol"] = {"kind": "replay", "source": str(replay)}
        if replay_split:
            overrides["protocol"]["split"] = replay_split
    config = with_overrides(config, overrides)
    settings = cluster_settings(cluster, workers, address, cluster_config, base=config.cluster)
    config = config.model_copy(update={"cluster": settings})
    _report_simulated(run_simulate(config, out, split, n_sims, progress=not quiet, log=click.echo))


def _report_simulated(summary: Any) -> None:
    """One line on what ``simulate`` did, and the split's warnings (stderr)."""
    repaired = f"; {summary.repaired} found damaged and redone" if summary.repaired else ""
    click.echo(
        f"{summary.store} [{summary.split}]: {summary.n_sims} simulations "
        f"({summary.simulated} run now, {summary.already_done} already done{repaired}), "
        f"{summary.output_spikes} output spikes in those run, {summary.seconds:.1f} s"
    )
    from elmpipe.dataset.statistics import split_warnings

    for line in split_warnings(summary.store, summary.split):
        click.echo(f"warning: [{summary.split}] {line}", err=True)


# -- dataset ----------------------------------------------------------------------------------


@click.group(epilog=EPILOG)
def dataset() -> None:
    """Look at datasets, and convert from and to the original NeuronIO pickle files."""


@dataset.command("describe", epilog=EPILOG)
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--split", default=None, help="Only this split (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def dataset_describe(store: Path, split: str | None, as_json: bool) -> None:
    """Statistics per split: input and output rates, spikes per simulation, soma voltage.

    Computed with dask.array over the intact complete simulations; soma statistics skip the
    first 500 ms (as the NeuronIO evaluation does). Simulations marked complete whose chunks are
    missing, torn or fail their checksum are listed as damaged (rerun the command that made the
    dataset to recompute them). Warnings go to stderr (and to "warnings" with --json) when a
    split's output is far from the target (the store's calibration target, or the Hay cell's
    output): a rate off by more than 2x, many silent simulations, many outside 0–24 spikes.

    \b
    Examples:
      elmpipe dataset describe data.zarr
      elmpipe dataset describe data.zarr --split test --json
    """
    from elmpipe.dataset.statistics import describe

    report = describe(str(store), split)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    simulated = f", {report['simulated']}" if report["simulated"] else ""
    click.echo(
        f"{report['store']}  ({report['cell']['dendritic_segments']} dendritic segments, "
        f"protocol {report['protocol']}{simulated}, schema version {report['schema_version']})"
    )
    for note in report["notes"]:
        click.echo(f"note: {note}")
    for name, s in report["splits"].items():
        damaged = (
            f" ({len(s['damaged'])} of them damaged, described without them)"
            if s["damaged"]
            else ""
        )
        click.echo(
            f"[{name}] {s['complete']}/{s['simulations']} complete{damaged}, "
            f"{s['duration_ms']} ms each"
        )
        for sim, why in s["damaged"].items():
            click.echo(f"  DAMAGED simulation {sim}: {why}")
        if "output" not in s:
            continue
        rates, out, soma = s["input_rate_hz"], s["output"], s["soma_v_mv"]
        clipped = soma["clipped_at_-55"]
        click.echo(
            f"  input   {rates['excitatory']:.2f} Hz excitatory, {rates['inhibitory']:.2f} Hz "
            "inhibitory per synapse"
        )
        click.echo(
            f"  output  {out['rate_hz']:.2f} Hz; {out['spikes_per_sim_mean']:.1f} spikes/sim; "
            f"{100 * out['fraction_sims_0_to_24_spikes']:.0f}% of sims with 0–24 spikes"
        )
        hist = " ".join(f"{k}:{v}" for k, v in out["spikes_per_sim_histogram"].items() if v)
        click.echo(f"  spikes/sim histogram  {hist}")
        click.echo(
            f"  soma V  (after {soma['after_ms']} ms) {soma['mean']:.2f} ± {soma['sd']:.2f} mV; "
            f"5/50/95% {soma['p5']:.1f}/{soma['p50']:.1f}/{soma['p95']:.1f}; clipped at −55: "
            f"{clipped['mean']:.2f} ± {clipped['sd']:.2f}"
        )
    for line in report["warnings"]:
        click.echo(f"warning: {line}", err=True)


@dataset.command("import-neuronio", epilog=EPILOG)
@click.argument("folder", type=click.Path(path_type=Path))
@out_option("Zarr dataset to create or complete.")
@click.option("--split", default="test", show_default=True)
@click.option("--with-dendrites", is_flag=True, help="Also import the dendritic voltages.")
@with_options(cluster_options)
@quiet_option
def dataset_import(
    folder, out, split, with_dendrites, cluster, workers, address, cluster_config, quiet
) -> None:
    """Convert a folder of original NeuronIO pickle files into a split of our schema.

    Files are read with a restricted unpickler (numpy arrays only: a crafted file cannot run
    code), one file per task in parallel; rerunning completes an interrupted import and redoes
    damaged simulations.

    \b
    Examples:
      elmpipe dataset import-neuronio neuronio/test -o neuronio.zarr --split test
      elmpipe dataset import-neuronio neuronio/train -o neuronio.zarr --split train --workers 8
    """
    from pipelines.neuronio_files import import_neuronio

    n = import_neuronio(
        folder,
        out,
        split,
        with_dendrites=with_dendrites,
        cluster=cluster_settings(cluster, workers, address, cluster_config),
        progress=not quiet,
    )
    click.echo(f"{out} [{split}]: {n} simulations from {folder}")


@dataset.command("export-neuronio", epilog=EPILOG)
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True)
@out_option("Folder for the pickle files.")
@click.option("--sims-per-file", default=SIMS_PER_FILE, show_default=True, type=click.IntRange(1))
@with_options(cluster_options)
@quiet_option
def dataset_export(
    store, split, out, sims_per_file, cluster, workers, address, cluster_config, quiet
) -> None:
    """Write a split as NeuronIO pickle files, so code written for NeuronIO runs on it.

    \b
    Examples:
      elmpipe dataset export-neuronio data.zarr --split test -o pickles/
      elmpipe dataset export-neuronio data.zarr --split train -o pickles/ --sims-per-file 64
    """
    from pipelines.neuronio_files import export_neuronio

    export = export_neuronio(
        store,
        split,
        out,
        sims_per_file=sims_per_file,
        cluster=cluster_settings(cluster, workers, address, cluster_config),
        progress=not quiet,
    )
    click.echo(f"{len(export.names)} files in {out}")
    if export.exported_ms < export.simulated_ms:
        click.echo(
            f"note: the simulations last {export.simulated_ms} ms; NeuronIO files hold whole "
            f"seconds, so the files hold their first {export.exported_ms} ms"
        )


@dataset.command("compare", epilog=EPILOG)
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--split", default=None, help="Only this split (default: every split in both).")
@click.option(
    "--tolerance-ms",
    default=0.25,
    show_default=True,
    type=FiniteRange(min=0),
    help="A spike matches when the other dataset has one this close.",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def dataset_compare(reference, candidate, split, tolerance_ms, as_json) -> None:
    """Compare two datasets simulation by simulation: output spikes and soma voltage.

    \b
    For every simulation complete in both (same index, same inputs — e.g. a replay): output
    spikes matched in time order within --tolerance-ms (missing: in REFERENCE only; extra: in
    CANDIDATE only), the largest shift of a matched spike, and the soma RMSE, raw and clipped at
    −55 mV. This is how to check a cell against NeuronIO (docs/fidelity.md):
    \b
      elmpipe dataset import-neuronio Data_test -o neuronio.zarr --split test
      elmpipe simulate -o replay.zarr --split test -n 4 --replay neuronio.zarr -m cell1.asc
      elmpipe dataset compare neuronio.zarr replay.zarr --split test

    \b
    Examples:
      elmpipe dataset compare neuronio.zarr replay.zarr
      elmpipe dataset compare neuronio.zarr replay.zarr --split test --tolerance-ms 0.5 --json
    """
    from elmpipe.dataset.compare import compare

    report = compare(reference, candidate, split, tolerance_ms)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"reference {report['reference']}\ncandidate {report['candidate']}")
    for name, result in report["splits"].items():
        click.echo(f"[{name}]  sim  spikes ref/cand  matched  missing  extra  shift ms  RMSE mV")
        for row in result["simulations"]:
            shift = row["largest_shift_ms"]
            spikes = f"{row['reference_spikes']:>6}/{row['candidate_spikes']:<6}"
            click.echo(
                f"  {row['simulation']:>9}  {spikes}"
                f"  {row['matched']:>7}  {len(row['missing']):>7}  {len(row['extra']):>5}"
                f"  {'-' if shift is None else f'{shift:.3f}':>8}  {row['soma_rmse_mv']:.3f} "
                f"(clipped {row['soma_rmse_clipped_mv']:.4f})"
            )
        s = result["summary"]
        shift = "-" if s["largest_shift_ms"] is None else f"{s['largest_shift_ms']:.3f} ms"
        rmse = "-" if s["soma_rmse_mv"] is None else f"{s['soma_rmse_mv']:.3f}"
        clipped = "-" if s["soma_rmse_clipped_mv"] is None else f"{s['soma_rmse_clipped_mv']:.4f}"
        click.echo(
            f"[{name}] {s['simulations']} simulations ({s['compared_ms']} ms each): "
            f"{s['matched']} of {s['reference_spikes']} reference spikes matched within "
            f"{report['tolerance_ms']:g} ms (largest shift {shift}), {s['missing']} missing, "
            f"{s['extra']} extra; soma RMSE {rmse} mV raw, {clipped} mV clipped at −55 mV"
        )
        for key in ("reference_only", "candidate_only", "different_inputs"):
            if result[key]:
                click.echo(f"  not compared ({key.replace('_', ' ')}): {result[key]}")
    click.echo(f"cells: {report['cells']}")
    for note in report["notes"]:
        click.echo(f"note: {note}")
