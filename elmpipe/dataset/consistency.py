"""Do a split's arrays agree with the schema, and each simulation's arrays with each other?

Checksums (elmpipe.dataset.integrity) catch bytes changed inside a chunk; they cannot catch a
store whose metadata was edited (an array's shape or dtype) or whose values are wrong with valid
checksums (an ``n_spikes`` that disagrees with the spike times, a NaN written into a voltage).
Either would otherwise be read as data: statistics of half a simulation, a simulation silently
dropped from an evaluation, NaN metrics with exit 0. Two checks close that:

- :func:`layout_problems` — metadata only, run whenever a split is opened: every array has the
  schema's dtype and the split's common sizes (simulations, time, channels). A store that fails
  it cannot be repaired by simulating again (the writer would write into the wrong layout), so
  it is refused, naming the array.
- :func:`content_problems` — reads the simulations' outputs (not their inputs, the bulk of the
  data) and checks that they agree: spike count, spike times, spike labels, finite voltages.
  A simulation that fails it is *damaged*, like one with a missing chunk: readers refuse it,
  naming it, and the command that made it recomputes it. ``with_inputs`` also reads every other
  array, so that the writer finds chunks that fail their checksums before it calls a split done.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import zarr

from elmpipe.dataset.schema import COMPLETE, SIM_ARRAYS, spike_labels

#: the arrays :func:`content_problems` reads by default (small next to ``inputs``)
OUTPUT_ARRAYS = ("n_spikes", "spike_times", "spikes", "soma_v", "nexus_v")
#: read failures of zarr and its codecs (checksum mismatch, undecodable bytes, torn files)
READ_FAILURES = (ValueError, RuntimeError, OSError, TypeError, IndexError)


def layout_problems(group: zarr.Group) -> list[str]:
    """What in the split's array metadata disagrees with the schema or with itself."""
    arrays = dict(group.arrays())
    problems = []
    sizes: dict[str, tuple[int, str]] = {}  # dimension → (size, the array that set it)
    # ``complete`` first: it sets the number of simulations the others must have
    for name in (COMPLETE, *(n for n in SIM_ARRAYS if n != COMPLETE)):
        if name not in arrays:
            continue
        array = arrays[name]
        layout = SIM_ARRAYS[name]
        if str(array.dtype) != layout.dtype:
            problems.append(f"{name} is {array.dtype}, the schema's is {layout.dtype}")
        if len(array.shape) != len(layout.dims):
            problems.append(f"{name} has {len(array.shape)} dimensions, not {len(layout.dims)}")
            continue
        for dim, size in zip(layout.dims, array.shape, strict=True):
            if dim == "spike":
                continue  # one array has it
            known = sizes.setdefault(dim, (int(size), name))
            if known[0] != size:
                problems.append(f"{name} has {size} along {dim}, {known[1]} {known[0]}")
    channels = sizes.get("channel", (None, ""))[0]
    for name in ("channel_sign", "channel_segment"):
        if name in arrays and channels is not None and arrays[name].shape != (channels,):
            problems.append(f"inputs has {channels} channels, {name} {arrays[name].shape}")
    return problems


def _blocks(sims: np.ndarray, per_file: int) -> Iterator[np.ndarray]:
    """``sims`` grouped by the shard file holding them (each file read once)."""
    for file_index in np.unique(sims // per_file):
        yield sims[sims // per_file == file_index]


def _read(group: zarr.Group, name: str, sims: np.ndarray) -> np.ndarray:
    array = group[name]
    rest = (slice(None),) * (array.ndim - 1)
    return np.asarray(array.get_orthogonal_selection((sims, *rest)))


def _disagreement(values: dict[str, np.ndarray], i: int, n_time: int) -> str:
    """Why simulation ``i`` of a block read into ``values`` is not self-consistent ('' if it is)."""
    count = int(values["n_spikes"][i])
    times = values["spike_times"][i]
    stored = int(np.sum(~np.isnan(times)))
    if count != stored:
        return f"n_spikes is {count} but spike_times holds {stored}"
    kept = times[:count]
    if np.isnan(kept).any():
        return "spike_times has gaps (missing values among the first n_spikes)"
    if not (np.isfinite(kept).all() and (kept >= 0).all() and (kept <= n_time).all()):
        return f"spike_times holds values outside 0 … {n_time} ms (or not numbers)"
    if np.any(np.diff(kept) < 0):
        return "spike_times are not in order"
    if not np.array_equal(values["spikes"][i], spike_labels(kept, n_time)):
        return "the 1 ms spike labels disagree with spike_times"
    for name in ("soma_v", "nexus_v"):
        if not np.isfinite(values[name][i]).all():
            return f"{name} holds values that are not finite numbers"
    return ""


def _check_block(
    group: zarr.Group, names: list[str], block: np.ndarray, n_time: int, problems: dict[int, str]
) -> None:
    values: dict[str, np.ndarray] = {}
    for name in names:
        try:
            values[name] = _read(group, name, block)
        except READ_FAILURES as exc:
            if block.size == 1:
                problems[int(block[0])] = f"{name} cannot be read ({exc})"
                return
            for sim in block:  # which of the file's simulations: one by one
                _check_block(group, names, block[block == sim], n_time, problems)
            return
    for i, sim in enumerate(block):
        why = _disagreement(values, i, n_time)
        if why:
            problems[int(sim)] = why


def content_problems(
    group: zarr.Group, sims: np.ndarray, *, with_inputs: bool = False
) -> dict[int, str]:
    """Simulations among ``sims`` whose data cannot be read or disagree → the problem found."""
    sims = np.asarray(sims, dtype=np.int64)
    problems: dict[int, str] = {}
    if sims.size == 0:
        return problems
    names = list(OUTPUT_ARRAYS)
    if with_inputs:
        names += [n for n, _ in group.arrays() if n in SIM_ARRAYS and n not in (*names, COMPLETE)]
    n_time = int(group["soma_v"].shape[1])
    per_file = int(group["soma_v"].metadata.chunk_grid.chunk_shape[0])
    for block in _blocks(sims, per_file):
        _check_block(group, names, block, n_time, problems)
    return problems


def read_completion_flags(
    group: zarr.Group, stop: int | None = None
) -> tuple[np.ndarray, set[int]]:
    """The ``complete`` flags of simulations 0 … stop − 1, and those whose flag cannot be read
    (its one-byte chunk fails its checksum): each simulation's flag is its own chunk, so one bad
    flag is read around, not allowed to make the whole split unreadable."""
    array = group[COMPLETE]
    stop = array.shape[0] if stop is None else min(stop, array.shape[0])
    try:
        return np.asarray(array[:stop], dtype=bool), set()
    except READ_FAILURES:
        flags = np.zeros(stop, dtype=bool)
        unreadable = set()
        for sim in range(stop):
            try:
                flags[sim] = bool(array[sim])
            except READ_FAILURES:
                unreadable.add(sim)
        return flags, unreadable
