"""`elmpipe run CONFIG.yaml`: plan → simulate → describe → fit (or sweep) → evaluate → report.

The plan comes first and does no work: it builds the cell once to learn the dataset's shape and
checks every section against it (the models' input count, windows that fit the simulations,
splits that exist) — so a mistake anywhere in the config is reported, naming file and key, before
the first simulation. Every stage then writes into the run folder and is skipped when its output
is complete, resumed when it was interrupted:

    OUT/data.zarr            simulate: splits, complete simulations are never redone
    OUT/describe.json        describe: dataset statistics
    OUT/fit/<model>/         fit: run folders (result.json when finished; last.pt to resume)
    OUT/eval/<model>/        evaluate: metrics.json, roc.png, traces.png, spikes.csv
    OUT/report/index.html    report: one self-contained page, PNGs alongside
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elmpipe.dataset import DatasetSpec
from elmpipe.errors import ConfigError
from elmpipe.outputs import check_output_folder, write_json_atomic, write_text_atomic
from pipelines.cluster import Executor
from pipelines.config import RunConfig, SimulateConfig, checked
from pipelines.resumable import evaluate_once, fit_once
from pipelines.simulation_stage import calibrated, describe_dataset, prepared
from pipelines.sweep import check_points_unchanged, grid, model_name, surrogate_model
from simulations.inputs import NeuronIOProtocol
from surrogate.neuronio_fit import TrainConfig
from surrogate.warm_start import resolve_source

Log = Callable[[str], None]


@dataclass(frozen=True)
class RunPlan:
    out: Path
    spec: DatasetSpec
    points: dict[str, TrainConfig]  # run-folder name → what trains there
    simulate: SimulateConfig  # the data stage with its input scale decided


def _fit_points(config: RunConfig, num_input: int, source: str) -> dict[str, TrainConfig]:
    fit = config.fit
    if fit.sweep is not None:
        sweep = fit.sweep.model_copy(update={"train": fit.train})
        with checked(source, "fit.sweep"):
            return grid(sweep, num_input)
    options = dict(fit.model or {})
    family = options.pop("family")
    with checked(source, "fit.model"):
        model = surrogate_model(family, num_input, options)
    return {model_name(model): TrainConfig.of(fit.train, model)}


def plan_run(
    config: RunConfig,
    source: str = "run config",
    *,
    calibrate: bool = True,
    progress: bool = True,
    log: Log = print,
) -> RunPlan:
    """Check the whole config against the dataset it will make; no training. The one simulation
    it may do is the input calibration of a new cell (``calibrate``; before it, every check that
    needs no scale has passed)."""
    out = check_output_folder(config.out, "run folder")
    simulate_config = prepared(config.simulate_config(), out / "data.zarr")
    spec = describe_dataset(simulate_config)
    points = _fit_points(config, spec.n_channels, source)
    splits = config.data.splits
    problems = []
    if config.evaluate.split not in splits:
        problems.append(f"evaluate.split: {config.evaluate.split!r} is not in data.splits")
    train = config.fit.train
    if train.train_split not in splits:
        problems.append(f"fit.train.train_split: {train.train_split!r} is not in data.splits")
    elif splits[train.train_split] < train.batch_size:
        problems.append(
            f"fit.train.batch_size: {train.batch_size} distinct simulations per batch, but "
            f"data.splits.{train.train_split} has {splits[train.train_split]}"
        )
    if train.valid_split is not None and train.valid_split not in splits:
        problems.append(f"fit.train.valid_split: {train.valid_split!r} is not in data.splits")
    for name, point in points.items():
        wanted = point.train_simulations
        if wanted and train.train_split in splits and wanted > splits[train.train_split]:
            problems.append(
                f"{name}: trains on {wanted} simulations, data.splits.{train.train_split} has "
                f"{splits[train.train_split]}"
            )
        if point.init and not resolve_source(point.init).is_file():
            problems.append(f"fit.train.init: no checkpoint at {resolve_source(point.init)}")
    needed = train.min_start_ms + train.window_ms
    if spec.n_time < needed:
        problems.append(
            f"data.simulation.duration_ms: training windows need {needed} ms "
            f"(fit.train.min_start_ms + window_ms); simulations last {spec.n_time} ms"
        )
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    check_points_unchanged(points, out / "fit")  # before simulating, not after
    if calibrate and isinstance(simulate_config.protocol, NeuronIOProtocol):
        simulate_config, spec = calibrated(
            simulate_config, spec, out / "data.zarr", progress=progress, log=log
        )
    return RunPlan(out, spec, points, simulate_config)


def _stage(log: Log, name: str) -> float:
    log(f"── {name}")
    return time.perf_counter()


def run_pipeline(
    config: RunConfig, *, source: str = "run config", progress: bool = True, log: Log = print
) -> dict[str, Any]:
    """Run (or complete) every stage; returns a summary with the report's path."""
    from elmpipe.dataset.statistics import describe
    from pipelines.report import build_report

    started = _stage(log, "plan")
    plan = plan_run(config, source, progress=progress, log=log)
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "run-config.json", config.model_dump_json(indent=2))
    store = out / "data.zarr"
    timings: dict[str, float] = {"plan": time.perf_counter() - started}

    started = _stage(log, "simulate")
    _simulate_splits(config, plan, store, progress, log)
    timings["simulate"] = time.perf_counter() - started

    started = _stage(log, "describe")
    description = describe(str(store))
    write_json_atomic(out / "describe.json", description)
    for line in description["warnings"]:  # the report repeats them
        log(f"   warning: {line}")
    timings["describe"] = time.perf_counter() - started

    started = _stage(log, "fit")
    runs = _fit(config, plan, store, progress, log)
    timings["fit"] = time.perf_counter() - started

    started = _stage(log, "evaluate")
    evaluations = {
        name: _evaluate_run(config, store, run_dir, out / "eval" / name, log)
        for name, run_dir in runs.items()
    }
    timings["evaluate"] = time.perf_counter() - started

    started = _stage(log, "report")
    report = build_report(out, config, description, runs, evaluations, timings)
    timings["report"] = time.perf_counter() - started
    log(f"   {report}")
    _track_evaluations(config, runs, evaluations, Path(report).parent)
    return {"out": out, "report": report, "evaluations": evaluations, "timings": timings}


