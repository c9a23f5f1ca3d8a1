"""Training windows from a Zarr dataset (docs/dataset.md), as the ELM NeuronIO recipe draws them.

Batch i of a run is a pure function of (seed, i): batch_size distinct complete simulations, each
with its own start drawn uniformly after the first 500 ms, a 500 ms window of signed inputs
(+1 excitatory, −1 inhibitory spikes), the spike labels, and the soma target
(min(V, −55 mV) + 67.7 mV)/10. Loader workers therefore never change what a run sees, and a
resumed run continues the same stream. Only the chunks of the drawn simulations are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zarr

SOMA_CLIP_MV = -55.0
SOMA_BIAS_MV = -67.7
SOMA_SCALE = 0.1  # training units per mV


class DataError(ValueError):
    """The dataset cannot provide what training asked for."""


def soma_target(voltage_mv: np.ndarray) -> np.ndarray:
    """The soma training target: clip at −55 mV, subtract −67.7 mV, scale by 1/10."""
    return (np.minimum(voltage_mv, SOMA_CLIP_MV) - SOMA_BIAS_MV) * SOMA_SCALE


def soma_mv(prediction: np.ndarray | torch.Tensor):
    """Back from training units to mV relative to −67.7 mV (i.e. clipped V + 67.7)."""
    return prediction / SOMA_SCALE


class SplitReader:
    """One split of a dataset, opened lazily in whichever process reads it."""

    def __init__(self, store: str | Path, split: str) -> None:
        self.store = str(store)
        self.split = split
        group = self._open()
        if "complete" not in group or "inputs" not in group:
            raise DataError(f"{store} [{split}] is not an elmpipe dataset split")
        self.complete = np.flatnonzero(group["complete"][:])
        self.n_time = int(group["inputs"].shape[1])
        self.n_channels = int(group["inputs"].shape[2])
        self.sign = np.asarray(group["channel_sign"][:], dtype=np.float32)
        self._group: zarr.Group | None = None

    def _open(self) -> zarr.Group:
        if not Path(self.store).exists():
            raise DataError(f"dataset not found: {self.store}")
        try:
            root = zarr.open_group(self.store, mode="r", zarr_format=3)
        except Exception as exc:
            raise DataError(f"{self.store} is not a readable Zarr dataset: {exc}") from exc
        if self.split not in root:
            splits = ", ".join(sorted(name for name, _ in root.groups())) or "none"
            raise DataError(f"{self.store} has no split {self.split!r} (splits: {splits})")
        return root[self.split]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_group": None}  # zarr handles are reopened per process

    @property
    def group(self) -> zarr.Group:
        if self._group is None:
            self._group = self._open()
        return self._group

    def window(
        self, sim: int, start: int, length: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signed inputs (length, C) float32, spike labels (length,), soma target (length,))."""
        stop = start + length
        group = self.group
        inputs = group["inputs"][sim, start:stop].astype(np.float32) * self.sign
        spikes = group["spikes"][sim, start:stop].astype(np.float32)
        soma = soma_target(group["soma_v"][sim, start:stop].astype(np.float64)).astype(np.float32)
        return inputs, spikes, soma


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor  # (B, T, C) float32 in {−1, 0, 1}
    spikes: torch.Tensor  # (B, T) float32 0/1
    soma: torch.Tensor  # (B, T) float32, training units

    def to(self, device: torch.device) -> Batch:
        return Batch(self.inputs.to(device), self.spikes.to(device), self.soma.to(device))


class WindowBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item i is training batch i (use with ``batch_size=None``)."""

    def __init__(
        self,
        store: str | Path,
        split: str,
        *,
        batch_size: int = 8,
        window: int = 500,
        min_start: int = 500,
        seed: int = 0,
        length: int = 2**31 - 1,
    ) -> None:
        self.reader = SplitReader(store, split)
        self.batch_size = batch_size
        self.window = window
        self.min_start = min_start
        self.seed = seed
        self.length = length
        sims = len(self.reader.complete)
        if sims < batch_size:
            raise DataError(
                f"{store} [{split}] has {sims} complete simulations; a batch needs {batch_size} "
                "distinct ones (lower --batch-size or simulate more)"
            )
        if self.reader.n_time < min_start + window:
            raise DataError(
                f"simulations of {self.reader.n_time} ms are too short for {window} ms windows "
                f"starting after {min_start} ms"
            )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, int(index)])
        sims = rng.choice(self.reader.complete, size=self.batch_size, replace=False)
        starts = rng.integers(self.min_start, self.reader.n_time - self.window + 1, self.batch_size)
        parts = [
            self.reader.window(int(s), int(t), self.window)
            for s, t in zip(sims, starts, strict=True)
        ]
        inputs, spikes, soma = (np.stack(p) for p in zip(*parts, strict=True))
        return Batch(torch.from_numpy(inputs), torch.from_numpy(spikes), torch.from_numpy(soma))


def batch_loader(
    batches: WindowBatches, first: int, last: int, workers: int = 0
) -> torch.utils.data.DataLoader:
    """Batches ``first … last − 1`` in order, prepared by ``workers`` background processes."""
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(first, last),
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
