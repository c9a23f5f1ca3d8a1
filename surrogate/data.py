"""Training windows from a dataset (docs/dataset.md), as the ELM NeuronIO recipe draws them.

Batch i of a run is a pure function of (seed, i): batch_size distinct complete simulations, each
with its own start drawn uniformly after the first 500 ms, a 500 ms window of signed inputs
(+1 excitatory, −1 inhibitory spikes), the spike labels, and the soma target
(min(V, −55 mV) + 67.7 mV)/10. Background loaders therefore never change what a run sees, and a
resumed run continues the same stream. Simulations are read through the dataset contract's reader,
which refuses damaged simulations by name.

Each simulation is read whole once and then held in memory as what training needs: its input
events (≈ 1 % of the time × channel entries are spikes), spike labels and soma target — about
0.4 MB for a 6 s Hay simulation, against 7.7 MB of dense inputs. Reading a window from the store
for every batch instead costs tens of milliseconds (a chunk read per array and window), several
times a fast ELM training step; from memory a window is two binary searches.

Batches are prepared ahead by threads (:func:`prefetch`), not processes: zarr's decompression
releases the GIL, and threads work inside any executor — dask's worker processes, SLURM jobs —
where a process may not start children of its own.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from threading import Lock
from typing import TypeVar

import numpy as np
import torch

from elmpipe.dataset import SKIP_MS, SOMA_CLIP_MV, Dataset, DatasetError

SOMA_BIAS_MV = -67.7
SOMA_SCALE = 0.1  # training units per mV

T = TypeVar("T")


def soma_target(voltage_mv: np.ndarray) -> np.ndarray:
    """The soma training target: clip at −55 mV, subtract −67.7 mV, scale by 1/10."""
    return (np.minimum(voltage_mv, SOMA_CLIP_MV) - SOMA_BIAS_MV) * SOMA_SCALE


def nexus_target(voltage_mv: np.ndarray) -> np.ndarray:
    """The auxiliary nexus target (``nexus_weight``): like the soma's but unclipped, since what
    it teaches is the calcium spike above −55 mV: (V + 67.7 mV)/10, in float32."""
    return (voltage_mv.astype(np.float32) - SOMA_BIAS_MV) / 10.0


def soma_mv(prediction: np.ndarray | torch.Tensor):
    """Back from training units to mV relative to −67.7 mV (i.e. clipped V + 67.7)."""
    return prediction / SOMA_SCALE


def signed_events(windows: list[np.ndarray], sign: np.ndarray) -> torch.Tensor:
    """Boolean input windows (time, C) as one sparse COO tensor (B, T, C) of ±1 events, the
    form the fast ELM projects event by event (surrogate.models.elm.project_inputs) — for
    inputs at hand as dense windows; the training loader cuts its events from the simulations
    it holds (:class:`WindowBatches` with ``events=True``)."""
    stacked = np.stack(windows)
    steps, channels = stacked.shape[1:]
    flat = np.flatnonzero(stacked)  # sorted, so the COO tensor is coalesced as built
    rows, channel = np.divmod(flat, channels)
    batch, time = np.divmod(rows, steps)
    return _event_tensor(batch, time, channel, sign, stacked.shape)


def _event_tensor(batch, time, channel, sign, shape) -> torch.Tensor:
    """A sparse COO tensor of the signed events, given sorted by (batch, time, channel)."""
    indices = np.stack([batch, time, channel]).astype(np.int64, copy=False)
    return torch.sparse_coo_tensor(
        torch.from_numpy(indices),
        torch.from_numpy(sign.astype(np.float32)[channel]),
        shape,
        is_coalesced=True,
        check_invariants=False,  # built sorted and in range here
    )


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor  # (B, T, C) float32 in {−1, 0, 1}; sparse COO with events=True
    spikes: torch.Tensor  # (B, T) float32 0/1
    soma: torch.Tensor  # (B, T) float32, training units
    nexus: torch.Tensor | None = None  # (B, T) float32, nexus_target; only when asked for

    def to(self, device: torch.device) -> Batch:
        nexus = None if self.nexus is None else self.nexus.to(device)
        return Batch(self.inputs.to(device), self.spikes.to(device), self.soma.to(device), nexus)


@dataclass(frozen=True)
class _Simulation:
    """One simulation as training uses it: input events sorted by time, labels, soma target."""

    times: np.ndarray  # (events,) ms
    channels: np.ndarray  # (events,)
    spikes: np.ndarray  # (T,) float32 0/1
    soma: np.ndarray  # (T,) float32, training units
    nexus: np.ndarray | None  # (T,) float32, nexus_target, when the loader asks for it

    @property
    def nbytes(self) -> int:
        arrays = (self.times, self.channels, self.spikes, self.soma, self.nexus)
        return sum(a.nbytes for a in arrays if a is not None)

    def events(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(times − start, channels) of the events in [start, start + length)."""
        lo, hi = np.searchsorted(self.times, [start, start + length])
        return self.times[lo:hi].astype(np.int64) - start, self.channels[lo:hi].astype(np.int64)


