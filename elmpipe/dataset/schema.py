"""The dataset schema: every name, version, layout and time-grid rule of the contract.

docs/dataset.md is its prose; this module is its code, and the only place where the names of
arrays and attributes are spelled out. The writer (:mod:`elmpipe.dataset.writer`) and the reader
(:mod:`elmpipe.dataset.reader`) both take them from here, so the data stage and the fitting stage
cannot drift apart. The definitions that give the arrays their meaning — what counts as an output
spike, which 1 ms bin it is labelled in, which part of a simulation the NeuronIO evaluation
ignores — live here too, because both stages must agree on them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

#: version 2: every chunk carries a CRC-32C checksum and every chunk of a complete simulation is
#: written, even when it equals the fill value (so a missing chunk file means damage)
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
KIND = "elmpipe-neuron-dataset"
SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# -- the time grid and the meaning of the arrays --------------------------------------------------

#: stored series are sampled every millisecond (t = 0, 1, …, T − 1 ms)
STORED_PER_MS = 1
#: output spikes are detected on the soma trace resampled at 8 kHz, as NeuronIO did
DETECTION_PER_MS = 8
#: an output spike is a local maximum of the soma voltage above this
SPIKE_THRESHOLD_MV = -25.0

#: the NeuronIO protocol ignores each simulation's first 500 ms (the initial transient): windows
#: for training start after it, and evaluation and statistics drop it
SKIP_MS = 500
#: simulations kept by the NeuronIO evaluation, by their number of output spikes
KEPT_SPIKE_RANGE = (0, 24)
#: what the Hay cell (NeuronIO's) does under the NeuronIO protocol, 6 s simulations: what
#: `dataset describe` and `simulate` compare a dataset with when its store records no target of
#: its own (stores made before the input calibration existed). Measured on the 24 draws of the
#: calibration's stream (simulations/calibration.py, REFERENCE_DRAW_SPIKES; docs/own-cell.md).
REFERENCE_OUTPUT = {
    "rate_hz": 1.19,
    "spikes_per_simulation": 7.17,
    "share_in_kept_range": 0.917,
    "silent_share": 0.292,
    "duration_ms": 6000,
}
#: root attribute recording a dataset's input calibration (scale, target, how it was found)
CALIBRATION_ATTR = "calibration"
#: the soma voltage is clipped here (spikes removed) for soma metrics and training targets
SOMA_CLIP_MV = -55.0
#: simulations per NeuronIO file: the unit whose soma prediction is z-scored together
SIMS_PER_FILE = 128


def detect_spikes(
    t: np.ndarray, v: np.ndarray, threshold: float = SPIKE_THRESHOLD_MV
) -> np.ndarray:
    """Times of the local maxima above ``threshold`` of a regularly sampled trace ``v(t)``."""
    peak = (v[1:-1] > v[:-2]) & (v[1:-1] > v[2:]) & (v[1:-1] > threshold)
    return t[1:-1][peak]


def spike_labels(spike_times: np.ndarray, n_bins: int) -> np.ndarray:
    """1 ms labels: bin int(t − 0.5) is set for a spike at t ms (NeuronIO's rule)."""
    labels = np.zeros(n_bins, dtype=bool)
    bins = (np.asarray(spike_times, dtype=np.float64) - 0.5).astype(np.int64)
    labels[bins[(bins >= 0) & (bins < n_bins)]] = True
    return labels


# -- layout ---------------------------------------------------------------------------------------

_BINARY = (BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle), Crc32cCodec())
_NUMBERS = (BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.shuffle), Crc32cCodec())
_FLAG = (Crc32cCodec(),)  # one byte per simulation and file, plus its checksum


@dataclass(frozen=True)
class ArrayLayout:
    dims: tuple[str, ...]
    dtype: str
    compressors: tuple[Any, ...]
    fill: Any


#: per-simulation arrays; docs/dataset.md explains each. Stored in shards of ``sims_per_chunk``
#: simulations, whole along the other dimensions (time cut into inner chunks of ≈ 500 ms).
SIM_ARRAYS: dict[str, ArrayLayout] = {
    "inputs": ArrayLayout(("sim", "time", "channel"), "bool", _BINARY, False),
    "soma_v": ArrayLayout(("sim", "time"), "float32", _NUMBERS, np.nan),
    "nexus_v": ArrayLayout(("sim", "time"), "float32", _NUMBERS, np.nan),
    "spikes": ArrayLayout(("sim", "time"), "bool", _BINARY, False),
    "spike_times": ArrayLayout(("sim", "spike"), "float64", _NUMBERS, np.nan),
    "n_spikes": ArrayLayout(("sim",), "int32", _NUMBERS, -1),
    "interval_ms": ArrayLayout(("sim",), "int32", _NUMBERS, -1),
    "smoothing_ms": ArrayLayout(("sim",), "int32", _NUMBERS, -1),
    "attempts": ArrayLayout(("sim",), "int32", _NUMBERS, -1),
    # written last, one chunk per simulation, so it is never torn and never ahead of the data
    "complete": ArrayLayout(("sim",), "bool", _FLAG, False),
    "dend_v": ArrayLayout(("sim", "time", "segment"), "float32", _NUMBERS, np.nan),
}
COMPLETE = "complete"
OPTIONAL_ARRAYS = ("dend_v",)
#: arrays that hold one simulation's results, byte-identical however the dataset was computed
DATA_ARRAYS = tuple(n for n in SIM_ARRAYS if n != COMPLETE and n not in OPTIONAL_ARRAYS)
#: what every split holds (a split lacking one was not fully created)
REQUIRED_ARRAYS = (*DATA_ARRAYS, COMPLETE, "channel_sign", "channel_segment")
#: in version-1 stores, chunks equal to the fill value were not written; these never are
ALWAYS_WRITTEN_V1 = ("inputs", "soma_v", "nexus_v", "n_spikes", "attempts")