def _simulate_splits(
    config: RunConfig, plan: RunPlan, store: Path, progress: bool, log: Log
) -> None:
    """Every split, then the growth its spike goals ask for, on one cluster (each worker builds
    the cell once)."""
    from pipelines.simulation_stage import simulate, simulation_workers

    with simulation_workers(plan.simulate.cluster) as pool:
        for split, n_sims in config.data.splits.items():
            summary = simulate(
                plan.simulate, store, split, n_sims, progress=progress, spec=plan.spec, log=log,
                pool=pool,
            )  # fmt: skip
            repaired = f", {summary.repaired} found damaged and redone" if summary.repaired else ""
            log(
                f"   {split}: {summary.simulated} simulated now, {summary.already_done} already "
                "done" + repaired
            )
        for goal in spike_goals(config):
            _grow_split(goal, plan, store, pool, progress, log)


def _fit(
    config: RunConfig, plan: RunPlan, store: Path, progress: bool, log: Log
) -> dict[str, Path]:
    """The model or the sweep's grid, each point trained (or resumed, or found finished);
    returns each point's run folder."""
    from pipelines.sweep import run_sweep

    if config.fit.torch_threads:
        import torch

        torch.set_num_threads(config.fit.torch_threads)
    runs = {name: plan.out / "fit" / name for name in plan.points}
    if config.fit.sweep is not None:
        sweep = config.fit.sweep.model_copy(update={"train": config.fit.train})
        run_sweep(
            sweep, store, plan.out / "fit", config.cluster, progress=progress, points=plan.points
        )
    else:
        for name, train in plan.points.items():
            fit_once(train, store, runs[name], progress=progress, log=log)
    return runs


def _track_evaluations(
    config: RunConfig, runs: dict[str, Path], evaluations: dict[str, dict], report_dir: Path
) -> None:
    """Each fitted run's evaluation and the report's figures, to the trackers its fit used."""
    train = config.fit.train
    if not train.track:
        return
    from surrogate.tracking import open_trackers

    figures = [report_dir / f"{name}.png" for name in ("roc", "traces", "training")]
    for name, run_dir in runs.items():
        if name not in evaluations:
            continue
        with open_trackers(
            train.track, run_dir, uri=train.tracking_uri, experiment=train.experiment
        ) as tracked:
            tracked.evaluation(evaluations[name], figures)


