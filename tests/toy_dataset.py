"""A tiny dataset in our schema from a toy point neuron, fast to make and quick to learn.

80 excitatory and 20 inhibitory inputs drive V = −75 mV + 2 mV · (inputs filtered with τ = 20 ms);
output spikes are drawn with escape noise, P(spike in a 1 ms bin) = 0.1·sigmoid((V + 56 mV)/2 mV)
(a linear–nonlinear–Poisson neuron). Unlike NeuronIO's integrate-and-fire toy, the spike
probability is a monotone function of V, so a freshly initialised model learns it in seconds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from elmpipe.dataset import DatasetSpec, SimulationRecord, prepare_split, write_block

N_EXC, N_INH = 80, 20
N_INPUT = N_EXC + N_INH


def toy_simulation(rng: np.random.Generator, duration: int) -> SimulationRecord:
    rate = rng.uniform(0.002, 0.011)
    inputs = rng.random((duration, N_INPUT)) < rate
    drive = inputs @ np.r_[np.ones(N_EXC), -np.ones(N_INH)]
    kappa = np.exp(-1 / 20.0)
    v = np.empty(duration)
    trace = 0.0
    for t in range(duration):
        trace = kappa * trace + drive[t]
        v[t] = -75.0 + 2.0 * trace
    probability = 0.1 / (1.0 + np.exp(-(v + 56.0) / 2.0))
    labels = rng.random(duration) < probability
    crossings = np.flatnonzero(labels)
    return SimulationRecord(
        inputs=inputs,
        soma_v=v.astype(np.float32),
        nexus_v=v.astype(np.float32),
        spikes=labels,
        spike_times=crossings + 0.5,
        interval_ms=-1,
        smoothing_ms=-1,
        attempts=1,
    )


def toy_geometry(n: int, l_max: float = 1000.0, nexus: float = 600.0) -> dict:
    """A made-up cell record of ``n`` segments, as datasets store it: the first 40 % basal
    (20 … 300 µm from the soma), the rest apical up to ``l_max``; diameters thin with distance."""
    n_basal = int(0.4 * n)
    distance = np.r_[np.linspace(20, 300, n_basal), np.linspace(40, l_max, n - n_basal)]
    return {
        "segment_table": {
            "region": ["basal"] * n_basal + ["apical"] * (n - n_basal),
            "distance": distance.tolist(),
            "diam": (3.0 * np.exp(-distance / 500.0)).tolist(),
        },
        "l_max_um": l_max,
        "nexus": {"distance_um": nexus},
    }


def silenced(record: SimulationRecord) -> SimulationRecord:
    """The same simulation without any output spike (a cell the inputs under-drive)."""
    return replace(record, spikes=np.zeros_like(record.spikes), spike_times=np.zeros(0))


def make_toy_dataset(
    path: Path,
    splits: dict[str, int],
    duration: int = 1200,
    seed: int = 0,
    silent: tuple[str, ...] = (),
    geometry: dict | None = None,
) -> Path:
    """A toy store with ``splits`` (name: simulations); the splits in ``silent`` have no output
    spike. ``geometry``: the cell record of its inputs' places (default :func:`toy_geometry`)."""
    half = N_INPUT // 2
    spec = DatasetSpec(
        cell={"fingerprint": "toy-neuron", **(geometry or toy_geometry(half))},
        channels={
            "segment": [*range(half), *range(half)],
            "kind": ["excitatory"] * N_EXC + ["inhibitory"] * N_INH,
        },
        protocol={"kind": "toy"},
        simulation={"duration_ms": float(duration), "record_dendrites": False},
        seed=seed,
    )
    for split_index, (split, n_sims) in enumerate(splits.items()):
        prepare_split(path, spec, split, n_sims)
        rng = np.random.default_rng([seed, split_index])
        for k in range(n_sims):
            record = toy_simulation(rng, duration)
            write_block(path, split, k, [silenced(record) if split in silent else record])
    return path
