"""The ``elmpipe`` command line.

Exit codes: 0 success; 1 unexpected failure (a bug: please report it); 2 bad input or usage (a
missing or broken file, an invalid option or config); 3 the environment cannot run the step (no
C++ compiler, NEURON cannot build or load the mechanisms).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3

EPILOG = (
    "Exit codes: 0 ok · 1 unexpected failure · 2 bad input or usage · "
    "3 environment problem (compiler, NEURON build)."
)


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT


class EnvironmentProblem(click.ClickException):
    exit_code = EXIT_ENVIRONMENT


def _translate(exc: Exception) -> click.ClickException:
    """Map the stages' own errors onto exit codes with a one-line message."""
    from simulations.biophysics import ParameterSetError
    from simulations.mechanisms import MechanismBuildError
    from simulations.morphology import MorphologyError

    if isinstance(exc, MechanismBuildError):
        return EnvironmentProblem(str(exc))
    if isinstance(exc, MorphologyError | ParameterSetError | FileNotFoundError | ValueError):
        return BadInput(str(exc))
    raise exc


def _build_cell(morphology: Path | None, parameters: str | None, nexus: str | None = None) -> Any:
    from simulations.cell import Cell

    try:
        return Cell(morphology, parameters, nexus=nexus)
    except Exception as exc:
        raise _translate(exc) from exc


morphology_option = click.option(
    "--morphology",
    "-m",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Reconstruction to use (Neurolucida .asc or .swc). Default: the built-in cell.",
)
parameters_option = click.option(
    "--parameters",
    "-p",
    default=None,
    metavar="NAME|FILE",
    help="Biophysical parameter set: a bundled name (hay-5b) or a YAML file. Default: hay-5b.",
)
nexus_option = click.option(
    "--nexus",
    default=None,
    metavar="SITE",
    help="Nexus recording site such as 'apic[50](0.9)'. Default: found on the main apical path.",
)


def _with(options):
    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


