"""The simulate stage: check everything, then fill a dataset split with simulations in parallel.

All checks run before the first simulation: config values, the cell (built once here to describe
it), the target store (writable, room, same cell/protocol/settings/seed), the replay source. Then
one task per unfinished storage chunk goes to the executor; finished chunks are on disk as soon
as their task ends, so an interrupted run loses only the chunks in flight, and running the same
command again does only what is missing — including simulations found damaged on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from elmpipe.dataset import Dataset, DatasetError, DatasetSpec, prepare_split
from elmpipe.dataset.compare import segment_table_check
from elmpipe.errors import InputError
from elmpipe.outputs import check_output_folder
from pipelines.calibration_stage import resolve_input_scale, with_scale
from pipelines.cluster import ClusterConfig, Executor, Task, executor
from pipelines.config import SimulateConfig
from simulations.inputs import NeuronIOProtocol, ReplayProtocol
from simulations.runner import DatasetJob, dataset_spec, release_worker_cell, run_block
from simulations.simulator import NEW_DATA_STEP_MS, prepare_engine


@dataclass
class SimulateSummary:
    store: Path
    split: str
    n_sims: int
    simulated: int
    already_done: int
    output_spikes: int
    seconds: float
    repaired: int = 0  # damaged simulations found on disk and recomputed
    slurm_jobs: tuple[str, ...] = ()  # batch jobs whose workers ran the tasks
    peak_worker_rss_mb: float = 0.0  # the largest resident memory of a worker that simulated


def _lockout_of_origin(protocol) -> bool:
    """What the t = 0 lock-out should be when left to the inputs' origin: on for replays of
    NeuronIO data (the reference model had it), as the source for replays of our datasets, off
    for new inputs (it is an artefact of the original release code, not biology)."""
    if not isinstance(protocol, ReplayProtocol):
        return False
    source = Dataset(Path(protocol.source).expanduser())
    if source.protocol.get("kind") == "neuronio-import":
        return True
    return bool(source.attrs.get("simulation", {}).get("synapses", {}).get("t0_lockout"))


def _stored_step(store: Path | None, engine: str) -> float | None:
    """The step an existing store at ``store`` was made with on ``engine`` (None: no such store,
    or made on another engine: the store's own check then says what differs)."""
    if store is None or not store.exists():
        return None
    try:
        stored = Dataset(store).attrs.get("simulation", {})
    except InputError:
        return None  # not a dataset (yet): the split preparation, or the replay, says what is wrong
    step = stored.get("dt_ms") if stored.get("engine") == engine else None
    if isinstance(step, bool) or not isinstance(step, int | float) or not step > 0:
        return None  # none, or a damaged value: the store's check names it
    return float(step)


def _step_left_open(config: SimulateConfig, store: Path | None) -> float | None:
    """The step for settings that set none. A store grows at the step it was made with
    (whatever today's default); a replay of one of our datasets takes its source's (it
    reproduces the source); new generated inputs at a fixed step take the new-data step
    (simulations.simulator.NEW_DATA_STEP_MS). None: the engine's default, the step held to the
    reference runs (replays of NeuronIO data, the adaptive step's fine windows)."""
    settings = config.simulation
    own = _stored_step(store, settings.engine)
    if own is not None:
        return own
    protocol = config.protocol
    if isinstance(protocol, ReplayProtocol):
        return _stored_step(Path(protocol.source).expanduser(), settings.engine)
    if settings.adaptive is None:
        return NEW_DATA_STEP_MS.get(settings.engine)
    return None


def prepared(config: SimulateConfig, store: Path | None = None) -> SimulateConfig:
    """The config as a dataset records it: the cell's file paths absolute (workers may run
    elsewhere), the step (see _step_left_open; ``store``: where the dataset is or will be)
    and the t = 0 lock-out made explicit."""
    settings = config.simulation
    step = _step_left_open(config, store) if settings.dt_ms is None else None
    if step is not None:
        try:
            settings = type(settings).model_validate({**settings.model_dump(), "dt_ms": step})
        except ValueError:
            pass  # a store's step that other requested settings rule out: its check names both
    settings = settings.resolved(t0_lockout=_lockout_of_origin(config.protocol))
    return config.model_copy(update={"cell": config.cell.absolute(), "simulation": settings})


def describe_dataset(config: SimulateConfig) -> DatasetSpec:
    """Build the cell here once (then free it) to record what the dataset is made of, and
    make sure its engine can run it (the CoreNEURON build of its mechanisms) before a
    calibration or a store commits to that engine."""
    cell = config.cell.build()
    try:
        prepare_engine(config.simulation)
        return dataset_spec(cell, config.protocol, config.simulation, config.seed)
    finally:
        del cell
        gc.collect()  # a NEURON process holds one cell at a time (see simulations.runner)


def calibrated(
    config: SimulateConfig,
    spec: DatasetSpec,
    out: Path | None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[SimulateConfig, DatasetSpec]:
    """The config and description with the input scale decided (pipelines.calibration_stage)."""
    assert isinstance(config.protocol, NeuronIOProtocol)
    calibration = resolve_input_scale(
        config.cell,
        config.protocol,
        config.simulation,
        config.calibration,
        config.cluster,
        spec,
        out,
        progress=progress,
        log=log,
    )
    protocol = config.protocol.model_copy(update={"input_scale": calibration.input_scale})
    return config.model_copy(update={"protocol": protocol}), with_scale(spec, calibration)


def _check_replay(protocol: ReplayProtocol, spec: DatasetSpec, n_sims: int) -> ReplayProtocol:
    """The replay source is complete, long enough, and of this very cell: the same channel
    count and, where it records one, the same segment table (input row i on the same segment)."""
    source_path = Path(protocol.source).expanduser().resolve()
    dataset = Dataset(source_path)
    source = dataset.split(protocol.split)
    complete = source.complete_mask
    if complete.size < n_sims or not complete[:n_sims].all():
        raise DatasetError(
            f"replay source {source} has {int(complete[:n_sims].sum())} complete simulations of "
            f"the {n_sims} asked for"
        )
    if source.n_channels != spec.n_channels:
        raise DatasetError(
            f"replay source has {source.n_channels} input channels; this cell has {spec.n_channels}"
        )
    difference, compared = segment_table_check(
        dataset.cell, spec.cell, (f"the replay source {source_path}", "this cell")
    )
    if difference is not None:
        raise DatasetError(
            "the replay source was not simulated on this cell (its input rows would land on other "
            f"segments): {difference}"
        )
    if "only the numbers of input channels" in compared:
        logging.getLogger(__name__).warning("replay: %s", compared)
    if source.n_time < spec.n_time:
        raise DatasetError(
            f"replay source simulations last {source.n_time} ms; asked for {spec.n_time} ms"
        )
    return protocol.model_copy(update={"source": str(source_path)})


@contextlib.contextmanager
def simulation_workers(cluster: ClusterConfig) -> Iterator[Executor]:
    """The workers that simulate: the configured executor; in-process, the cell it built is
    released afterwards (this process may build another cell)."""
    try:
        with executor(cluster) as pool:
            yield pool
    finally:
        if cluster.kind == "in-process":
            release_worker_cell()


def _settled_inputs(
    config: SimulateConfig,
    spec: DatasetSpec | None,
    out: Path,
    n_sims: int,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[SimulateConfig, DatasetSpec]:
    """The config and dataset description with the inputs decided: a generated protocol's
    input scale (the store's, a known one, or calibrated now), a replay's source checked."""
    config = prepared(config, out)
    spec = spec or describe_dataset(config)
    protocol = config.protocol
    if isinstance(protocol, NeuronIOProtocol) and (
        protocol.input_scale == "auto" or spec.calibration is None
    ):
        config, spec = calibrated(config, spec, out, progress=progress, log=log)
    if isinstance(config.protocol, ReplayProtocol):
        config = config.model_copy(
            update={"protocol": _check_replay(config.protocol, spec, n_sims)}
        )
        spec = dataclasses.replace(spec, protocol=config.protocol.model_dump(mode="json"))
    return config, spec


def simulate(
    config: SimulateConfig,
    out: str | Path,
    split: str,
    n_sims: int,
    *,
    progress: bool = True,
    spec: DatasetSpec | None = None,
    log: Callable[[str], None] = print,
    pool: Executor | None = None,
) -> SimulateSummary:
    """Make sure simulations 0 … n_sims - 1 of ``split`` exist (intact) in the store at ``out``.

    ``spec``: the dataset description if the caller already built the cell for it. An input
    scale of 'auto' is decided first (the store's, a known one, or calibrated now; ``log`` tells).
    ``pool``: workers the caller keeps for several calls (`elmpipe run` simulates every split
    and grows them on one cluster: each worker builds the cell once); None: started here.
    """
    started = time.perf_counter()
    out = check_output_folder(out, "dataset").resolve()  # a link that leads nowhere: named
    if n_sims <= 0:
        raise DatasetError(f"the number of simulations must be positive, got {n_sims}")
    config, spec = _settled_inputs(config, spec, out, n_sims, progress, log)
    plan = prepare_split(out, spec, split, n_sims, config.sims_per_chunk)
    blocks = plan.blocks()
    if blocks:
        prepare_engine(config.simulation)  # e.g. the CoreNEURON build, once, before the workers
    job = DatasetJob(
        store=str(out),
        split=split,
        cell=config.cell,
        protocol=config.protocol,
        settings=config.simulation,
        seed=config.seed,
    )
    tasks = [
        Task(run_block, (job, start, stop), key=f"simulate-{split}-{start}", size=stop - start)
        for start, stop in blocks
    ]
    results = []
    if tasks and pool is not None:
        results = pool.run(tasks, label=f"simulating {split}", unit="sim", progress=progress)
    elif tasks:
        with simulation_workers(config.cluster) as own:
            results = own.run(tasks, label=f"simulating {split}", unit="sim", progress=progress)
    jobs = {r["slurm_job_id"] for r in results if r.get("slurm_job_id")}
    todo = sum(task.size for task in tasks)
    return SimulateSummary(
        store=out,
        split=split,
        n_sims=n_sims,
        simulated=todo,
        already_done=n_sims - todo,
        output_spikes=sum(sum(r["n_spikes"]) for r in results),
        seconds=time.perf_counter() - started,
        repaired=len(plan.damaged),
        peak_worker_rss_mb=max((r.get("peak_rss_mb", 0.0) for r in results), default=0.0),
        slurm_jobs=tuple(sorted(jobs, key=lambda j: int(j) if j.isdigit() else 0)),
    )