#: coordinate arrays of a split: name → dimension (xarray attaches them by name)
COORDINATES = {
    "time": "time",
    "channel": "channel",
    "channel_sign": "channel",
    "channel_segment": "channel",
    "segment": "segment",
}

#: inner chunk length along time (ms): a training window reads a few of these, not a whole run
TIME_CHUNK_MS = 500


def time_chunk(n_time: int, target: int = TIME_CHUNK_MS) -> int:
    """Largest divisor of ``n_time`` not above ``target`` (shards must split evenly), else all."""
    for size in range(min(target, n_time), 0, -1):
        if n_time % size == 0:
            return size if size >= min(100, n_time) else n_time
    return n_time


# -- attributes -----------------------------------------------------------------------------------

EXCITATORY, INHIBITORY = "excitatory", "inhibitory"


def fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that defines a dataset; two runs may share a store only if these are equal."""

    cell: dict[str, Any]  # cell provenance incl. fingerprint and segment table
    channels: dict[str, list]  # {"segment": [...], "kind": ["excitatory", …]}
    protocol: dict[str, Any]
    simulation: dict[str, Any]
    seed: int
    #: how the protocol's input scale was found (provenance, not identity: the scale itself is
    #: in ``protocol``); None for datasets whose inputs are not generated (replays, imports)
    calibration: dict[str, Any] | None = None

    @property
    def n_channels(self) -> int:
        return len(self.channels["segment"])

    @property
    def n_segments(self) -> int:
        return max(self.channels["segment"]) + 1

    @property
    def n_time(self) -> int:
        return round(self.simulation["duration_ms"]) * STORED_PER_MS

    @property
    def spike_capacity(self) -> int:
        """Slots for output spike times per simulation (one every 2 ms at most)."""
        return max(16, self.n_time // 2)

    @property
    def record_dendrites(self) -> bool:
        return bool(self.simulation.get("record_dendrites"))

    def identity(self) -> dict[str, Any]:
        """The parts compared when reopening a store (``mechanisms``: the hash of the NMODL
        sources that simulated it; None where a store does not come from our mechanisms)."""
        return {
            "cell": self.cell["fingerprint"],
            "mechanisms": self.cell.get("mechanisms_sha256"),
            "protocol": self.protocol,
            "simulation": self.simulation,
            "seed": self.seed,
        }


def upgrade_integrator(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings (stored or in a config) from before engines said ``integrator: cvode | fixed``:
    the same runs in today's terms."""
    if "integrator" not in settings or "engine" in settings:
        return settings
    upgraded = {k: v for k, v in settings.items() if k != "integrator"}
    engine = {"cvode": "neuron-cvode", "fixed": "neuron-fixed"}.get(settings["integrator"])
    upgraded["engine"] = engine or settings["integrator"]
    upgraded.setdefault("second_order", None)
    return upgraded


def upgrade_stored_protocol(protocol: dict[str, Any]) -> dict[str, Any]:
    """A store's protocol as today's code records it: generated inputs from before the input
    calibration had NeuronIO's counts, i.e. input scale 1."""
    if protocol.get("kind") == "neuronio" and "input_scale" not in protocol:
        return {**protocol, "input_scale": 1.0}
    return protocol


def upgrade_stored_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A store's simulation settings as today's code records them, so stores written by earlier
    versions can still be completed with the same runs: the integrator's new name, and synapses
    without the t = 0 lock-out setting (it did not exist: no lock-out), and no adaptive step
    (the engines had none) or one without a bound on its fine share."""
    upgraded = upgrade_integrator(settings)
    if "engine" in upgraded and "adaptive" not in upgraded:
        upgraded = {**upgraded, "adaptive": None}
    adaptive = upgraded.get("adaptive")
    if isinstance(adaptive, dict) and "max_fine_share" not in adaptive:
        upgraded = {**upgraded, "adaptive": {**adaptive, "max_fine_share": None}}
    synapses = upgraded.get("synapses")
    if isinstance(synapses, dict) and "t0_lockout" not in synapses:
        upgraded = {**upgraded, "synapses": {**synapses, "t0_lockout": False}}
    return upgraded