cluster_options = [
    click.option(
        "--cluster",
        type=click.Choice(["in-process", "local", "address", "slurm", "pbs"]),
        help="Where tasks run (default: local, one worker process per core).",
    ),
    click.option("--workers", type=int, help="Worker processes (local) or jobs (slurm/pbs)."),
    click.option("--address", help="Scheduler address for --cluster address."),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(package_name="elmpipe")
def cli() -> None:
    """elmpipe: turn a detailed neuron model into a small, fast, accurate learned surrogate.

    \b
    Stages:  simulate (NEURON → Zarr dataset) → fit (ELM, TCN, LSTM) → evaluate → report.
    Start with the cell:
      elmpipe cell info                      the built-in cell: geometry, rest, input resistance
      elmpipe cell info -m my_cell.asc       your reconstruction with the same biophysics
      elmpipe cell step --amplitude 0.8      inject current, print the spikes
      elmpipe cell check -m my_cell.asc      all sanity anchors (rest, Rin, firing, Ca, NMDA)
    """


# -- cell -------------------------------------------------------------------------------------


@cli.group(epilog=EPILOG)
def cell() -> None:
    """Build the L5PC model from a morphology and look at it."""


@cell.command("info", epilog=EPILOG)
@morphology_option
@parameters_option
@nexus_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--no-sim", is_flag=True, help="Geometry only: skip the rest/Rin simulations.")
def cell_info(
    morphology: Path | None, parameters: str | None, nexus: str | None, as_json: bool, no_sim: bool
) -> None:
    """Segment counts, lengths, longest apical path, nexus, resting potential, input resistance.

    Resting potential is read 1.5 s after initialising at -76 mV without input; input resistance
    from the steady response to a -50 pA somatic step (CVode, 6.3 °C, as in the data stage).
    """
    from simulations import electrophysiology as ephys

    the_cell = _build_cell(morphology, parameters, nexus)
    info = the_cell.describe()
    if not no_sim:
        soma_v, nexus_v = ephys.resting_potential(the_cell)
        info["resting_potential_mv"] = {"soma": soma_v, "nexus": nexus_v}
        info["input_resistance_mohm"] = ephys.input_resistance(the_cell)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(_format_info(info))


def _format_info(info: dict[str, Any]) -> str:
    seg, sec, length = info["segments"], info["sections"], info["length_um"]
    nexus = info["nexus"]
    lines = [
        f"morphology        {info['morphology']}",
        f"parameter set     {info['parameters']}",
        f"sections          soma {sec['soma']} · basal {sec['basal']} · apical {sec['apical']} "
        f"· axon {sec['axon']}",
        f"dendritic segs    {seg['dendritic']} (basal {seg['basal']}, apical {seg['apical']}); "
        f"{seg['total']} in all → {2 * seg['dendritic']} input channels",
        f"dendrite length   basal {length['basal']:.1f} µm · apical {length['apical']:.1f} µm",
        f"segment length    {info['segment_length_um']['min']:.1f}–"
        f"{info['segment_length_um']['max']:.1f} µm (mean {info['segment_length_um']['mean']:.1f})",
        f"longest apical    {info['l_max_um']:.1f} µm",
        f"nexus             {nexus['section']}({nexus['x']:.3g}), {nexus['distance_um']:.1f} µm "
        f"from soma(0), diam {nexus['diam_um']:.2f} µm",
    ]
    if "resting_potential_mv" in info:
        rest = info["resting_potential_mv"]
        lines += [
            f"resting V         soma {rest['soma']:.2f} mV · nexus {rest['nexus']:.2f} mV",
            f"input resistance  {info['input_resistance_mohm']:.1f} MΩ",
        ]
    return "\n".join(lines)


@cell.command("step", epilog=EPILOG)
@morphology_option
@parameters_option
@click.option("--amplitude", "-a", default=0.8, show_default=True, help="Current (nA).")
@click.option("--duration", default=1000.0, show_default=True, help="Step duration (ms).")
@click.option("--delay", default=500.0, show_default=True, help="Step onset (ms).")
@click.option("--celsius", default=6.3, show_default=True, help="Temperature (°C).")
def cell_step(
    morphology: Path | None,
    parameters: str | None,
    amplitude: float,
    duration: float,
    delay: float,
    celsius: float,
) -> None:
    """Inject a somatic current step and print the action potentials it evokes."""
    from simulations import electrophysiology as ephys

    if duration <= 0 or delay < 0:
        raise BadInput("--duration must be positive and --delay non-negative")
    the_cell = _build_cell(morphology, parameters)
    rec = ephys.current_step(the_cell, amplitude, delay=delay, duration=duration, celsius=celsius)
    spikes = ephys.spikes_during_step(rec)
    click.echo(
        f"{amplitude:g} nA for {duration:g} ms at the soma of {the_cell.morphology_path.name}: "
        f"{len(spikes)} spikes ({len(spikes) / duration * 1000:.1f} Hz)"
    )
    if len(spikes):
        click.echo("spike times (ms): " + " ".join(f"{t:.2f}" for t in spikes))


@cell.command("check", epilog=EPILOG)
@morphology_option
@parameters_option
@nexus_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def cell_check(
    morphology: Path | None, parameters: str | None, nexus: str | None, as_json: bool
) -> None:
    """Measure the sanity anchors a modeller checks before trusting a cell.

    Rest and input resistance; spikes for 1 s somatic steps of 0.2–1.0 nA; the Ca spike evoked by
    1 nA for 10 ms at the nexus, with and without Ca channels; the NMDA-dependent depolarisation
    per event at a distal basal site for 1 and 40 coactive events (Mg-block relief).
    """
    from simulations import electrophysiology as ephys

    the_cell = _build_cell(morphology, parameters, nexus)
    soma_v, nexus_v = ephys.resting_potential(the_cell)
    result: dict[str, Any] = {
        "morphology": str(the_cell.morphology_path),
        "resting_potential_mv": {"soma": soma_v, "nexus": nexus_v},
        "input_resistance_mohm": ephys.input_resistance(the_cell),
        "step_spikes": {},
    }
    with click.progressbar(
        (0.2, 0.4, 0.6, 0.8, 1.0), label="current steps", file=sys.stderr
    ) as bar:
        for amplitude in bar:
            rec = ephys.current_step(the_cell, amplitude)
            result["step_spikes"][f"{amplitude:.1f}"] = len(ephys.spikes_during_step(rec))
    with_ca = ephys.calcium_response(the_cell)
    without_ca = ephys.calcium_response(the_cell, block_calcium=True)
    result["calcium_spike"] = {"intact": with_ca.__dict__, "ca_blocked": without_ca.__dict__}
    site = ephys.distal_basal_location(the_cell)
    nmda = {}
    for n in (1, 40):
        response = ephys.nmda_nonlinearity(the_cell, site, n)
        nmda[str(n)] = {**response.__dict__, "nmda_per_event": response.nmda_per_event}
    site_name = f"{the_cell.short_name(site.sec)}({site.x:.3g})"
    result["nmda"] = {"site": site_name, "events": nmda}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    rest = result["resting_potential_mv"]
    click.echo(f"resting V          soma {rest['soma']:.2f} mV · nexus {rest['nexus']:.2f} mV")
    click.echo(f"input resistance   {result['input_resistance_mohm']:.1f} MΩ")
    click.echo(
        "1 s steps          "
        + " · ".join(f"{a} nA → {n}" for a, n in result["step_spikes"].items())
        + " spikes"
    )
    click.echo(
        f"Ca spike at nexus  plateau {with_ca.plateau_ms:.1f} ms, peak {with_ca.peak_mv:.1f} mV "
        f"(Ca blocked: {without_ca.plateau_ms:.1f} ms, {without_ca.peak_mv:.1f} mV)"
    )
    click.echo(
        f"NMDA at {site_name}  NMDA part per event {nmda['1']['nmda_per_event']:.1f} mV·ms "
        f"(1 event) → {nmda['40']['nmda_per_event']:.1f} mV·ms (40 events)"
    )


# -- simulate ---------------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Zarr dataset to create or complete (a folder, e.g. data.zarr).",
)
@click.option("--split", default="train", show_default=True, help="Split (group) to fill.")
@click.option("--n-sims", "-n", required=True, type=int, help="Simulations the split should hold.")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML with cell/protocol/simulation/cluster settings (see configs/).",
)
@morphology_option
@parameters_option
@click.option("--seed", type=int, help="Dataset seed (simulation k depends on seed, split, k).")
@click.option("--duration-ms", type=float, help="Simulated time per simulation (default 6000).")
@click.option(
    "--integrator", type=click.Choice(["cvode", "fixed"]), help="CVode (default) or fixed step."
)
@click.option("--record-dendrites/--no-record-dendrites", default=None, help="Store dend_v.")
@click.option(
    "--replay",
    type=click.Path(path_type=Path),
    help="Replay the inputs of this dataset instead of generating new ones.",
)
@click.option("--replay-split", default=None, help="Split of --replay to take inputs from.")
@_with(cluster_options)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def simulate(
    out: Path,
    split: str,
    n_sims: int,
    config_path: Path | None,
    morphology: Path | None,
    parameters: str | None,
    seed: int | None,
    duration_ms: float | None,
    integrator: str | None,
    record_dendrites: bool | None,
    replay: Path | None,
    replay_split: str | None,
    cluster: str | None,
    workers: int | None,
    address: str | None,
    quiet: bool,
) -> None:
    """Simulate the cell with NeuronIO inputs into a Zarr dataset, in parallel, resumably.

    \b
    Running the same command again completes only what is missing: finished simulations are
    never recomputed, an interrupted one is redone from scratch. Options override --config.
    \b
    Examples:
      elmpipe simulate -o data.zarr --split train -n 64 --duration-ms 2000
      elmpipe simulate -o data.zarr --split test -n 16 -m my_cell.asc --workers 8
      elmpipe simulate -o replay.zarr --split test -n 4 --replay neuronio.zarr
    """
    from pipelines.config import ConfigError, SimulateConfig, load_config, with_overrides
    from pipelines.simulate import simulate as run_simulate
    from simulations.store import DatasetError

    try:
        config = load_config(config_path, SimulateConfig) if config_path else SimulateConfig()
        overrides = {
            "cell.morphology": str(morphology) if morphology else None,
            "cell.parameters": parameters,
            "seed": seed,
            "simulation.duration_ms": duration_ms,
            "simulation.integrator": integrator,
            "simulation.record_dendrites": record_dendrites,
            "cluster.kind": cluster,
            "cluster.workers": workers,
            "cluster.address": address,
        }
        if replay is not None:
            overrides["protocol"] = {"kind": "replay", "source": str(replay)}
            if replay_split:
                overrides["protocol"]["split"] = replay_split
        config = with_overrides(config, overrides)
        summary = run_simulate(config, out, split, n_sims, progress=not quiet)
    except (ConfigError, DatasetError) as exc:
        raise BadInput(str(exc)) from exc
    except Exception as exc:
        raise _translate(exc) from exc
    click.echo(
        f"{summary.store} [{summary.split}]: {summary.n_sims} simulations "
        f"({summary.simulated} run now, {summary.already_done} already done), "
        f"{summary.output_spikes} output spikes in those run, {summary.seconds:.1f} s"
    )


