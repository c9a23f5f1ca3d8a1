"""Writing the dataset: create or reopen a split, then write simulations chunk by chunk.

Everything is checked before anything is written (split name, count, target writable with room,
an existing store made with the same cell, protocol, settings and seed). A new store is built in a
hidden folder beside the target and renamed into place, so a refused or failed creation never
leaves a half-made store behind. Workers write disjoint chunks and mark each simulation complete
only after all of its data are written, so a killed run never leaves a half-written simulation
that looks whole; damaged simulations (elmpipe.dataset.integrity) are planned again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from elmpipe.dataset.consistency import content_problems, layout_problems, read_completion_flags
from elmpipe.dataset.integrity import damaged_simulations
from elmpipe.dataset.reader import (
    layout_error,
    list_splits,
    missing_arrays,
    open_root,
    root_attribute_problems,
    schema_version,
)
from elmpipe.dataset.schema import (
    CALIBRATION_ATTR,
    COMPLETE,
    COORDINATES,
    EXCITATORY,
    KIND,
    SCHEMA_VERSION,
    SIM_ARRAYS,
    SPLIT_NAME,
    DatasetSpec,
    time_chunk,
    upgrade_stored_protocol,
    upgrade_stored_settings,
)
from elmpipe.errors import DatasetError, OutputPathError
from elmpipe.outputs import check_output_folder

#: every chunk is written, even one equal to the fill value, so a missing file means damage
_WRITE_ALL_CHUNKS = {"array.write_empty_chunks": True}


def software_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for package in ("elmpipe", "neuron", "numpy", "zarr", "dask"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def estimated_bytes_per_simulation(spec: DatasetSpec) -> int:
    """A generous estimate (compressed) used for the free-space check."""
    inputs = spec.n_time * spec.n_channels // 40  # ≈ 1 % ones, bit-shuffled
    traces = spec.n_time * 4 * 2
    dend = spec.n_time * spec.n_segments * 4 if spec.record_dendrites else 0
    return inputs + traces + dend + 16_384


def _check_room(path: Path, needed_bytes: int) -> None:
    """Fail before any simulation if the target cannot take the data."""
    folder = check_output_folder(path, "dataset")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed_bytes > free:
        raise OutputPathError(
            f"not enough space in {existing}: about {needed_bytes / 1e6:.0f} MB needed, "
            f"{free / 1e6:.0f} MB free"
        )


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    if old != new:
        return [f"{prefix.rstrip('.')}: store has {old!r}, requested {new!r}"]
    return []


def _check_compatible(path: Path, root: zarr.Group, spec: DatasetSpec) -> None:
    attrs = root.attrs
    requested = spec.identity()
    stored = {
        "cell": attrs["cell"].get("fingerprint"),
        # stores from before the mechanisms were recorded cannot say: taken as the same
        "mechanisms": attrs["cell"].get("mechanisms_sha256", requested["mechanisms"]),
        "protocol": upgrade_stored_protocol(dict(attrs["protocol"])),
        "simulation": upgrade_stored_settings(dict(attrs["simulation"])),
        "seed": attrs["seed"],
    }
    differences = _diff(json.loads(json.dumps(stored)), json.loads(json.dumps(requested)))
    if differences:
        made_by = attrs.get("versions", {}).get("elmpipe")
        hint = (
            "; the mechanisms (simulations/mechanisms/*.mod) changed since the store was started: "
            f"continue it with the elmpipe that made it ({made_by})"
            if stored["mechanisms"] != requested["mechanisms"]
            else ""
        )
        if stored["cell"] != requested["cell"]:
            differences.insert(
                0, f"cell: store has {_cell_name(attrs['cell'])}, requested {_cell_name(spec.cell)}"
            )
        raise DatasetError(
            f"{path} was made with a different cell, mechanisms, protocol, settings or seed; "
            f"refusing to mix them (use another --out, or the original settings){hint}:\n  "
            + "\n  ".join(differences[:8])
        )


def _cell_name(cell: dict[str, Any]) -> str:
    """A cell as people know it: its template model, or its morphology file."""
    model = cell.get("template")
    if model:
        args = "".join(f" {a}" for a in model.get("args", []))
        return f"template {model.get('name')} of {model.get('template')}{args}"
    return f"morphology {cell.get('morphology')}"


def _write_root_attributes(root: zarr.Group, spec: DatasetSpec) -> None:
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
    if spec.calibration is not None:
        root.attrs[CALIBRATION_ATTR] = spec.calibration


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
    for name, layout in SIM_ARRAYS.items():
        if name == "dend_v" and not spec.record_dendrites:
            continue
        dims = layout.dims
        first = 1 if name == COMPLETE else per_chunk
        shard = (first, *(sizes[d] for d in dims[1:]))
        chunking: dict[str, Any] = {"chunks": shard}
        if "time" in dims:
            # one shard (file) per storage chunk of simulations, read in pieces of ≈ 500 ms
            inner = tuple(
                1 if d == "sim" else time_chunk(sizes[d]) if d == "time" else sizes[d] for d in dims
            )
            chunking = {"shards": shard, "chunks": inner}
        group.create_array(
            name,
            shape=tuple(sizes[d] for d in dims),
            dtype=layout.dtype,
            dimension_names=dims,
            compressors=layout.compressors,
            fill_value=layout.fill,
            **chunking,
        )
    # coordinates (xarray reads an array named like a dimension as its coordinate)
    kinds = np.array(spec.channels["kind"])
    coords: dict[str, np.ndarray] = {
        "time": np.arange(spec.n_time, dtype=np.float32),
        "channel": np.arange(spec.n_channels, dtype=np.int32),
        "channel_sign": np.where(kinds == EXCITATORY, 1, -1).astype(np.int8),
        "channel_segment": np.array(spec.channels["segment"], dtype=np.int32),
    }
    if spec.record_dendrites:
        coords["segment"] = np.arange(spec.n_segments, dtype=np.int32)
    for name, values in coords.items():
        group.create_array(
            name,
            data=values,
            chunks=values.shape,
            dimension_names=(COORDINATES[name],),
            compressors=SIM_ARRAYS["soma_v"].compressors,
        )
    # CF-style hint so xarray attaches the channel descriptions to the inputs as coordinates
    group["inputs"].attrs["coordinates"] = "channel_sign channel_segment"
    return group


def _grow_split(group: zarr.Group, n_sims: int) -> None:
    for _name, array in group.arrays():
        dims = array.metadata.dimension_names
        if dims and dims[0] == "sim" and array.shape[0] < n_sims:
            array.resize((n_sims, *array.shape[1:]))


def _create_store(path: Path, spec: DatasetSpec, split: str, n_sims: int, per_chunk: int) -> None:
    """Build the new store in a hidden folder beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.creating-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zarr.config.set(_WRITE_ALL_CHUNKS):
            root = zarr.open_group(str(partial), mode="w-", zarr_format=3)
            _write_root_attributes(root, spec)
            _create_split(root, spec, split, n_sims, per_chunk)
        if path.is_dir():
            path.rmdir()  # an empty folder the user made for it
        partial.rename(path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _remove_unfinished_split(path: Path, root: zarr.Group, split: str) -> None:
    """A split whose creation was cut short holds no finished simulation: make it again."""
    group = root[split]
    if COMPLETE in group and np.asarray(group[COMPLETE][:]).any():
        raise DatasetError(
            f"{path} [{split}] lacks {', '.join(missing_arrays(group))} but holds finished "
            "simulations; it is damaged beyond repair here (move it aside and simulate anew)"
        )
    shutil.rmtree(path / split)


@dataclass(frozen=True)
class SplitPlan:
    """What remains to be done in a split: simulate ``todo``, in blocks of whole chunks."""

    todo: np.ndarray
    damaged: dict[int, str]
    n_sims: int
    sims_per_chunk: int

    def blocks(self) -> list[tuple[int, int]]:
        """(start, stop) of each chunk that still has unfinished simulations."""
        k = self.sims_per_chunk
        starts = sorted({int(i) // k * k for i in self.todo})
        return [(s, min(s + k, self.n_sims)) for s in starts]


def prepare_split(
    path: str | Path, spec: DatasetSpec, split: str, n_sims: int, sims_per_chunk: int = 1
) -> SplitPlan:
    """Create or reopen ``split`` with room for ``n_sims``; return what is still to simulate.

    Everything is checked before anything is written. Existing simulations are never modified
    here; damaged ones (missing or torn chunk files) are planned again with the unfinished ones.
    """
    path = Path(path).expanduser().absolute()
    if not SPLIT_NAME.match(split):
        raise DatasetError(f"invalid split name {split!r} (letters, digits, '_', '-', '.')")
    if n_sims <= 0:
        raise DatasetError(f"the number of simulations must be positive, got {n_sims}")
    if sims_per_chunk <= 0:
        raise DatasetError("sims_per_chunk must be positive")
    if spec.n_time <= 0:
        raise DatasetError("simulations must last at least 1 ms")
    with _exclusive(path):
        return _prepare_locked(path, spec, split, n_sims, sims_per_chunk)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One process at a time creates, checks or grows the stores of a folder. Two `simulate`
    runs started together on one store otherwise raced: both built it and one failed to rename
    its copy into place, or one removed the split the other was still creating as unfinished.
    (Simulating itself needs no lock: runs write disjoint chunks of their own simulations.)"""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _prepare_locked(
    path: Path, spec: DatasetSpec, split: str, n_sims: int, sims_per_chunk: int
) -> SplitPlan:
    exists = (path / "zarr.json").exists()
    if path.exists() and not exists:
        if not path.is_dir():
            raise OutputPathError(f"{path} exists and is a file, not a dataset folder")
        if any(path.iterdir()):
            raise OutputPathError(
                f"{path} exists and is not a Zarr dataset; refusing to write into it"
            )
    have = 0
    if exists:
        root = open_root(path, mode="r+")
        if problems := root_attribute_problems(dict(root.attrs)):
            raise DatasetError(
                f"{path} has damaged dataset attributes ({path / 'zarr.json'}): "
                + "; ".join(problems)
                + "; refusing to add to it: move it aside and make the dataset again"
            )
        _check_compatible(path, root, spec)
        present = list_splits(root, path)
        if split in present and missing_arrays(root[split]):
            _remove_unfinished_split(path, root, split)
            present.remove(split)
        if split in present and (problems := layout_problems(root[split])):
            raise DatasetError(layout_error(f"{path} [{split}]", problems))
        have = root[split][COMPLETE].shape[0] if split in present else 0
    _check_room(path, max(0, n_sims - have) * estimated_bytes_per_simulation(spec))
    if not exists:
        _create_store(path, spec, split, n_sims, sims_per_chunk)
        root = open_root(path, mode="r+")
    elif split not in present:
        try:
            with zarr.config.set(_WRITE_ALL_CHUNKS):
                _create_split(root, spec, split, n_sims, sims_per_chunk)
        except BaseException:
            shutil.rmtree(path / split, ignore_errors=True)  # no half-made split is left
            raise
    else:
        _grow_split(root[split], n_sims)
    group = root[split]
    per_chunk = group.attrs.get("sims_per_chunk")
    if not isinstance(per_chunk, int) or isinstance(per_chunk, bool) or per_chunk <= 0:
        raise DatasetError(
            f"{path} [{split}]: its attribute sims_per_chunk is {per_chunk!r}, not a positive "
            f"integer ({path / split / 'zarr.json'} was edited or damaged): move the store aside "
            "and make the dataset again"
        )
    todo, damaged = _unfinished(path, group, n_sims, schema_version(root, path))
    return SplitPlan(todo, damaged, n_sims, per_chunk)


def _unfinished(
    path: Path, group: zarr.Group, n_sims: int, version: int
) -> tuple[np.ndarray, dict[int, str]]:
    """Simulations to (re)compute: not marked complete, or marked but not whole — a mark that
    cannot be read, a chunk file missing or torn, a chunk that fails its checksum, outputs that
    disagree with each other. Every chunk of every complete simulation is read: reading is far
    cheaper than simulating, and a resumed run is what users run to repair a store."""
    complete, unreadable = read_completion_flags(group, n_sims)
    damaged = {sim: "its completion mark cannot be read" for sim in unreadable}
    candidates = np.flatnonzero(complete)
    damaged.update(damaged_simulations(path, group, candidates, version))
    candidates = np.setdiff1d(candidates, list(damaged))
    damaged.update(content_problems(group, candidates, with_inputs=True))
    todo = np.flatnonzero(~complete)
    if damaged:
        todo = np.union1d(todo, np.fromiter(damaged, dtype=np.int64))
    return todo, dict(sorted(damaged.items()))


# -- writing --------------------------------------------------------------------------------------


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


def _remove_old_chunks(path: Path, group: zarr.Group, start: int) -> None:
    """Delete the files of the chunk starting at ``start`` before it is rewritten whole.

    zarr reads a shard's old index before writing into it; a damaged shard would make the rewrite
    that repairs it fail, and nothing of the old chunk is kept anyway.
    """
    for name, array in group.arrays():
        if name == COMPLETE or not array.metadata.dimension_names or name not in SIM_ARRAYS:
            continue
        per_file = array.metadata.chunk_grid.chunk_shape
        key = array.metadata.encode_chunk_key((start // per_file[0], *(0,) * (len(per_file) - 1)))
        target = path / array.path / key
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)  # a folder where the chunk file belongs
        else:
            target.unlink(missing_ok=True)


def write_block(path: str | Path, split: str, start: int, records: list[SimulationRecord]) -> None:
    """Write simulations ``start … start + len(records) - 1`` (one chunk), then mark them done."""
    with zarr.config.set(_WRITE_ALL_CHUNKS):
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)[split]
        stop = start + len(records)
        # a chunk is rewritten whole: its simulations stop counting as done until it is written
        # (unread: a damaged mark must not stop its own repair)
        group[COMPLETE][start:stop] = False
        _remove_old_chunks(Path(path), group, start)
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
        if "dend_v" in group:  # a store that records dendrites has them from every simulation
            dendrites = cast("list[np.ndarray]", [r.dend_v for r in records])
            group["dend_v"][start:stop] = np.stack(dendrites)
        for index in range(start, stop):  # last: only now do these simulations count as done
            group[COMPLETE][index] = True
