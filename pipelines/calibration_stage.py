"""The input scale of a data stage, decided before any simulation: given, the store's, known, or
calibrated now on the configured workers (simulations/calibration.py says how and why).

Order of precedence for ``protocol.input_scale: auto``: a store that already exists keeps the
scale it was made with (a store is never grown with another); else a calibration with the same
key (cell, mechanisms, protocol, probe settings, options) shipped with elmpipe or cached on this
machine; else the search runs now and its result is cached. A number in the config is used as
given. Whatever decided it is recorded in the dataset (root attribute ``calibration``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

from elmpipe.dataset import Dataset, DatasetError, DatasetSpec
from pipelines.cluster import ClusterConfig, Executor, Task, executor
from simulations.calibration import (
    PROBE_SEED,
    PROBE_SPLIT,
    Calibration,
    CalibrationSettings,
    Round,
    calibrate,
    calibration_key,
    known_calibration,
    probe_protocol,
    probe_settings,
    reference_target,
    remember_calibration,
)
from simulations.cell import CellSpec
from simulations.inputs import NeuronIOProtocol
from simulations.runner import DatasetJob, probe_spike_counts, release_worker_cell
from simulations.simulator import SimulationSettings, prepare_engine

Log = Callable[[str], None]


class _FarOff(Exception):
    """Raised to end a probe round early (never leaves this module)."""


def _stored_scale(out: Path | None) -> tuple[float, dict | None] | None:
    """The scale (and calibration record) of an existing store at ``out``, if there is one."""
    if out is None or not out.exists():
        return None
    try:
        dataset = Dataset(out)
    except DatasetError:
        return None  # not a dataset (yet): the split preparation says what is wrong
    scale = dataset.protocol.get("input_scale")
    return (float(scale), dataset.calibration) if scale is not None else None


def _dendrite_length(spec: DatasetSpec) -> float:
    lengths = spec.cell["length_um"]
    return float(lengths["basal"] + lengths["apical"])


def _key(
    spec: DatasetSpec,
    protocol: NeuronIOProtocol,
    settings: SimulationSettings,
    options: CalibrationSettings,
) -> str:
    """The calibration key of the cell that ``spec`` describes."""
    mechanisms = spec.cell.get("mechanisms_sha256") or ""
    return calibration_key(spec.cell["fingerprint"], mechanisms, protocol, settings, options)


def _probe_runner(
    pool: Executor,
    cell: CellSpec,
    protocol: NeuronIOProtocol,
    probe: SimulationSettings,
    options: CalibrationSettings,
    progress: bool,
) -> Callable[[float, Callable[[dict[int, int]], bool]], dict[int, int]]:
    """What the search calls to try a scale: the probe's simulations as tasks on ``pool``, one
    per simulation, cancelled as soon as ``enough`` says the direction is clear."""
    rounds = itertools.count()

    def run_probe(scale: float, enough: Callable[[dict[int, int]], bool]) -> dict[int, int]:
        job = DatasetJob(
            store="",
            split=PROBE_SPLIT,
            cell=cell,
            protocol=probe_protocol(protocol, scale),
            settings=probe,
            seed=PROBE_SEED,
        )
        attempt = next(rounds)  # keys unique per round: a cancelled round's are not reused
        tasks = [
            Task(probe_spike_counts, (job, k, k + 1), key=f"probe-{attempt}-{scale:g}-{k}")
            for k in options.run_order()
        ]
        found: dict[int, int] = {}

        def collect(task: Task, counts: list[int]) -> None:
            found[task.args[1]] = counts[0]
            if enough(found):
                raise _FarOff

        try:
            pool.run(
                tasks,
                label=f"probe at input scale {scale:g}",
                unit="sim",
                progress=progress,
                on_result=collect,
            )
        except _FarOff:
            pass  # the rest of the round is cancelled: the direction is clear
        return found

    return run_probe


def run_calibration(
    cell: CellSpec,
    protocol: NeuronIOProtocol,
    settings: SimulationSettings,
    options: CalibrationSettings,
    cluster: ClusterConfig,
    spec: DatasetSpec,
    *,
    progress: bool = True,
    log: Log = print,
) -> Calibration:
    """The search, each tried scale's probe run as one task per simulation on ``cluster``, for
    the cell ``spec`` describes; the result is keyed and cached for later runs."""
    probe = probe_settings(settings)
    prepare_engine(probe)
    target = options.target_spikes()
    log(
        f"   calibrating the input scale: {options.probe_simulations} probe simulations of 6 s "
        f"per tried scale, target {target:g} output spikes ± {options.tolerance:.0%}"
    )

    def on_round(result: Round) -> None:
        spikes = (
            f"{result.spikes} output spikes"
            if result.complete
            else f"≈ {result.spikes} output spikes (from {len(result.counts)} draws: outside "
            "the tolerance already, stopped early)"
        )
        log(f"   input scale {result.scale:g}: {spikes} ({result.seconds:.0f} s)")

    with executor(cluster) as pool:
        run_probe = _probe_runner(pool, cell, protocol, probe, options, progress)
        try:
            result = calibrate(run_probe, _dendrite_length(spec), options, on_round=on_round)
        finally:
            if cluster.kind == "in-process":
                release_worker_cell()
    result.key = _key(spec, protocol, settings, options)
    remember_calibration(result)
    return result


def resolve_input_scale(
    cell: CellSpec,
    protocol: NeuronIOProtocol,
    settings: SimulationSettings,
    options: CalibrationSettings,
    cluster: ClusterConfig,
    spec: DatasetSpec,
    out: Path | None,
    *,
    progress: bool = True,
    log: Log = print,
) -> Calibration:
    """Decide the input scale of a dataset described by ``spec`` (see the module docstring)."""
    if protocol.input_scale != "auto":
        return Calibration(
            input_scale=float(protocol.input_scale), method="given", target=reference_target()
        )
    stored = _stored_scale(out)
    if stored is not None:
        scale, record = stored
        if record is not None:
            return Calibration.from_dict(record).with_method("store")
        return Calibration(input_scale=scale, method="store", target=reference_target())
    known = known_calibration(_key(spec, protocol, settings, options))
    if known is not None:
        log(f"   input scale {known.input_scale:g} ({known.method}: calibrated before)")
        return known
    calibration = run_calibration(
        cell, protocol, settings, options, cluster, spec, progress=progress, log=log
    )
    state = "" if calibration.converged else ", NOT within the tolerance: the closest tried"
    log(
        f"   input scale {calibration.input_scale:g}{state} — "
        f"{calibration.probe_achieved['rate_hz']:.2f} Hz on the probe (target "
        f"{calibration.probe_target.get('rate_hz', float('nan')):.2f} Hz), "
        f"{len(calibration.rounds)} scale{'s' if len(calibration.rounds) != 1 else ''} tried in "
        f"{calibration.seconds:.0f} s"
    )
    return calibration


def with_scale(spec: DatasetSpec, calibration: Calibration) -> DatasetSpec:
    """The dataset description with the decided scale in its protocol and the record beside."""
    protocol = {**spec.protocol, "input_scale": calibration.input_scale}
    return dataclasses.replace(spec, protocol=protocol, calibration=calibration.to_dict())