# -- dataset ----------------------------------------------------------------------------------


@cli.group(epilog=EPILOG)
def dataset() -> None:
    """Look at datasets, and convert from and to the original NeuronIO pickle files."""


def _cluster_from(kind: str | None, workers: int | None):
    from pipelines.cluster import ClusterConfig

    return ClusterConfig(kind=kind or "local", workers=workers)


cluster_option = click.option(
    "--cluster",
    type=click.Choice(["in-process", "local"]),
    default=None,
    help="Where to run (default: local, one worker process per core).",
)
workers_option = click.option("--workers", type=int, help="Worker processes.")


@dataset.command("describe", epilog=EPILOG)
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--split", default=None, help="Only this split (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def dataset_describe(store: Path, split: str | None, as_json: bool) -> None:
    """Statistics per split: input and output rates, spikes per simulation, soma voltage.

    Computed with dask.array over the complete simulations; soma statistics skip the first 500 ms
    (as the NeuronIO evaluation does).
    """
    from simulations.describe import describe
    from simulations.store import DatasetError

    try:
        report = describe(str(store), split)
    except DatasetError as exc:
        raise BadInput(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"{report['store']}  ({report['cell']['dendritic_segments']} dendritic segments, "
        f"protocol {report['protocol']})"
    )
    for name, s in report["splits"].items():
        click.echo(
            f"[{name}] {s['complete']}/{s['simulations']} complete, {s['duration_ms']} ms each"
        )
        if "output" not in s:
            continue
        rates, out, soma = s["input_rate_hz"], s["output"], s["soma_v_mv"]
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
            f"{soma['clipped_at_-55']['mean']:.2f} ± {soma['clipped_at_-55']['sd']:.2f}"
        )


