"""Reading the dataset: the one reader every stage uses.

:class:`Dataset` opens a store and checks that it is an elmpipe dataset of a version this code
reads (one check, whoever opens it). :class:`Split` gives a split's simulations: which are
complete, which of those are damaged (elmpipe.dataset.integrity), the channel signs, training
windows and whole simulations. Reads that hit a damaged chunk raise a :class:`DatasetError` that
names the simulation, never numbers made of fill values.

A :class:`Split` pickles without its zarr handles and reopens the store in whichever process
reads it, so it can be handed to loader threads and dask workers.
"""

from __future__ import annotations

import struct
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from elmpipe.dataset.consistency import (
    content_problems,
    layout_problems,
    read_completion_flags,
)
from elmpipe.dataset.integrity import damaged_simulations
from elmpipe.dataset.schema import (
    CALIBRATION_ATTR,
    COMPLETE,
    DATA_ARRAYS,
    KIND,
    READABLE_VERSIONS,
    REQUIRED_ARRAYS,
    SCHEMA_VERSION,
    upgrade_stored_protocol,
)
from elmpipe.errors import DatasetError, MissingFileError

#: what zarr and its codecs raise on a damaged chunk (checksum mismatch, undecodable bytes)
_READ_FAILURES = (ValueError, RuntimeError, OSError, struct.error)


