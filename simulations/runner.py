"""Produce the simulations of a dataset: the work one task (one chunk of simulations) does.

A task is a plain function of picklable arguments, so any executor can run it: dask workers,
a local loop, a SLURM job. Each worker process builds its cell once and keeps it. Simulation k
of a split depends only on (seed, split, k), so the bytes written do not depend on which worker
ran it or in which order.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from elmpipe.dataset import Dataset, DatasetError, DatasetSpec, SimulationRecord, write_block
from simulations.cell import Cell, CellSpec
from simulations.inputs import (
    InputLayout,
    NeuronIOProtocol,
    Protocol,
    ReplayProtocol,
    generate_inputs,
    simulation_rng,
)
from simulations.mechanisms import mechanisms_sha256
from simulations.simulator import SimulationResult, SimulationSettings, Simulator
from simulations.synapses import ChannelTable


@dataclass(frozen=True)
class DatasetJob:
    """Everything a worker needs to produce simulations of one split (picklable)."""

    store: str
    split: str
    cell: CellSpec
    protocol: Protocol
    settings: SimulationSettings
    seed: int


class _WorkerState:
    """The one simulator of this process (a NEURON process must hold a single cell: CVode's
    error control spans every section, so another cell would change the results)."""

    key: str | None = None
    simulator: Simulator | None = None
    layout: InputLayout | None = None


def _one_thread_for_numerics() -> None:
    """Keep numpy's and scipy's BLAS to one thread in a simulation worker.

    A worker simulates on one core; OpenBLAS's idle threads otherwise spin after every numpy
    call and take cycles from the simulation — and, with one worker per core, from the others.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _simulator(job: DatasetJob) -> tuple[Simulator, InputLayout]:
    from simulations._neuron import hoc

    key = job.cell.model_dump_json() + job.settings.model_dump_json()
    if _WorkerState.key != key:
        _one_thread_for_numerics()
        _WorkerState.simulator = None  # drop the old cell's sections before building another
        _WorkerState.layout = None
        h = hoc()
        others = sum(1 for _ in h.allsec())
        if others:
            raise DatasetError(
                f"this process already holds {others} NEURON sections of another model; dataset "
                "simulations must run alone in their process (CVode's error control spans every "
                "section, so other cells would change the results)"
            )
        cell = job.cell.build()
        simulator = Simulator(cell, job.settings)
        protocol = job.protocol
        levels: tuple[int, ...] = ()
        if isinstance(protocol, NeuronIOProtocol) and protocol.clustering.probability > 0:
            levels = protocol.clustering.levels
        _WorkerState.layout = InputLayout.from_segment_table(cell.segments, levels)
        _WorkerState.simulator = simulator
        _WorkerState.key = key
    assert _WorkerState.simulator is not None and _WorkerState.layout is not None
    return _WorkerState.simulator, _WorkerState.layout


def release_worker_cell() -> None:
    """Drop this process's simulator and cell (after an in-process run), so that the process
    can build other cells afterwards — NEURON holds one model per process."""
    import gc

    _WorkerState.key = None
    _WorkerState.simulator = None
    _WorkerState.layout = None
    gc.collect()


def dataset_spec(
    cell: Cell, protocol: Protocol, settings: SimulationSettings, seed: int
) -> DatasetSpec:
    return DatasetSpec(
        cell={**cell.provenance(), "mechanisms_sha256": mechanisms_sha256()},
        channels=ChannelTable.for_segments(len(cell.segments)).to_dict(),
        protocol=protocol.model_dump(mode="json"),
        simulation=settings.model_dump(mode="json"),
        seed=int(seed),
    )


def _keep(result: SimulationResult, protocol: NeuronIOProtocol, rng: np.random.Generator) -> bool:
    rules = protocol.rejection
    n = result.n_spikes
    if rules.max_output_spikes is not None and n > rules.max_output_spikes:
        return False
    if n == 0:
        return bool(rng.uniform() < rules.keep_probability_zero_spikes)
    if n > rules.above_spikes:
        return bool(rng.uniform() < rules.keep_probability_above)
    return True


def _record(
    inputs: np.ndarray, result: SimulationResult, n_time: int, **meta: int
) -> SimulationRecord:
    return SimulationRecord(
        inputs=inputs,
        soma_v=result.soma_v,
        nexus_v=result.nexus_v,
        spikes=result.spike_labels(n_time),
        spike_times=result.spike_times,
        dend_v=result.dend_v,
        **meta,
    )


def simulate_index(job: DatasetJob, index: int) -> SimulationRecord:
    """Simulation ``index`` of the job's split (regenerated on rejection, deterministically)."""
    simulator, layout = _simulator(job)
    n_time = job.settings.n_time_bins
    if isinstance(job.protocol, ReplayProtocol):
        source = Dataset(job.protocol.source).split(job.protocol.split).simulation(index)
        inputs = source["inputs"][:n_time]
        result = simulator.run_binary(inputs)
        meta = {
            "interval_ms": int(source["interval_ms"]),
            "smoothing_ms": int(source["smoothing_ms"]),
            "attempts": 1,
        }
        return _record(inputs, result, n_time, **meta)
    protocol = job.protocol
    attempts = protocol.rejection.max_attempts if protocol.rejection.active else 1
    for attempt in range(attempts):
        rng = simulation_rng(job.seed, job.split, index, attempt)
        draw = generate_inputs(protocol, layout, job.settings.duration_ms, rng)
        result = simulator.run_binary(draw.spikes)
        if attempt == attempts - 1 or _keep(result, protocol, rng):
            break
    meta = {
        "interval_ms": draw.interval_ms,
        "smoothing_ms": draw.smoothing_ms,
        "attempts": attempt + 1,
    }
    return _record(draw.spikes, result, n_time, **meta)


def run_block(job: DatasetJob, start: int, stop: int) -> dict[str, Any]:
    """Simulate ``start … stop - 1`` (one storage chunk), write them, mark them complete."""
    began = time.perf_counter()
    records = [simulate_index(job, k) for k in range(start, stop)]
    write_block(job.store, job.split, start, records)
    return {
        "start": start,
        "stop": stop,
        "n_spikes": [int(r.spike_times.size) for r in records],
        "seconds": time.perf_counter() - began,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # set when a SLURM job ran it
    }


def probe_spike_counts(job: DatasetJob, start: int, stop: int) -> list[int]:
    """Output spikes of simulations ``start … stop - 1`` of the job, written nowhere: the input
    calibration's probe (simulations.calibration) runs here, on the workers of any executor."""
    return [int(simulate_index(job, k).spike_times.size) for k in range(start, stop)]