@dataset.command("import-neuronio", epilog=EPILOG)
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Zarr dataset.")
@click.option("--split", default="test", show_default=True)
@click.option("--with-dendrites", is_flag=True, help="Also import the dendritic voltages.")
@cluster_option
@workers_option
@click.option("--quiet", "-q", is_flag=True)
def dataset_import(folder, out, split, with_dendrites, cluster, workers, quiet) -> None:
    """Convert a folder of original NeuronIO pickle files into a split of our schema.

    Files are read with a restricted unpickler (numpy arrays only: a crafted file cannot run
    code), one file per task in parallel; rerunning completes an interrupted import.
    """
    from pipelines.dataset import import_neuronio
    from simulations.neuronio import NeuronIOFormatError
    from simulations.store import DatasetError

    try:
        n = import_neuronio(
            folder,
            out,
            split,
            with_dendrites=with_dendrites,
            cluster=_cluster_from(cluster, workers),
            progress=not quiet,
        )
    except (DatasetError, NeuronIOFormatError) as exc:
        raise BadInput(str(exc)) from exc
    click.echo(f"{out} [{split}]: {n} simulations from {folder}")


@dataset.command("export-neuronio", epilog=EPILOG)
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Folder.")
@click.option("--sims-per-file", default=128, show_default=True)
@cluster_option
@workers_option
@click.option("--quiet", "-q", is_flag=True)
def dataset_export(store, split, out, sims_per_file, cluster, workers, quiet) -> None:
    """Write a split as NeuronIO pickle files, so code written for NeuronIO runs on it."""
    from pipelines.dataset import export_neuronio
    from simulations.store import DatasetError

    try:
        names = export_neuronio(
            store,
            split,
            out,
            sims_per_file=sims_per_file,
            cluster=_cluster_from(cluster, workers),
            progress=not quiet,
        )
    except DatasetError as exc:
        raise BadInput(str(exc)) from exc
    click.echo(f"{len(names)} files in {out}")


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
    }
    return {names[k]: v for k, v in options.items() if v is not None}


training_options = [
    click.option("--epochs", type=int, help="Epochs (released ELMs: 35)."),
    click.option("--batches-per-epoch", type=int, help="Batches per epoch (released: 10000)."),
    click.option("--batch-size", type=int, help="Windows per batch (default 8)."),
    click.option("--lr", type=float, help="Adam learning rate (default 5e-4, cosine decay)."),
    click.option("--burn-in", type=int, help="Loss ignores the first N ms of each window (0)."),
    click.option("--seed", type=int, help="Seed of initialisation and batches (0)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Default: auto."),
    click.option("--loader-workers", type=int, help="Background batch loaders (default 2)."),
    click.option("--train-split", help="Split to train on (default train)."),
    click.option("--valid-split", help="Split for per-epoch validation (default valid)."),
]