class _SimulationCache:
    """Simulations of a split in memory, read on first use; the least recently used go first
    beyond ``max_bytes``. Safe for the loader threads (a simulation read twice at once is read
    twice, with the same result)."""

    def __init__(self, split, max_bytes: int, nexus: bool = False) -> None:
        self.split = split
        self.nexus = nexus
        self.max_bytes = max_bytes
        self.held: OrderedDict[int, _Simulation] = OrderedDict()
        self.held_bytes = 0
        self.lock = Lock()
        self.time_type = np.min_scalar_type(split.n_time)
        self.channel_type = np.min_scalar_type(split.n_channels)

    def __getitem__(self, sim: int) -> _Simulation:
        with self.lock:
            if sim in self.held:
                self.held.move_to_end(sim)
                return self.held[sim]
        inputs, spikes, voltage = self.split.window(sim, 0, self.split.n_time)
        times, channels = np.nonzero(inputs)
        loaded = _Simulation(
            times.astype(self.time_type),
            channels.astype(self.channel_type),
            spikes.astype(np.float32),
            soma_target(voltage.astype(np.float64)).astype(np.float32),
            self._nexus(sim) if self.nexus else None,
        )
        with self.lock:
            if sim not in self.held:  # another thread may have read it meanwhile
                self.held[sim] = loaded
                self.held_bytes += loaded.nbytes
            while self.held_bytes > self.max_bytes and len(self.held) > 1:
                self.held_bytes -= self.held.popitem(last=False)[1].nbytes
        return loaded

    def _nexus(self, sim: int) -> np.ndarray:
        voltage = self.split.read("nexus_v", np.array([sim]))[0]
        if not np.isfinite(voltage).all():
            raise DatasetError(
                f"{self.split}: simulation {sim} has no nexus voltage (nexus_v); an auxiliary "
                "nexus target (nexus_weight) needs it recorded"
            )
        return nexus_target(voltage)


class WindowBatches:
    """Training batch i of a split, for any i (a pure function of the seed and i).

    ``limit`` draws from the first ``limit`` complete simulations only, so a learning curve's
    training sets nest: the set of 16 holds the set of 8. ``events`` delivers the inputs as a
    sparse tensor of ±1 events (:func:`signed_events`), for models that project them event by
    event (the ELM); the values are the same. ``nexus`` adds the nexus target to every batch.
    """

    def __init__(
        self,
        store: str | Path,
        split: str,
        *,
        batch_size: int = 8,
        window: int = 500,
        min_start: int = SKIP_MS,
        seed: int = 0,
        limit: int | None = None,
        events: bool = False,
        nexus: bool = False,
        cache_bytes: int = 2 << 30,
    ) -> None:
        self.events = events
        self.nexus = nexus
        self.split = Dataset(store).split(split)
        self.sign = self.split.channel_sign
        self.cache = _SimulationCache(self.split, cache_bytes, nexus)
        self.sims = self.split.require_intact()
        if limit is not None:
            if limit > len(self.sims):
                raise DatasetError(
                    f"{self.split} has {len(self.sims)} complete simulations; "
                    f"{limit} were asked for (train_simulations)"
                )
            self.sims = self.sims[:limit]  # the first ones: smaller subsets nest in larger
        self.batch_size = batch_size
        self.window = window
        self.min_start = min_start
        self.seed = seed
        self.n_time = self.split.n_time
        self.n_channels = self.split.n_channels
        if len(self.sims) < batch_size:
            raise DatasetError(
                f"{self.split} has {len(self.sims)} complete simulations; a batch needs "
                f"{batch_size} distinct ones (lower --batch-size or simulate more)"
            )
        if self.n_time < min_start + window:
            raise DatasetError(
                f"simulations of {self.n_time} ms are too short for {window} ms windows "
                f"starting after {min_start} ms"
            )

    def __getitem__(self, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, int(index)])
        sims = rng.choice(self.sims, size=self.batch_size, replace=False)
        starts = rng.integers(self.min_start, self.n_time - self.window + 1, self.batch_size)
        held = [self.cache[int(sim)] for sim in sims]
        windows = [(sim, int(start)) for sim, start in zip(held, starts, strict=True)]
        found = [sim.events(start, self.window) for sim, start in windows]
        counts = [len(times) for times, _ in found]
        batch = np.repeat(np.arange(self.batch_size), counts)
        times = np.concatenate([times for times, _ in found])
        channels = np.concatenate([channels for _, channels in found])
        shape = (self.batch_size, self.window, self.n_channels)
        if self.events:
            inputs = _event_tensor(batch, times, channels, self.sign, shape)
        else:
            dense = np.zeros(shape, np.float32)
            dense[batch, times, channels] = self.sign[channels]
            inputs = torch.from_numpy(dense)
        span = [(sim, slice(start, start + self.window)) for sim, start in windows]
        nexus = None
        if self.nexus:
            parts = []
            for sim, cut in span:
                assert sim.nexus is not None  # the cache reads it when the loader asks for it
                parts.append(sim.nexus[cut])
            nexus = torch.from_numpy(np.stack(parts))
        return Batch(
            inputs,
            torch.from_numpy(np.stack([sim.spikes[cut] for sim, cut in span])),
            torch.from_numpy(np.stack([sim.soma[cut] for sim, cut in span])),
            nexus,
        )


def prefetch(make: Callable[[int], T], indices: Iterable[int], workers: int = 0) -> Iterator[T]:
    """``make(i)`` for every index, in order, prepared by ``workers`` threads ahead of use.

    Results do not depend on ``workers`` as long as ``make`` depends only on its argument.
    Stopping early (an exception, Ctrl-C) cancels what was queued and waits only for the few
    calls already running.
    """
    if workers <= 0:
        yield from (make(i) for i in indices)
        return
    pending_indices = iter(indices)
    with ThreadPoolExecutor(workers, thread_name_prefix="elmpipe-batches") as pool:
        queued = deque(pool.submit(make, i) for i in islice(pending_indices, 2 * workers))
        try:
            while queued:
                result = queued.popleft().result()
                for i in islice(pending_indices, 1):
                    queued.append(pool.submit(make, i))
                yield result
        finally:
            for future in queued:
                future.cancel()
