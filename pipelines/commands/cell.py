"""elmpipe cell: build the L5PC from a morphology and look at it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from elmpipe.errors import InputError
from pipelines.commands.common import (
    EPILOG,
    FiniteRange,
    apical_trees,
    build_cell,
    cell_model_overrides,
    cluster_options,
    cluster_settings,
    config_option,
    field_option,
    morphology_option,
    nexus_option,
    out_option,
    parameters_option,
    quiet_option,
    with_options,
)
from simulations.calibration import CalibrationSettings

# -- cell -------------------------------------------------------------------------------------


@click.group(epilog=EPILOG)
def cell() -> None:
    """Build the L5PC model (a morphology, or a lab's template) and look at it."""


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

    \b
    Examples:
      elmpipe cell info
      elmpipe cell info -m my_cell.swc --no-sim
      elmpipe cell info -m my_cell.asc --apical-trees 3 --json
      elmpipe cell info --template L5PC.hoc --template-name L5PC --template-arg cell1.asc \\
          --mechanisms mod/            a lab's own model (docs/own-model.md)
    """
    from simulations import electrophysiology as ephys

    the_cell = build_cell(morphology, parameters, nexus)
    info = the_cell.summary()
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
    model = info.get("template")
    lines = (
        [
            f"model             template {model['name']} of {model['template']}"
            + "".join(f" {a}" for a in model["args"]),
            f"mechanisms        {model['mechanisms'] or 'elmpipe’s own'} "
            f"({len(model['mechanism_files_sha256'])} .mod files with elmpipe’s synapses)",
        ]
        if model
        else [
            f"morphology        {info['morphology']}",
            f"parameter set     {info['parameters']}",
        ]
    )
    lines += [
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
@click.option(
    "--amplitude", "-a", default=0.8, show_default=True, type=FiniteRange(-100, 100),
    help="Current (nA).",
)  # fmt: skip
@click.option(
    "--duration", default=1000.0, show_default=True,
    type=FiniteRange(0, 3_600_000, min_open=True), help="Step duration (ms).",
)  # fmt: skip
@click.option(
    "--delay", default=500.0, show_default=True, type=FiniteRange(0, 3_600_000),
    help="Step onset (ms).",
)  # fmt: skip
@click.option(
    "--celsius", default=6.3, show_default=True, type=FiniteRange(0, 45),
    help="Temperature (°C).",
)  # fmt: skip
def cell_step(
    morphology: Path | None,
    parameters: str | None,
    amplitude: float,
    duration: float,
    delay: float,
    celsius: float,
) -> None:
    """Inject a somatic current step and print the action potentials it evokes.

    \b
    Examples:
      elmpipe cell step -a 0.8
      elmpipe cell step -m my_cell.asc -a 1.5 --duration 2000
    """
    from simulations import electrophysiology as ephys

    if duration <= 0 or delay < 0:
        raise InputError("--duration must be positive and --delay non-negative")
    the_cell = build_cell(morphology, parameters)
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
    """Measure the sanity anchors a modeller checks before trusting a cell, and judge them.

    \b
    Rest and input resistance; spikes for 1 s somatic steps of 0.2–1.0 nA and the rheobase
    (bisection on the step amplitude); back-propagation of an action potential evoked by a 5 ms
    somatic pulse, 400 µm up the main apical dendrite; the Ca spike evoked by 1 nA for 10 ms at
    the nexus, with and without Ca channels; the NMDA-dependent depolarisation per event at a
    distal basal site for 1 and 40 coactive events (Mg-block relief).
    \b
    Ends with a verdict per property: ok inside a plausible range for a cortical (L5)
    pyramidal cell, flag outside it, with the reason (simulations/plausibility.py;
    docs/own-cell.md). The exit code stays 0: it is a report.

    \b
    Examples:
      elmpipe cell check
      elmpipe cell check -m my_cell.asc
      elmpipe cell check -m my_cell.swc --nexus 'apic[50](0.9)' --json
    """
    from simulations import electrophysiology as ephys
    from simulations.plausibility import assess, measurements_of

    the_cell = build_cell(morphology, parameters, nexus)
    soma_v, nexus_v = ephys.resting_potential(the_cell)
    result: dict[str, Any] = {
        "morphology": str(the_cell.morphology_path),
        "resting_potential_mv": {"soma": soma_v, "nexus": nexus_v},
        "input_resistance_mohm": ephys.input_resistance(the_cell),
    }
    steps: dict[float, int] = {}
    with click.progressbar(STEPS_NA, label="current steps", file=sys.stderr) as bar:
        for amplitude in bar:
            steps.update(ephys.step_counts(the_cell, [amplitude]))
    result["step_spikes"] = {f"{a:.1f}": n for a, n in steps.items()}
    result["rheobase_na"] = ephys.rheobase(the_cell, steps)
    bap = ephys.back_propagation(the_cell)
    result["back_propagation"] = (
        None if bap is None else {**bap.__dict__, "attenuation": bap.attenuation}
    )
    with_ca = without_ca = None
    result["calcium_spike"] = None  # a model without calcium at its nexus has no Ca spike
    if ephys.has_calcium_at_nexus(the_cell):
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
    verdicts = assess(measurements_of(result))
    result["verdicts"] = [_verdict_json(v) for v in verdicts]
    result["outside_plausible_range"] = sum(not v.ok for v in verdicts)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(_format_check(result, with_ca, without_ca, bap, site_name))
    click.echo(_format_verdicts(verdicts))


STEPS_NA = (0.2, 0.4, 0.6, 0.8, 1.0)


def _verdict_json(verdict: Any) -> dict[str, Any]:
    from simulations.plausibility import RANGES

    bounds = RANGES[verdict.property]
    return {
        "property": verdict.property,
        "label": bounds.label,
        "value": verdict.value,
        "unit": bounds.unit,
        "range": [bounds.low, bounds.high],
        "verdict": verdict.verdict,
        "reason": verdict.reason,
    }


def _format_check(
    result: dict[str, Any], with_ca: Any, without_ca: Any, bap: Any, site: str
) -> str:
    rest = result["resting_potential_mv"]
    nmda = result["nmda"]["events"]
    rheobase = result["rheobase_na"]
    lines = [
        f"resting V          soma {rest['soma']:.2f} mV · nexus {rest['nexus']:.2f} mV",
        f"input resistance   {result['input_resistance_mohm']:.1f} MΩ",
        "1 s steps          "
        + " · ".join(f"{a} nA → {n}" for a, n in result["step_spikes"].items())
        + " spikes",
        "rheobase           "
        + ("no spike up to 3 nA" if rheobase is None else f"{rheobase:.3f} nA (1 s step)"),
    ]
    if bap is None:
        lines.append("back-propagation   no action potential for 5 ms pulses up to 7.6 nA")
    else:
        lines.append(
            f"back-propagation   {bap.soma_amplitude_mv:.1f} mV at the soma → "
            f"{bap.apical_amplitude_mv:.1f} mV at {bap.apical_distance_um:.0f} µm apical "
            f"(×{bap.attenuation:.2f}; {bap.pulse_na:g} nA for 5 ms)"
        )
    lines += [
        "Ca spike at nexus  no calcium current at the nexus: not measured"
        if with_ca is None
        else f"Ca spike at nexus  plateau {with_ca.plateau_ms:.1f} ms, peak "
        f"{with_ca.peak_mv:.1f} mV, {with_ca.peak_after_mv:.1f} mV after the pulse (Ca blocked: "
        f"{without_ca.plateau_ms:.1f} ms, {without_ca.peak_mv:.1f} mV)",
        f"NMDA at {site}  NMDA part per event {nmda['1']['nmda_per_event']:.1f} mV·ms "
        f"(1 event) → {nmda['40']['nmda_per_event']:.1f} mV·ms (40 events)",
    ]
    return "\n".join(lines)


def _format_verdicts(verdicts: list[Any]) -> str:
    """The verdict block: one line per property, the reason under each flag, a count last."""
    from simulations.plausibility import RANGES

    lines = ["", "verdicts (plausible ranges for a cortical L5 pyramidal cell; docs/own-cell.md)"]
    for verdict in verdicts:
        bounds = RANGES[verdict.property]
        value = "–" if verdict.value is None else f"{verdict.value:.3g} {bounds.unit}".strip()
        lines.append(f"  {verdict.verdict:<4}  {bounds.label:<44} {value:<12} ({bounds.bounds()})")
        if not verdict.ok:
            lines.append(f"        {verdict.reason}")
    flagged = sum(not v.ok for v in verdicts)
    lines.append(
        f"{flagged} of {len(verdicts)} properties outside the plausible range"
        + (": check the cell before trusting datasets made from it" if flagged else "")
    )
    return "\n".join(lines)


# -- calibrate --------------------------------------------------------------------------------


@cell.command("generate", epilog=EPILOG)
@out_option("SWC file to write.")
@click.option(
    "--seed", type=click.IntRange(min=0), default=1, show_default=True, help="Random stream."
)
@click.option(
    "--scale",
    type=FiniteRange(min=0.5, max=2.0),
    default=1.0,
    show_default=True,
    help="Every length × this (diameters × its square root).",
)
@click.option("--basal-trees", type=click.IntRange(min=1, max=12), help="Default: 5.")
def cell_generate(out: Path, seed: int, scale: float, basal_trees: int | None) -> None:
    """Write a cell of the built-in kind with another random stream and size (SWC).

    \b
    The built-in cell's generator (docs/cell.md) with its own branch angles and lengths: more
    cells for pretraining a cell-general surrogate (`elmpipe pretrain`), each then simulated
    with inputs calibrated to it like any reconstruction.
    \b
    Examples:
      elmpipe cell generate -o cells/variant1.swc --seed 1
      elmpipe cell generate -o cells/big.swc --seed 2 --scale 1.3 --basal-trees 7
      elmpipe cell check -m cells/big.swc
    """
    from elmpipe.outputs import check_output_file, write_text_atomic
    from simulations.default_morphology import generate_swc, variant

    out = check_output_file(out, "morphology")
    write_text_atomic(out, generate_swc(variant(seed, scale, basal_trees)))
    cell = build_cell(out, None)
    summary = cell.summary()
    click.echo(
        f"{out}: {summary['segments']['dendritic']} dendritic segments, l_max "
        f"{summary['l_max_um']:.0f} µm, nexus at {summary['nexus']['distance_um']:.0f} µm"
    )


@cell.command("calibrate", epilog=EPILOG)
@morphology_option
@parameters_option
@config_option(
    "A data-stage or run config: calibrate with its protocol, simulation settings and cluster."
)
@field_option(
    CalibrationSettings,
    "target_rate_hz",
    "--target-rate",
    help="Output rate (Hz) to reach on the probe; default: the Hay cell's on the same probe",
)
@field_option(
    CalibrationSettings,
    "probe_simulations",
    help="6 s probe simulations per tried scale (the Hay cell's count is known for this many)",
)
@field_option(CalibrationSettings, "tolerance")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@with_options(cluster_options)
@quiet_option
def cell_calibrate(
    morphology: Path | None,
    parameters: str | None,
    config_path: Path | None,
    target_rate_hz: float | None,
    probe_simulations: int | None,
    tolerance: float | None,
    as_json: bool,
    cluster: str | None,
    workers: int | None,
    address: str | None,
    cluster_config: Path | None,
    quiet: bool,
) -> None:
    """Find the input scale at which the cell fires as the Hay cell does under NeuronIO.

    \b
    The NeuronIO protocol's input counts were made for the Hay cell; spread over another
    cell's dendrites they over- or under-drive it. This runs a fixed probe (8 simulations of
    6 s, the same inputs for every cell, weak and strong drive alike) at a few scales of the
    input counts and stops when the probe's output spike count is within 10 % of the Hay
    cell's. It always runs the search (`simulate` and `run` reuse a result cached on this
    machine); the Hay cell comes out at exactly 1. Cost: 2-4 tried scales, each up to 8 × 6 s
    of simulation spread over the workers (a try far off stops early).
    \b
    Examples:
      elmpipe cell calibrate -m my_cell.asc
      elmpipe cell calibrate -m my_cell.swc --target-rate 2 --workers 8
      elmpipe cell calibrate -c configs/demo.yaml -m my_cell.asc --json
    """
    from pipelines.calibration_stage import run_calibration
    from pipelines.config import OPTIONS, SimulateConfig, load_simulate_config, with_overrides
    from pipelines.simulation_stage import describe_dataset, prepared
    from simulations.inputs import NeuronIOProtocol

    config = load_simulate_config(config_path) if config_path else SimulateConfig()
    overrides = {
        "cell.morphology": str(morphology) if morphology else None,
        "cell.apical_trees": apical_trees(),
        **cell_model_overrides(),
        "cell.parameters": parameters,
        "calibration.target_rate_hz": target_rate_hz,
        "calibration.probe_simulations": probe_simulations,
        "calibration.tolerance": tolerance,
    }
    config = with_overrides(config, overrides, OPTIONS)
    settings = cluster_settings(cluster, workers, address, cluster_config, base=config.cluster)
    config = prepared(config.model_copy(update={"cluster": settings}))
    protocol = config.protocol
    if not isinstance(protocol, NeuronIOProtocol):
        raise InputError(f"{config_path}: protocol: calibration needs generated (neuronio) inputs")
    spec = describe_dataset(config)
    log = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    result = run_calibration(
        config.cell,
        protocol,
        config.simulation,
        config.calibration,
        config.cluster,
        spec,
        progress=not quiet,
        log=log,
    )
    if as_json:
        click.echo(
            json.dumps({"morphology": spec.cell["morphology"], **result.to_dict()}, indent=2)
        )
        return
    click.echo(_format_calibration(spec.cell["morphology"], result))


def _format_calibration(morphology: str, result: Any) -> str:
    probe, mine = result.probe_target, result.probe_achieved
    verdict = "within the tolerance" if result.converged else "NOT within the tolerance"
    n = result.probe["simulations"]
    lines = [
        f"morphology        {morphology}",
        f"input scale       {result.input_scale:g} ({verdict}; geometric guess "
        f"{result.probe['start']:g})",
        "tried             "
        + " · ".join(f"{r.scale:g} → {r.spikes}" for r in result.rounds)
        + f" output spikes (target {result.target_spikes:g} ± {result.probe['tolerance']:.0%})",
        f"on the probe ({n} × 6 s){'this cell':>15}{'target':>10}",
    ]
    rows = (
        ("rate (Hz)", "rate_hz", "{:.2f}"),
        ("spikes / 6 s sim", "spikes_per_simulation", "{:.1f}"),
        ("share in 0-24", "share_in_kept_range", "{:.0%}"),
        ("silent sims", "silent_share", "{:.0%}"),
    )
    for label, key, fmt in rows:
        value = fmt.format(mine[key]) if key in mine else "-"
        target = fmt.format(probe[key]) if key in probe else "-"
        lines.append(f"  {label:<24}{value:>10}{target:>10}")
    whole = result.target
    if "spikes_per_simulation" in whole:
        lines.append(
            f"the Hay cell over all draws: {whole['rate_hz']:.2f} Hz, "
            f"{whole['spikes_per_simulation']:.1f} spikes per 6 s, "
            f"{whole['share_in_kept_range']:.0%} of simulations in 0-24"
        )
    lines.append(
        f"wall time         {result.seconds:.0f} s ({n} probe simulations × "
        f"{len(result.rounds)} scale{'s' if len(result.rounds) != 1 else ''})"
    )
    if not result.converged:
        lines.append(
            "warning: no tried scale reached the target within the tolerance; the closest is "
            "kept. More probe simulations (--probe-simulations with --target-rate) or a "
            "larger --tolerance may settle it."
        )
    return "\n".join(lines)