@cli.command(epilog=EPILOG)
@click.option("--data", "-d", required=True, type=click.Path(path_type=Path), help="Zarr dataset.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option(
    "--model", "family", type=click.Choice(["elm", "lstm", "tcn"]), default="elm", show_default=True
)
@click.option("--num-memory", type=int, help="ELM memory units d_m (default 20).")
@click.option("--num-branch", type=int, help="Branch-ELM branches (default 45).")
@click.option("--synapses-per-branch", type=int, help="Synapses per branch (default 100).")
@click.option("--version", "elm_version", type=click.Choice(["v1", "v2"]), help="ELM update rule.")
@click.option("--activation", type=click.Choice(["relu", "silu"]), help="ELM MLP activation.")
@click.option("--hidden", type=int, help="LSTM hidden units (default 50).")
@click.option("--tcn", "tcn_shape", help="TCN DEPTHxWIDTHxFIELD (default 7x128x153).")
@_with(training_options)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML with training settings and a `model:` section.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option(
    "--export",
    "export_path",
    type=click.Path(path_type=Path),
    help="Also write the final model as TorchScript.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
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
    with cosine decay. Writes metrics.jsonl/csv every epoch, last.pt (resumable) and best.pt.
    \b
    Examples:
      elmpipe fit -d data.zarr -o runs/elm20 --epochs 10 --batches-per-epoch 500
      elmpipe fit -d data.zarr -o runs/lstm50 --model lstm --hidden 50
      elmpipe fit -d data.zarr -o runs/elm20 --epochs 10 --batches-per-epoch 500 --resume
    """
    import yaml

    from pipelines.config import ConfigError
    from pipelines.fit import FitError, dataset_inputs, model_from_options
    from surrogate.export import export_torchscript
    from surrogate.train import TrainingError, load_train_config
    from surrogate.train import fit as run_fit

    try:
        base: dict[str, Any] = {}
        if config_path:
            if not config_path.exists():
                raise ConfigError(f"config file not found: {config_path}")
            base = yaml.safe_load(config_path.read_text()) or {}
        overrides = _train_overrides(**training)
        split = overrides.get("train_split", base.get("train_split", "train"))
        num_input = dataset_inputs(data, split)
        options = {
            "num_memory": num_memory,
            "num_branch": num_branch,
            "num_synapse_per_branch": synapses_per_branch,
            "version": elm_version,
            "activation": activation,
            "hidden": hidden,
            "tcn": tcn_shape,
        }
        model_section = dict(base.pop("model", {}))
        family = model_section.pop("family", family)
        model = model_from_options(family, num_input, {**model_section, **options})
        config = load_train_config({**base, **overrides, "model": model.model_dump()})
        result = run_fit(config, data, out, resume=resume, progress=not quiet)
    except (ConfigError, FitError, TrainingError, ValueError) as exc:
        raise BadInput(str(exc)) from exc
    best = result.best
    click.echo(
        f"{out}: {result.parameters} parameters, {result.epochs_run} epochs in "
        f"{result.seconds:.0f} s; best epoch {best.get('epoch')}: valid AUC "
        f"{best.get('valid_spike_auc')}, soma RMSE {best.get('valid_soma_rmse_mv')} mV"
    )
    if export_path:
        from surrogate.checkpoints import load_model

        export_torchscript(load_model(out / "best.pt"), export_path)
        click.echo(f"TorchScript: {export_path}")


def _ints(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise BadInput(f"expected comma-separated integers, got {text!r}") from None


@cli.command(epilog=EPILOG)
@click.option("--data", "-d", required=True, type=click.Path(path_type=Path), help="Zarr dataset.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Sweep folder.")
@click.option("--models", default="elm", show_default=True, help="Families: elm,lstm,tcn.")
@click.option("--num-memory", help="ELM memory units, e.g. 1,2,5,10,20,50.")
@click.option("--num-branch", help="ELM branches, e.g. 15,45.")
@click.option("--lstm-hidden", help="LSTM hidden sizes, e.g. 25,50,100.")
@click.option("--tcn", "tcn_shapes", help="TCN shapes, e.g. 7x128x153,1x128x43.")
@_with(training_options)
@_with(cluster_options)
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
@click.option("--quiet", "-q", is_flag=True)
def sweep(
    data,
    out,
    models,
    num_memory,
    num_branch,
    lstm_hidden,
    tcn_shapes,
    cluster,
    workers,
    address,
    cluster_config,
    torch_threads,
    quiet,
    **training,
) -> None:
    """Train a grid of surrogates, one task per grid point, and tabulate them.

    \b
    Grid points already finished are skipped when the sweep is run again; interrupted ones
    resume. Writes OUT/<point>/ run folders and OUT/results.csv|json.
    \b
    Example:
      elmpipe sweep -d data.zarr -o runs/sweep --num-memory 1,2,5,10,20,50 --num-branch 15,45 \\
          --models elm,lstm --lstm-hidden 25,50 --epochs 5 --batches-per-epoch 500
    """
    from pipelines.cluster import ClusterConfig
    from pipelines.config import ConfigError, load_config
    from pipelines.fit import FitError, SweepConfig, run_sweep

    try:
        base_cluster = ClusterConfig()
        if cluster_config:
            from pipelines.config import SimulateConfig

            base_cluster = load_config(cluster_config, SimulateConfig).cluster
        updates = {"kind": cluster, "workers": workers, "address": address}
        cluster_settings = ClusterConfig.model_validate(
            {**base_cluster.model_dump(), **{k: v for k, v in updates.items() if v is not None}}
        )
        values: dict[str, Any] = {
            "models": tuple(m.strip() for m in models.split(",")),
            "train": _train_overrides(**training),
            "torch_threads": torch_threads,
        }
        for key, text in (
            ("num_memory", num_memory),
            ("num_branch", num_branch),
            ("lstm_hidden", lstm_hidden),
        ):
            if (parsed := _ints(text)) is not None:
                values[key] = parsed
        if tcn_shapes:
            values["tcn"] = tuple(tcn_shapes.split(","))
        table = run_sweep(SweepConfig(**values), data, out, cluster_settings, progress=not quiet)
    except (ConfigError, FitError, ValueError) as exc:
        raise BadInput(str(exc)) from exc
    click.echo(f"{'name':<18} {'params':>9} {'valid AUC':>10} {'RMSE mV':>8}")
    for row in table:
        auc = "-" if row["valid_spike_auc"] is None else f"{row['valid_spike_auc']:.4f}"
        rmse = "-" if row["valid_soma_rmse_mv"] is None else f"{row['valid_soma_rmse_mv']:.3f}"
        click.echo(f"{row['name']:<18} {row['parameters']:>9} {auc:>10} {rmse:>8}")
    click.echo(f"results: {out / 'results.csv'}")


# -- evaluate ---------------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.option(
    "--checkpoint",
    "-k",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Our checkpoint (best.pt) or a released ELM neuronio_best_model_state.pt.",
)
@click.option("--data", "-d", required=True, type=click.Path(path_type=Path), help="Zarr dataset.")
@click.option("--split", default="test", show_default=True)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    help="Folder for metrics.json and plots (default: beside the checkpoint).",
)
@click.option(
    "--published-config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="model_config.json of a released ELM (default: the one beside it).",
)
@click.option(
    "--sims-per-file",
    default=128,
    show_default=True,
    help="Simulations z-scored together (NeuronIO files; imports use their files).",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
def evaluate(checkpoint, data, split, out, published_config, sims_per_file, device) -> None:
    """Evaluate a surrogate with the NeuronIO protocol; write metrics.json, roc.png, traces.png.

    \b
    500 ms windows every 350 ms from a zero state (150 ms burn-in), soma prediction rescaled to
    the ground truth's mean and SD per file, simulations with 0–24 output spikes, first 500 ms
    dropped; spike AUC, TP and partial AUC at 0.25 % and 1 % false positives, soma RMSE, MAE and
    explained variance (plus the raw RMSE before rescaling).
    """
    from pipelines.evaluation import write_evaluation
    from surrogate.checkpoints import CheckpointError
    from surrogate.data import DataError
    from surrogate.evaluate import EvaluationConfig, load_any
    from surrogate.evaluate import evaluate as run_evaluate
    from surrogate.train import pick_device

    out = out or checkpoint.parent / f"eval-{split}"
    try:
        model = load_any(checkpoint, published_config)
        result = run_evaluate(
            model, data, split, EvaluationConfig(sims_per_file=sims_per_file), pick_device(device)
        )
    except (CheckpointError, DataError) as exc:
        raise BadInput(str(exc)) from exc
    write_evaluation(result, out, checkpoint)
    m = result.metrics
    click.echo(
        f"{split}: {m['simulations_kept']}/{m['simulations']} simulations, "
        f"{m['output_spikes']} output spikes in {m['time_points']} ms"
    )
    for key in (
        "spike_auc",
        "tp_at_0.0025_fp",
        "auc_at_0.0025_fp",
        "tp_at_0.01_fp",
        "auc_at_0.01_fp",
        "soma_rmse_mv",
        "soma_mae_mv",
        "soma_explained_variance_pct",
        "soma_rmse_raw_mv (not rescaled)",
    ):
        if key in m:
            click.echo(f"  {key:<34} {m[key]:.4f}")
    for key in ("note", "spike_note"):
        if key in m:
            click.echo(f"  note: {m[key]}")
    click.echo(f"written to {out}")


# -- run ------------------------------------------------------------------------------------


@cli.command(epilog=EPILOG)
@click.argument(
    "config_path", metavar="CONFIG.yaml", type=click.Path(path_type=Path, dir_okay=False)
)
@morphology_option
@click.option("--out", "-o", help="Run folder (overrides the config's `out`).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(config_path: Path, morphology: Path | None, out: str | None, quiet: bool) -> None:
    """Run the whole pipeline: simulate → describe → fit (or sweep) → evaluate → report.

    \b
    Every stage is skipped when its output is complete and resumed when it was interrupted, so
    running the same command again finishes an interrupted run. --morphology swaps in your own
    reconstruction (use a new --out: a dataset holds one cell).
    \b
    Examples:
      elmpipe run configs/demo.yaml                 built-in cell, ≈15 min on 2 cores
      elmpipe run configs/demo.yaml -m my_cell.asc -o runs/my_cell
      elmpipe run configs/neuronio.yaml             the Hay cell at NeuronIO scale
    """
    from pipelines.config import ConfigError, load_config, with_overrides
    from pipelines.run import RunConfig, run_pipeline
    from simulations.store import DatasetError
    from surrogate.data import DataError
    from surrogate.train import TrainingError

    try:
        config = load_config(config_path, RunConfig)
        overrides = {"cell.morphology": str(morphology) if morphology else None, "out": out}
        config = with_overrides(config, overrides)
        summary = run_pipeline(config, progress=not quiet, log=click.echo)
    except (ConfigError, DatasetError, DataError, TrainingError) as exc:
        raise BadInput(str(exc)) from exc
    except Exception as exc:
        raise _translate(exc) from exc
    click.echo(f"report: {summary['report']}")


# -- secondary benchmarks -----------------------------------------------------------------------


@cli.group(epilog=EPILOG)
def task() -> None:
    """Secondary benchmarks: Long Range Arena and SHD / SHD-Adding (from your data files)."""


@task.command("train", epilog=EPILOG)
@click.argument(
    "task_name",
    metavar="TASK",
    type=click.Choice(
        ["shd", "shd-adding", "listops", "text", "retrieval", "image", "pathfinder", "pathx"]
    ),
)
@click.option(
    "--data",
    "-d",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder with the task's standard files.",
)
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Run folder (runs/TASK).")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Task config (default: configs/tasks/TASK.yaml when it exists).",
)
@click.option("--model", "family", type=click.Choice(["elm", "lstm"]), help="Override family.")
@click.option("--num-memory", type=int, help="ELM memory units.")
@click.option("--hidden", type=int, help="LSTM hidden units.")
@click.option("--bin-ms", type=float, help="SHD bin size (ms).")
@click.option("--epochs", type=int)
@click.option("--batches-per-epoch", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--eval-batches", type=int, help="Cap on validation/test batches.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--resume", is_flag=True, help="Continue the run in --out.")
@click.option("--quiet", "-q", is_flag=True)
def task_train(
    task_name,
    data,
    out,
    config_path,
    family,
    num_memory,
    hidden,
    bin_ms,
    epochs,
    batches_per_epoch,
    batch_size,
    lr,
    eval_batches,
    device,
    resume,
    quiet,
) -> None:
    """Train an ELM (or LSTM) classifier on a task; print test accuracy against chance.

    \b
    Examples:
      elmpipe task generate shd --out data/shd-synthetic
      elmpipe task train shd-adding -d data/shd-synthetic -c configs/tasks/shd-adding.yaml \\
          --bin-ms 2 --epochs 3 --batches-per-epoch 300
      elmpipe task train listops -d data/listops -c configs/tasks/listops.yaml
    """
    import yaml

    from surrogate.tasks.shd import TaskDataError
    from surrogate.tasks.train import TaskTrainConfig, fit_task

    default = Path("configs") / "tasks" / f"{task_name}.yaml"
    path = config_path or (default if default.exists() else None)
    try:
        base = yaml.safe_load(path.read_text()) if path else {"model": {"family": "elm"}}
        base["task"] = task_name
        model = dict(base.get("model", {}))
        if family and family != model.get("family", "elm"):
            model = {"family": family}
        for key, value in (("num_memory", num_memory), ("hidden", hidden)):
            if value is not None:
                model[key] = value
        base["model"] = model
        for key, value in (
            ("bin_ms", bin_ms),
            ("epochs", epochs),
            ("batches_per_epoch", batches_per_epoch),
            ("batch_size", batch_size),
            ("learning_rate", lr),
            ("eval_batches", eval_batches),
            ("device", device),
        ):
            if value is not None:
                base[key] = value
        config = TaskTrainConfig.model_validate(base)
        result = fit_task(
            config, data, out or Path("runs") / task_name, resume=resume, progress=not quiet
        )
    except (TaskDataError, ValueError) as exc:
        raise BadInput(str(exc)) from exc
    click.echo(
        f"{task_name}: {result['family']} with {result['parameters']:,} parameters, "
        f"{result['epochs']} epochs in {result['seconds']:.0f} s — test accuracy "
        f"{result['test_accuracy']:.4f} (valid {result['valid_accuracy']:.4f}; chance "
        f"{result['chance_uniform']:.4f}, majority class {result['majority_class']:.4f})"
    )


@task.command("generate", epilog=EPILOG)
@click.argument("kind", type=click.Choice(["listops", "pathfinder", "shd"]))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Folder.")
@click.option(
    "--n",
    "count",
    type=int,
    help="Samples (listops: train; pathfinder: images; shd: train digits).",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--difficulty",
    type=click.Choice(["curv_baseline", "curv_contour_length_9", "curv_contour_length_14"]),
    default="curv_contour_length_14",
    show_default=True,
    help="Pathfinder contour length.",
)
@click.option(
    "--size",
    type=click.Choice(["32", "128"]),
    default="32",
    show_default=True,
    help="Pathfinder image size (128 = Path-X).",
)
@click.option("--max-length", type=int, help="ListOps: longest expression (LRA: 2000).")
@click.option("--min-length", type=int, help="ListOps: shortest expression (LRA: 500).")
def task_generate(kind, out, count, seed, difficulty, size, max_length, min_length) -> None:
    """Write task files in the standard formats, offline and seeded.

    \b
    listops     basic_{train,val,test}.tsv from LRA's generation rules (train : val : test = 48:1:1)
    pathfinder  curved dashed contours with two markers and distractors, in the LRA layout
    shd         synthetic spiking "digits" in the SHD HDF5 layout (class-specific bursts)
    """
    if kind == "listops":
        from surrogate.tasks.listops import write_dataset

        n = count or 96_000
        options = {}
        if max_length:
            options["max_length"] = max_length
        if min_length is not None:
            options["min_length"] = min_length
        held_out = max(1, n // 48)
        folder = write_dataset(
            out, {"train": n, "valid": held_out, "test": held_out}, seed, **options
        )
    elif kind == "pathfinder":
        from surrogate.tasks.pathfinder import PathfinderStyle, write_dataset

        style = PathfinderStyle() if size == "32" else PathfinderStyle.path_x()
        folder = write_dataset(out, count or 10_000, seed, difficulty, style)
    else:
        from surrogate.tasks.shd import write_synthetic_shd

        n = count or 2000
        folder = write_synthetic_shd(out, n_train=n, n_test=max(1, n // 4), seed=seed)
    click.echo(f"{kind} written to {folder}")


# -- mechanisms -------------------------------------------------------------------------------


@cli.group(epilog=EPILOG)
def mechanisms() -> None:
    """Compile elmpipe's NMODL channel and synapse mechanisms (done automatically on first use)."""


@mechanisms.command("build", epilog=EPILOG)
@click.option("--force", is_flag=True, help="Rebuild even when the cache is current.")
def mechanisms_build(force: bool) -> None:
    """Compile the mechanisms with nrnivmodl into the cache and print where they are.

    The cache lives in $ELMPIPE_CACHE_DIR (default ~/.cache/elmpipe) and is keyed by the .mod
    contents and the NEURON version, so it is rebuilt only when one of them changes.
    """
    from simulations.mechanisms import MechanismBuildError, build_info, build_mechanisms

    try:
        library = build_mechanisms(force=force)
    except MechanismBuildError as exc:
        raise EnvironmentProblem(str(exc)) from exc
    info = build_info()
    click.echo(f"mechanisms ready: {library}")
    click.echo(f"cache key {info['key']} · built in {info['build_seconds']} s")


@mechanisms.command("info", epilog=EPILOG)
def mechanisms_info() -> None:
    """Show the cache key and whether the current mechanisms are built."""
    from simulations.mechanisms import cache_key, cache_root, compiled_library

    library = compiled_library()
    click.echo(f"cache      {cache_root() / 'mechanisms'}")
    click.echo(f"key        {cache_key()}")
    click.echo(f"built      {library if library else 'no (run: elmpipe mechanisms build)'}")


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    # a batch system's or a user's `kill` then shuts local worker processes down cleanly, as
    # Ctrl-C does, instead of leaving them running as orphans
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    cli(prog_name="elmpipe")


if __name__ == "__main__":
    main()