def open_root(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a dataset's root group, refusing anything that is not a readable elmpipe dataset."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"dataset not found: {path}")
    try:
        root = zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as exc:  # zarr raises several types for unreadable metadata
        raise DatasetError(f"{path} is not a readable Zarr v3 dataset: {exc}") from exc
    schema_version(root, path)
    return root


def schema_version(root: zarr.Group, path: str | Path) -> int:
    meta = root.attrs.get("elmpipe")
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise DatasetError(
            f"{path} is a Zarr store but not an elmpipe dataset (no 'elmpipe' attributes)"
        )
    version = meta.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise DatasetError(
            f"{path} has dataset schema version {version!r}; this elmpipe reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (writes {SCHEMA_VERSION})"
        )
    return int(version)


def root_attribute_problems(attrs: dict[str, Any]) -> list[str]:
    """What is missing or malformed among the root attributes every reader relies on."""
    problems = []
    for name in ("cell", "channels", "protocol", "simulation"):
        if not isinstance(attrs.get(name), dict):
            problems.append(f"'{name}' is {'missing' if name not in attrs else 'not a mapping'}")
    seed = attrs.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        problems.append(f"'seed' is {seed!r}, not a non-negative integer")
    channels = attrs.get("channels")
    if isinstance(channels, dict):
        segment, kind = channels.get("segment"), channels.get("kind")
        if not (isinstance(segment, list) and isinstance(kind, list) and len(segment) == len(kind)):
            problems.append("'channels' lacks equally long 'segment' and 'kind' lists")
    simulation = attrs.get("simulation")
    if isinstance(simulation, dict):
        duration = simulation.get("duration_ms")
        if not isinstance(duration, int | float) or not 1 <= duration < 1e9:
            problems.append(f"'simulation.duration_ms' is {duration!r}, not a duration in ms")
    return problems


def list_splits(root: zarr.Group, path: Path) -> list[str]:
    """The split names of a store; a split folder whose group metadata is lost or unreadable is
    an error naming it (zarr would leave it out of the listing, and its data with it)."""
    names = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meta = folder / "zarr.json"
        try:
            node = root[folder.name] if meta.is_file() else None
        except Exception as exc:  # undecodable or invalid JSON
            raise DatasetError(
                f"{path}: the metadata of split {folder.name!r} ({meta}) cannot be read ({exc}); "
                "the store is damaged: move it aside and make the dataset again"
            ) from exc
        if node is None:
            raise DatasetError(
                f"{path}: split folder {folder.name!r} has lost its metadata ({meta} is missing); "
                "the store is damaged: move it aside and make the dataset again"
            )
        if isinstance(node, zarr.Group):
            names.append(folder.name)
    return names


def missing_arrays(group: zarr.Group) -> list[str]:
    """Arrays every split holds that ``group`` lacks."""
    present = {name for name, _ in group.arrays()}
    return [name for name in REQUIRED_ARRAYS if name not in present]


def layout_error(where: object, problems: list[str]) -> str:
    return (
        f"{where}: the arrays' metadata (zarr.json) disagrees with the dataset schema: "
        + "; ".join(problems[:4])
        + ". It was edited or damaged; simulating again cannot repair it: move the store aside "
        "and make the dataset again"
    )


def _describe_indices(indices: list[int] | np.ndarray, most: int = 6) -> str:
    values = [int(i) for i in indices]
    shown = ", ".join(map(str, values[:most]))
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


class Dataset:
    """Read access to a finished or partial dataset."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self.root = open_root(self.path)
        self.attrs = dict(self.root.attrs)
        self.schema_version = schema_version(self.root, self.path)
        if problems := root_attribute_problems(self.attrs):
            raise DatasetError(
                f"{self.path} has damaged dataset attributes ({self.path / 'zarr.json'}): "
                + "; ".join(problems)
            )

    @cached_property
    def splits(self) -> list[str]:
        return list_splits(self.root, self.path)

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DatasetError(
                f"{self.path} has no split {name!r} (splits: {', '.join(self.splits) or 'none'})"
            )
        return Split(self.path, name, self.schema_version)

    @property
    def n_channels(self) -> int:
        return len(self.attrs["channels"]["segment"])

    @property
    def n_segments(self) -> int:
        return self.n_channels // 2

    @property
    def protocol(self) -> dict[str, Any]:
        return upgrade_stored_protocol(dict(self.attrs.get("protocol", {})))

    @property
    def calibration(self) -> dict[str, Any] | None:
        """How the inputs' scale was found (None: not recorded, e.g. an older store)."""
        return self.attrs.get(CALIBRATION_ATTR)

    @property
    def cell(self) -> dict[str, Any]:
        return self.attrs.get("cell", {})

    @property
    def spike_times_are_float16(self) -> bool:
        """Are the output spike times NeuronIO's float16 values (imported files) rather than the
        simulator's exact ones? Imports record it; older imports did not, and are float16."""
        default = "float16" if self.protocol.get("kind") == "neuronio-import" else "exact"
        return self.protocol.get("spike_time_precision", default) == "float16"


class Split:
    """One split of a dataset, opened lazily in whichever process reads it."""

    def __init__(self, store: str | Path, name: str, version: int = SCHEMA_VERSION) -> None:
        self.store = Path(store)
        self.name = name
        self.schema_version = version
        self._group: zarr.Group | None = None

    def __getstate__(self) -> dict:
        state = {**self.__dict__, "_group": None}  # zarr handles are reopened per process
        state.pop("_completion", None)  # the checks' results travel: a worker need not redo them
        return state

    def __repr__(self) -> str:
        return f"{self.store} [{self.name}]"

    @property
    def group(self) -> zarr.Group:
        if self._group is None:
            try:
                group = zarr.open_group(str(self.store), mode="r", zarr_format=3)[self.name]
            except Exception as exc:
                raise DatasetError(
                    f"cannot open split {self.name!r} of {self.store}: {exc}"
                ) from exc
            if missing := missing_arrays(group):
                raise DatasetError(
                    f"{self} was not fully created (no {', '.join(missing)}); run the command "
                    "that makes it again (it recreates a split that holds no finished simulation)"
                )
            if problems := layout_problems(group):
                raise DatasetError(layout_error(self, problems))
            self._group = group
        return self._group

    # -- shape ------------------------------------------------------------------------------------

    @property
    def n_sims(self) -> int:
        return int(self.group[COMPLETE].shape[0])

    @property
    def n_time(self) -> int:
        return int(self.group["inputs"].shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.group["inputs"].shape[2])

    @property
    def has_dendrites(self) -> bool:
        return "dend_v" in self.group

    @cached_property
    def channel_sign(self) -> np.ndarray:
        """+1 for excitatory, −1 for inhibitory channels (float32, ready to multiply inputs)."""
        return np.asarray(self.group["channel_sign"][:], dtype=np.float32)

    # -- completeness and integrity ---------------------------------------------------------------

    @cached_property
    def _completion(self) -> tuple[np.ndarray, set[int]]:
        return read_completion_flags(self.group)

    @property
    def complete_mask(self) -> np.ndarray:
        """Simulations marked complete (and those whose mark cannot be read: damaged)."""
        flags, unreadable = self._completion
        flags = flags.copy()
        flags[list(unreadable)] = True
        return flags

    @property
    def complete(self) -> np.ndarray:
        """Indices of the simulations marked complete (damaged ones included)."""
        return np.flatnonzero(self.complete_mask)

    @cached_property
    def damaged(self) -> dict[int, str]:
        """Complete simulations that are not whole → the problem found: a completion mark that
        cannot be read, missing or torn chunk files (elmpipe.dataset.integrity), outputs that
        cannot be read or disagree with each other (elmpipe.dataset.consistency)."""
        damaged = {sim: "its completion mark cannot be read" for sim in self._completion[1]}
        candidates = np.setdiff1d(self.complete, list(damaged))
        damaged.update(damaged_simulations(self.store, self.group, candidates, self.schema_version))
        damaged.update(content_problems(self.group, np.setdiff1d(candidates, list(damaged))))
        return dict(sorted(damaged.items()))

    @property
    def intact(self) -> np.ndarray:
        """Complete simulations that passed the integrity check."""
        complete = self.complete
        return complete[~np.isin(complete, list(self.damaged))] if self.damaged else complete

    def damage_report(self) -> str:
        """One line per damaged simulation (at most a few), for error messages."""
        lines = [f"simulation {i}: {why}" for i, why in sorted(self.damaged.items())[:5]]
        if len(self.damaged) > 5:
            lines.append(f"… and {len(self.damaged) - 5} more")
        return "\n  ".join(lines)

    def require_intact(self) -> np.ndarray:
        """The complete simulations; refuses (naming them) if any of them is damaged."""
        if self.damaged:
            raise DatasetError(
                f"{self} has {len(self.damaged)} damaged simulation(s) marked complete:\n  "
                f"{self.damage_report()}\nRun the command that made the dataset again (e.g. "
                "`elmpipe simulate` with the same options, or `elmpipe dataset import-neuronio`): "
                "it recomputes damaged simulations."
            )
        return self.complete

    # -- reading ----------------------------------------------------------------------------------

    def _read(self, name: str, sims: np.ndarray | int, *rest: slice) -> np.ndarray:
        """``name`` of simulation(s) ``sims``; a damaged chunk is an error naming the simulation."""
        array = self.group[name]
        try:
            if np.ndim(sims) == 0:
                return array[(int(sims), *rest)]
            return array.get_orthogonal_selection((np.asarray(sims), *rest))
        except _READ_FAILURES as exc:
            bad = (
                [int(sims)]
                if np.ndim(sims) == 0
                else self._unreadable(name, np.asarray(sims), rest)
            )
            raise DatasetError(
                f"{self}: simulation {_describe_indices(bad or np.atleast_1d(sims))} is damaged "
                f"({name} cannot be read: {exc}). Run the command that made the dataset again to "
                "recompute it."
            ) from exc

    def _unreadable(self, name: str, sims: np.ndarray, rest: tuple[slice, ...]) -> list[int]:
        bad = []
        for sim in np.asarray(sims):
            try:
                self.group[name][(int(sim), *rest)]
            except _READ_FAILURES:
                bad.append(int(sim))
        return bad

    def window(
        self, sim: int, start: int, length: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs (length, C) bool, spike labels (length,) bool, soma_v (length,) mV)."""
        span = slice(start, start + length)
        return (
            self._read("inputs", sim, span),
            self._read("spikes", sim, span),
            self._read("soma_v", sim, span),
        )

    def signed_inputs(self, sims: np.ndarray) -> np.ndarray:
        """Inputs of ``sims`` as float32 (sims, time, channel): +1 excitatory, −1 inhibitory."""
        raw = self._read("inputs", sims, slice(None), slice(None))
        return raw.astype(np.float32) * self.channel_sign

    def read(self, name: str, sims: np.ndarray) -> np.ndarray:
        """Array ``name`` of several simulations (whole along the other dimensions)."""
        rest = (slice(None),) * (len(self.group[name].shape) - 1)
        return self._read(name, np.asarray(sims), *rest)

    def soma_v(self, sims: np.ndarray) -> np.ndarray:
        """Soma voltage (sims, time), mV."""
        return self.read("soma_v", sims)

    def spike_labels(self, sims: np.ndarray) -> np.ndarray:
        """1 ms output-spike labels (sims, time), bool."""
        return self.read("spikes", sims)

    def scalar(self, name: str) -> np.ndarray:
        """A per-simulation scalar (``n_spikes``, ``interval_ms``, …) of every simulation."""
        return np.asarray(self._read(name, np.arange(self.n_sims)))

    def spike_counts(self, sims: np.ndarray | None = None) -> np.ndarray:
        """Output spikes of ``sims`` (default: every simulation; −1 where not yet simulated).
        Give the simulations you use: a damaged one elsewhere then does not stop the read."""
        if sims is None:
            return self.scalar("n_spikes")
        return np.asarray(self._read("n_spikes", np.asarray(sims, dtype=np.int64)))

    def simulation(self, index: int) -> dict[str, np.ndarray]:
        """Every stored array of one simulation (spike times without padding)."""
        out = {name: self._read(name, index) for name in DATA_ARRAYS}
        out["spike_times"] = out["spike_times"][: out["n_spikes"]]
        if self.has_dendrites:
            out["dend_v"] = self._read("dend_v", index)
        return out
