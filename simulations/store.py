"""The Zarr dataset: the contract between the data stage and everything after it.

docs/dataset.md is the reference for the layout; this module creates it, checks that an existing
store was made with the same cell, protocol and settings, writes simulations chunk by chunk, and
reads it back. Workers write disjoint chunks and mark each simulation complete only after all of
its data are written, so a killed run never leaves a half-written simulation that looks whole.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

SCHEMA_VERSION = 1
KIND = "elmpipe-neuron-dataset"
SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: per-simulation arrays that must be byte-identical however the dataset was computed
DATA_ARRAYS = (
    "inputs",
    "soma_v",
    "nexus_v",
    "spikes",
    "spike_times",
    "n_spikes",
    "interval_ms",
    "smoothing_ms",
    "attempts",
)

_BINARY = BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle)
_FLOATS = BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.shuffle)


class DatasetError(ValueError):
    """A dataset is missing, corrupt, or incompatible with what was asked of it."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that defines a dataset; two runs may share a store only if these are equal."""

    cell: dict[str, Any]  # Cell description incl. fingerprint and segment table
    channels: dict[str, list]  # ChannelTable.to_dict()
    protocol: dict[str, Any]
    simulation: dict[str, Any]
    seed: int

    @property
    def n_channels(self) -> int:
        return len(self.channels["segment"])

    @property
    def n_segments(self) -> int:
        return max(self.channels["segment"]) + 1

    @property
    def n_time(self) -> int:
        return round(self.simulation["duration_ms"])

    @property
    def spike_capacity(self) -> int:
        """Slots for output spike times per simulation (one every 2 ms at most)."""
        return max(16, self.n_time // 2)

    def identity(self) -> dict[str, Any]:
        """The parts compared when reopening a store."""
        return {
            "cell": self.cell["fingerprint"],
            "protocol": self.protocol,
            "simulation": self.simulation,
            "seed": self.seed,
        }


def fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def software_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for package in ("elmpipe", "neuron", "numpy", "zarr", "dask"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


# -- opening and validation ---------------------------------------------------------------------


def open_root(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a dataset's root group, with a clear error when it is not one of ours."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    try:
        root = zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as exc:  # zarr raises several types for unreadable metadata
        raise DatasetError(f"{path} is not a readable Zarr v3 dataset: {exc}") from exc
    meta = root.attrs.get("elmpipe")
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise DatasetError(
            f"{path} is a Zarr store but not an elmpipe dataset (no 'elmpipe' attrs)"
        )
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(
            f"{path} has schema version {meta.get('schema_version')}; this elmpipe reads "
            f"version {SCHEMA_VERSION}"
        )
    return root


def _check_writable(path: Path, needed_bytes: int) -> None:
    """Fail before any simulation if the target cannot take the data."""
    parent = path if path.exists() else path.parent
    if not parent.exists():
        raise DatasetError(f"cannot create {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise DatasetError(f"cannot create {path}: {parent} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".elmpipe-write-test-"):
            pass
    except OSError as exc:
        reason = "read-only" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else str(exc)
        raise DatasetError(f"cannot write to {parent} ({reason})") from exc
    free = shutil.disk_usage(parent).free
    if needed_bytes > free:
        raise DatasetError(
            f"not enough space in {parent}: about {needed_bytes / 1e6:.0f} MB needed, "
            f"{free / 1e6:.0f} MB free"
        )


def estimated_bytes_per_simulation(spec: DatasetSpec, record_dendrites: bool) -> int:
    """A generous estimate (compressed) used for the free-space check."""
    inputs = spec.n_time * spec.n_channels // 40  # ≈ 1 % ones, bit-shuffled
    traces = spec.n_time * 4 * 2
    dend = spec.n_time * spec.n_segments * 4 if record_dendrites else 0
    return inputs + traces + dend + 16_384


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    if old != new:
        return [f"{prefix.rstrip('.')}: store has {old!r}, requested {new!r}"]
    return []


def _create_root(path: Path, spec: DatasetSpec) -> zarr.Group:
    root = zarr.open_group(str(path), mode="w-", zarr_format=3)
    root.attrs.update(
        {
            "elmpipe": {"kind": KIND, "schema_version": SCHEMA_VERSION},
            "cell": spec.cell,
            "channels": spec.channels,
            "protocol": spec.protocol,
            "simulation": spec.simulation,
            "seed": spec.seed,
            "versions": software_versions(),
        }
    )
    return root


def upgrade_simulation_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings written before engines existed (``integrator: cvode | fixed``) in today's terms:
    the same runs, so such stores can still be completed."""
    if "integrator" not in settings or "engine" in settings:
        return settings
    upgraded = {k: v for k, v in settings.items() if k != "integrator"}
    engine = {"cvode": "neuron-cvode", "fixed": "neuron-fixed"}.get(settings["integrator"])
    upgraded["engine"] = engine or settings["integrator"]
    upgraded.setdefault("second_order", None)
    return upgraded


def _check_compatible(path: Path, root: zarr.Group, spec: DatasetSpec) -> None:
    stored = {
        "cell": root.attrs["cell"].get("fingerprint"),
        "protocol": root.attrs["protocol"],
        "simulation": upgrade_simulation_settings(dict(root.attrs["simulation"])),
        "seed": root.attrs["seed"],
    }
    differences = _diff(json.loads(json.dumps(stored)), json.loads(json.dumps(spec.identity())))
    if differences:
        raise DatasetError(
            f"{path} was made with a different cell, protocol, settings or seed; refusing to mix "
            "them (use another --out, or the original settings):\n  " + "\n  ".join(differences[:8])
        )


# -- creating splits ----------------------------------------------------------------------------


#: per-simulation arrays: name → (dimensions, dtype, codec, fill value). docs/dataset.md explains
#: each; every one is chunked along "sim" by the split's sims_per_chunk and whole along the rest.
SIM_ARRAYS: dict[str, tuple[tuple[str, ...], str, Any, Any]] = {
    "inputs": (("sim", "time", "channel"), "bool", _BINARY, False),
    "soma_v": (("sim", "time"), "float32", _FLOATS, np.nan),
    "nexus_v": (("sim", "time"), "float32", _FLOATS, np.nan),
    "spikes": (("sim", "time"), "bool", _BINARY, False),
    "spike_times": (("sim", "spike"), "float64", _FLOATS, np.nan),
    "n_spikes": (("sim",), "int32", _FLOATS, -1),
    "interval_ms": (("sim",), "int32", _FLOATS, -1),
    "smoothing_ms": (("sim",), "int32", _FLOATS, -1),
    "attempts": (("sim",), "int32", _FLOATS, -1),
    # one uncompressed byte per simulation and chunk: written last, so it is never torn
    "complete": (("sim",), "bool", None, False),
    "dend_v": (("sim", "time", "segment"), "float32", _FLOATS, np.nan),
}


#: inner chunk length along time (ms): a training window reads a few of these, not a whole run
TIME_CHUNK_MS = 500


def time_chunk(n_time: int, target: int = TIME_CHUNK_MS) -> int:
    """Largest divisor of ``n_time`` not above ``target`` (shards must split evenly), else all."""
    for size in range(min(target, n_time), 0, -1):
        if n_time % size == 0:
            return size if size >= min(100, n_time) else n_time
    return n_time


def _create_split(root: zarr.Group, spec: DatasetSpec, split: str, n_sims: int, per_chunk: int):
    group = root.create_group(split)
    group.attrs.update({"split": split, "sims_per_chunk": per_chunk})
    sizes = {
        "sim": n_sims,
        "time": spec.n_time,
        "channel": spec.n_channels,
        "spike": spec.spike_capacity,
        "segment": spec.n_segments,
    }
    record_dendrites = bool(spec.simulation.get("record_dendrites"))
    for name, (dims, dtype, codec, fill) in SIM_ARRAYS.items():
        if name == "dend_v" and not record_dendrites:
            continue
        first = 1 if name == "complete" else per_chunk
        shard = (first, *(sizes[d] for d in dims[1:]))
        layout: dict[str, Any] = {"chunks": shard}
        if "time" in dims:
            # one shard (file) per storage chunk of simulations, read in pieces of ≈ 500 ms
            inner = tuple(
                1 if d == "sim" else time_chunk(sizes[d]) if d == "time" else sizes[d] for d in dims
            )
            layout = {"shards": shard, "chunks": inner}
        group.create_array(
            name,
            shape=tuple(sizes[d] for d in dims),
            dtype=dtype,
            dimension_names=dims,
            compressors=codec,
            fill_value=fill,
            **layout,
        )
    # coordinates (xarray reads an array named like a dimension as its coordinate)
    kinds = np.array(spec.channels["kind"])
    coords = {
        "time": (np.arange(spec.n_time, dtype=np.float32), "time"),
        "channel": (np.arange(spec.n_channels, dtype=np.int32), "channel"),
        "channel_sign": (np.where(kinds == "excitatory", 1, -1).astype(np.int8), "channel"),
        "channel_segment": (np.array(spec.channels["segment"], dtype=np.int32), "channel"),
    }
    if record_dendrites:
        coords["segment"] = (np.arange(spec.n_segments, dtype=np.int32), "segment")
    for name, (values, dim) in coords.items():
        group.create_array(
            name, data=values, chunks=values.shape, dimension_names=(dim,), compressors=_FLOATS
        )
    # CF-style hint so xarray attaches the channel descriptions to the inputs as coordinates
    group["inputs"].attrs["coordinates"] = "channel_sign channel_segment"
    return group


def _grow_split(group: zarr.Group, n_sims: int) -> None:
    for _name, array in group.arrays():
        dims = array.metadata.dimension_names
        if dims and dims[0] == "sim" and array.shape[0] < n_sims:
            array.resize((n_sims, *array.shape[1:]))


@dataclass(frozen=True)
class SplitPlan:
    """What remains to be done in a split: simulate ``todo``, in blocks of whole chunks."""

    todo: np.ndarray
    sims_per_chunk: int
    n_sims: int

    def blocks(self) -> list[tuple[int, int]]:
        """(start, stop) of each chunk that still has unfinished simulations."""
        k = self.sims_per_chunk
        starts = sorted({int(i) // k * k for i in self.todo})
        return [(s, min(s + k, self.n_sims)) for s in starts]


def prepare_split(
    path: str | Path, spec: DatasetSpec, split: str, n_sims: int, sims_per_chunk: int = 1
) -> SplitPlan:
    """Create or reopen ``split`` with room for ``n_sims``; return what is still to simulate.

    Everything is checked before anything is written: the split name, the count, that the target
    is writable and has room, and that an existing store holds the same cell, protocol, settings
    and seed. Existing simulations are never modified here.
    """
    path = Path(path)
    if not SPLIT_NAME.match(split):
        raise DatasetError(f"invalid split name {split!r} (letters, digits, '_', '-', '.')")
    if n_sims <= 0:
        raise DatasetError(f"the number of simulations must be positive, got {n_sims}")
    if sims_per_chunk <= 0:
        raise DatasetError("sims_per_chunk must be positive")
    record_dendrites = bool(spec.simulation.get("record_dendrites"))
    exists = (path / "zarr.json").exists()
    if path.exists() and not exists:
        if path.is_dir() and any(path.iterdir()):
            raise DatasetError(
                f"{path} exists and is not a Zarr dataset; refusing to write into it"
            )
        if not path.is_dir():
            raise DatasetError(f"{path} exists and is a file, not a dataset folder")
    if exists:
        root = open_root(path, mode="r+")
        _check_compatible(path, root, spec)
        have = root[split]["complete"].shape[0] if split in root else 0
    else:
        have = 0
    needed = max(0, n_sims - have) * estimated_bytes_per_simulation(spec, record_dendrites)
    _check_writable(path, needed)
    if not exists:
        root = _create_root(path, spec)
    if split not in root:
        _create_split(root, spec, split, n_sims, sims_per_chunk)
    else:
        _grow_split(root[split], n_sims)
    group = root[split]
    complete = group["complete"][:n_sims]
    return SplitPlan(np.flatnonzero(~complete), int(group.attrs["sims_per_chunk"]), n_sims)


# -- writing ------------------------------------------------------------------------------------


@dataclass
class SimulationRecord:
    """What one finished simulation contributes to the store."""

    inputs: np.ndarray  # (time, channel) bool
    soma_v: np.ndarray
    nexus_v: np.ndarray
    spikes: np.ndarray  # (time,) bool labels
    spike_times: np.ndarray  # (n,)
    interval_ms: int
    smoothing_ms: int
    attempts: int
    dend_v: np.ndarray | None = None


def write_block(path: str | Path, split: str, start: int, records: list[SimulationRecord]) -> None:
    """Write simulations ``start … start + len(records) - 1`` (one chunk), then mark them done."""
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)[split]
    stop = start + len(records)
    # a chunk is rewritten whole: its simulations stop counting as done until it is written again
    if group["complete"][start:stop].any():
        group["complete"][start:stop] = False
    cap = group["spike_times"].shape[1]
    times = np.full((len(records), cap), np.nan)
    for i, rec in enumerate(records):
        if rec.spike_times.size > cap:
            raise DatasetError(
                f"simulation {start + i} fired {rec.spike_times.size} spikes (> {cap})"
            )
        times[i, : rec.spike_times.size] = rec.spike_times
    group["inputs"][start:stop] = np.stack([r.inputs for r in records])
    group["soma_v"][start:stop] = np.stack([r.soma_v for r in records])
    group["nexus_v"][start:stop] = np.stack([r.nexus_v for r in records])
    group["spikes"][start:stop] = np.stack([r.spikes for r in records])
    group["spike_times"][start:stop] = times
    group["n_spikes"][start:stop] = [r.spike_times.size for r in records]
    group["interval_ms"][start:stop] = [r.interval_ms for r in records]
    group["smoothing_ms"][start:stop] = [r.smoothing_ms for r in records]
    group["attempts"][start:stop] = [r.attempts for r in records]
    if "dend_v" in group:
        group["dend_v"][start:stop] = np.stack([r.dend_v for r in records])
    for index in range(start, stop):  # last: only now do these simulations count as done
        group["complete"][index] = True


# -- reading ------------------------------------------------------------------------------------


class Dataset:
    """Read access to a finished or partial dataset."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.root = open_root(self.path)
        self.attrs = dict(self.root.attrs)

    @property
    def splits(self) -> list[str]:
        return sorted(name for name, _ in self.root.groups())

    def group(self, split: str) -> zarr.Group:
        if split not in self.splits:
            raise DatasetError(
                f"{self.path} has no split {split!r} (splits: {', '.join(self.splits) or 'none'})"
            )
        return self.root[split]

    def complete(self, split: str) -> np.ndarray:
        return self.group(split)["complete"][:]

    def simulation(self, split: str, index: int) -> dict[str, np.ndarray]:
        """All stored arrays of one simulation (spike times without padding)."""
        group = self.group(split)
        out = {name: group[name][index] for name in DATA_ARRAYS}
        out["spike_times"] = out["spike_times"][: out["n_spikes"]]
        if "dend_v" in group:
            out["dend_v"] = group["dend_v"][index]
        return out