def next_split_size(spikes: int, n_sims: int, wanted: int, cap: int) -> int:
    """A growing split's next size: what its rate so far predicts for ``wanted`` spikes, at
    least one simulation more, at most twice as many (and at most ``cap``)."""
    needed = math.ceil(wanted * n_sims / spikes) if spikes > 0 else 2 * n_sims
    return min(cap, 2 * n_sims, max(needed, n_sims + 1))


@dataclass(frozen=True)
class SpikeGoal:
    """How many scored output spikes a split should hold: ``wanted(n)`` for n simulations."""

    split: str
    setting: str  # the config key that asks for it, for the log
    wanted: Callable[[int], int]
    cap: int
    initial: int  # its size in data.splits


def spike_goals(config: RunConfig) -> list[SpikeGoal]:
    """The validation split's (≥ r spikes per simulation on average: the epoch that is kept is
    chosen on it) and the evaluated split's (a total the AUC can rest on)."""
    data = config.data
    goals = []
    if (rate := data.min_valid_spikes_per_simulation) is not None:
        name = config.fit.train.valid_split or "valid"
        goals.append(
            SpikeGoal(
                name,
                f"data.min_valid_spikes_per_simulation ({rate:g})",
                lambda n: math.ceil(rate * n),
                data.max_valid_simulations or 4 * data.splits[name],
                data.splits[name],
            )
        )
    if (total := data.min_test_spikes) is not None:
        name = config.evaluate.split
        goals.append(
            SpikeGoal(
                name,
                f"data.min_test_spikes ({total})",
                lambda n: total,
                data.max_test_simulations or 4 * data.splits[name],
                data.splits[name],
            )
        )
    return goals


def _grow_split(
    goal: SpikeGoal, plan: RunPlan, store: Path, pool: Executor, progress: bool, log: Log
) -> None:
    """Add simulations to a split until it holds the spikes ``goal`` asks for (or its cap).
    Each step goes to the size the spikes so far predict, at most doubling the split: a few
    simulations estimate a rate poorly (Hay's cell3, which fires in bursts or not at all, gave
    18 spikes in its first 10 test simulations, against 8.4 per simulation on 16 other draws),
    and every simulation beyond the need is time the demo does not have. Deterministic —
    simulation k is the same whenever it is made — so a resumed run grows to the same size."""
    from elmpipe.dataset import Dataset
    from elmpipe.dataset.statistics import evaluated_output_spikes
    from pipelines.simulation_stage import simulate

    name = goal.split

    def grow_to(n: int) -> int:
        simulate(
            plan.simulate, store, name, n, progress=progress, spec=plan.spec, log=log, pool=pool
        )
        return evaluated_output_spikes(Dataset(store).split(name))

    n_sims = Dataset(store).split(name).n_sims
    if n_sims > goal.initial:  # grown by an earlier run, perhaps interrupted: complete it
        spikes = grow_to(n_sims)
    else:  # just made and checked by the split's own simulate call
        spikes = evaluated_output_spikes(Dataset(store).split(name))
    while spikes < goal.wanted(n_sims) and n_sims < goal.cap:
        grown = next_split_size(spikes, n_sims, goal.wanted(n_sims), goal.cap)
        log(
            f"   {name}: {spikes} scored output spikes in {n_sims} simulations, fewer than "
            f"{goal.setting} asks: growing it to {grown}"
        )
        n_sims, spikes = grown, grow_to(grown)
    if spikes < goal.wanted(n_sims):
        log(
            f"   warning: {name} holds {spikes} scored output spikes in {n_sims} simulations, "
            f"fewer than {goal.setting} asks, at its most ({goal.cap} simulations): scores on "
            "it are uncertain (the report gives the AUC's interval)"
        )
    else:
        log(f"   {name}: {spikes} scored output spikes in {n_sims} simulations")


def _evaluate_run(config: RunConfig, store: Path, run_dir: Path, out: Path, log: Log) -> dict:
    from surrogate.evaluate import EvaluationConfig

    return evaluate_once(
        run_dir / "best.pt",
        store,
        config.evaluate.split,
        out,
        settings=EvaluationConfig(sims_per_file=config.evaluate.sims_per_file),
        device=config.evaluate.device,
        examples=config.report.examples,
        log=log,
    )
