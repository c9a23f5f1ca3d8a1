"""The simulate stage: check everything, then fill a dataset split with simulations in parallel.

All checks run before the first simulation: config values, the cell (built once here to describe
it), the target store (writable, room, same cell/protocol/settings/seed), the replay source. Then
one task per unfinished storage chunk goes to the executor; finished chunks are on disk as soon
as their task ends, so an interrupted run loses only the chunks in flight, and running the same
command again does only what is missing.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipelines.cluster import executor
from pipelines.config import SimulateConfig
from simulations.cell import CellSpec
from simulations.inputs import ReplayProtocol
from simulations.runner import DatasetJob, dataset_spec, run_block
from simulations.simulate import prepare_engine
from simulations.store import Dataset, DatasetError, DatasetSpec, prepare_split


@dataclass
class SimulateSummary:
    store: Path
    split: str
    n_sims: int
    simulated: int
    already_done: int
    output_spikes: int
    seconds: float
    slurm_jobs: tuple[str, ...] = ()  # batch jobs whose workers ran the tasks


def _absolute(spec: CellSpec) -> CellSpec:
    if spec.morphology is None:
        return spec
    return spec.model_copy(update={"morphology": str(Path(spec.morphology).expanduser().resolve())})


def describe_dataset(config: SimulateConfig) -> DatasetSpec:
    """Build the cell here once (then free it) to record what the dataset is made of."""
    cell = config.cell.build()
    try:
        return dataset_spec(cell, config.protocol, config.simulation, config.seed)
    finally:
        del cell
        gc.collect()  # a NEURON process holds one cell at a time (see simulations.runner)


def _check_replay(protocol: ReplayProtocol, spec: DatasetSpec, n_sims: int) -> ReplayProtocol:
    source_path = Path(protocol.source).expanduser().resolve()
    source = Dataset(source_path)
    complete = source.complete(protocol.split)
    if complete.size < n_sims or not complete[:n_sims].all():
        raise DatasetError(
            f"replay source {source_path} split {protocol.split!r} has "
            f"{int(complete[:n_sims].sum())} complete simulations of the {n_sims} asked for"
        )
    inputs = source.group(protocol.split)["inputs"]
    if inputs.shape[2] != spec.n_channels:
        raise DatasetError(
            f"replay source has {inputs.shape[2]} input channels; this cell has {spec.n_channels}"
        )
    if inputs.shape[1] < spec.n_time:
        raise DatasetError(
            f"replay source simulations last {inputs.shape[1]} ms; asked for {spec.n_time} ms"
        )
    return protocol.model_copy(update={"source": str(source_path)})


def simulate(
    config: SimulateConfig, out: str | Path, split: str, n_sims: int, *, progress: bool = True
) -> SimulateSummary:
    """Make sure simulations 0 … n_sims - 1 of ``split`` exist in the store at ``out``."""
    started = time.perf_counter()
    out = Path(out).expanduser().resolve()
    if n_sims <= 0:
        raise DatasetError(f"the number of simulations must be positive, got {n_sims}")
    config = config.model_copy(update={"cell": _absolute(config.cell)})
    spec = describe_dataset(config)
    if isinstance(config.protocol, ReplayProtocol):
        config = config.model_copy(
            update={"protocol": _check_replay(config.protocol, spec, n_sims)}
        )
        spec = dataclasses.replace(spec, protocol=config.protocol.model_dump(mode="json"))
    plan = prepare_split(out, spec, split, n_sims, config.sims_per_chunk)
    if plan.blocks():
        prepare_engine(config.simulation)  # e.g. the CoreNEURON build, once, before the workers
    job = DatasetJob(
        store=str(out),
        split=split,
        cell=config.cell,
        protocol=config.protocol,
        settings=config.simulation,
        seed=config.seed,
    )
    blocks = plan.blocks()
    todo = sum(stop - start for start, stop in blocks)
    spikes = 0
    jobs: set[str] = set()
    if blocks:
        with executor(config.cluster) as pool:
            futures = [
                pool.submit(run_block, job, start, stop, key=f"simulate-{split}-{start}")
                for start, stop in blocks
            ]
            bar = tqdm(total=todo, desc=f"simulating {split}", unit="sim", disable=not progress)
            try:
                for future in pool.as_completed(futures):
                    result = future.result()
                    spikes += sum(result["n_spikes"])
                    if result.get("slurm_job_id"):
                        jobs.add(result["slurm_job_id"])
                    bar.update(result["stop"] - result["start"])
            except BaseException:
                pool.cancel(futures)
                raise
            finally:
                bar.close()
    return SimulateSummary(
        store=out,
        split=split,
        n_sims=n_sims,
        simulated=todo,
        already_done=n_sims - todo,
        output_spikes=spikes,
        seconds=time.perf_counter() - started,
        slurm_jobs=tuple(sorted(jobs, key=lambda j: int(j) if j.isdigit() else 0)),
    )
