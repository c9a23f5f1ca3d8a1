"""Spiking Heidelberg Digits (SHD) and SHD-Adding, from the standard HDF5 files.

File layout (``shd_train.h5``, ``shd_test.h5``): ``spikes/times`` (per sample, seconds),
``spikes/units`` (per sample, 0–699), ``labels`` (0–19: English 0–9, German 10–19),
``extra/keys`` and ``extra/speaker``. Digits are cut at 1 s and binned: bin index =
digitize(t, edges) − 1 with edges 0, bin, …, 1 s; spikes at t ≥ 1 s are dropped; each input is
the spike *count* of a channel in a bin.

SHD-Adding: two digits of the same split, concatenated in time; the label is the sum of their
digit values (language ignored), 19 classes. Training pairs are fresh every epoch; validation and
test pairs are fixed (re-seeded every pass).

:func:`write_synthetic_shd` writes files of the same layout with synthetic "digits" (class-specific
travelling bursts across the 700 channels) so tests and demos run without the real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from elmpipe.errors import InputError

N_CHANNELS = 700
N_CLASSES = 20
ADDING_CLASSES = 19  # digit sums 0 … 18
DURATION_S = 1.0


class TaskDataError(InputError):
    """Task files are missing or not in the expected format."""


@dataclass(frozen=True)
class SpikeDigits:
    """All samples of one SHD file, kept sparse."""

    times: list[np.ndarray]  # seconds
    units: list[np.ndarray]
    labels: np.ndarray  # 0–19

    def __len__(self) -> int:
        return len(self.labels)


def shd_file(folder: str | Path, split: str) -> Path:
    folder = Path(folder)
    name = {"train": "shd_train.h5", "test": "shd_test.h5"}.get(split)
    if name is None:
        raise TaskDataError(f"SHD has splits train and test, not {split!r}")
    for candidate in (folder / name, folder / "SHD" / name):
        if candidate.exists():
            return candidate
    raise TaskDataError(
        f"{name} not found in {folder} (download SHD from zenkelab.org, gunzip it, or run "
        f"`elmpipe task generate shd --out {folder}` for synthetic stand-ins)"
    )


def load_digits(path: str | Path) -> SpikeDigits:
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            times = [np.asarray(t, dtype=np.float64) for t in handle["spikes/times"][:]]
            units = [np.asarray(u, dtype=np.int64) for u in handle["spikes/units"][:]]
            labels = np.asarray(handle["labels"][:], dtype=np.int64)
    except (OSError, KeyError) as exc:
        raise TaskDataError(
            f"{path} is not an SHD file (spikes/times, spikes/units, labels): {exc}"
        ) from exc
    if not (len(times) == len(units) == len(labels)):
        raise TaskDataError(f"{path}: spikes and labels disagree in length")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise TaskDataError(f"{path}: labels outside 0–19")
    for u in units:
        if u.size and (u.min() < 0 or u.max() >= N_CHANNELS):
            raise TaskDataError(f"{path}: spike units outside 0–{N_CHANNELS - 1}")
    return SpikeDigits(times, units, labels)


def bin_spikes(times: np.ndarray, units: np.ndarray, bin_ms: float) -> np.ndarray:
    """Spike counts (T, 700), T = 1000/bin_ms; spikes at or after 1 s are dropped."""
    n_bins = round(1000.0 / bin_ms)
    edges = np.arange(n_bins + 1) * (bin_ms / 1000.0)
    index = np.digitize(times, edges) - 1
    keep = (index >= 0) & (index < n_bins) & (times < DURATION_S)
    counts = np.zeros((n_bins, N_CHANNELS), dtype=np.float32)
    np.add.at(counts, (index[keep], units[keep]), 1.0)
    return counts


def validation_mask(n: int, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """True for the training samples held out for validation (Bernoulli(fraction), seeded)."""
    return np.random.default_rng(seed).random(n) < fraction


class SHDDataset(torch.utils.data.Dataset):
    """(binned digit (T, 700), label) pairs; ``split`` train/valid come from the train file."""

    def __init__(self, folder: str | Path, split: str, bin_ms: float = 10.0) -> None:
        source = "test" if split == "test" else "train"
        digits = load_digits(shd_file(folder, source))
        if split in ("train", "valid"):
            held_out = validation_mask(len(digits))
            keep = np.flatnonzero(held_out if split == "valid" else ~held_out)
        elif split == "test":
            keep = np.arange(len(digits))
        else:
            raise TaskDataError(f"unknown split {split!r} (train, valid, test)")
        self.digits, self.index, self.bin_ms = digits, keep, bin_ms
        self.n_classes = N_CLASSES

    def __len__(self) -> int:
        return len(self.index)

    def label(self, i: int) -> int:
        return int(self.digits.labels[self.index[i]])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        k = self.index[i]
        x = bin_spikes(self.digits.times[k], self.digits.units[k], self.bin_ms)
        return torch.from_numpy(x), self.label(i)


class SHDAddingDataset(torch.utils.data.Dataset):
    """Pairs of digits of one split, concatenated in time; label = sum of digit values (0–18).

    Item i of a pass is drawn from a generator seeded with (seed, epoch, i): training sets a new
    ``epoch`` every pass (fresh pairs), validation and test keep epoch 0 (fixed pairs).
    """

    def __init__(
        self, folder: str | Path, split: str, bin_ms: float = 10.0, size: int = 16000, seed: int = 0
    ) -> None:
        self.base = SHDDataset(folder, split, bin_ms)
        self.size, self.seed, self.epoch = size, seed, 0
        self.n_classes = ADDING_CLASSES

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def pair(self, i: int) -> tuple[int, int]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        a, b = rng.integers(0, len(self.base), size=2)
        return int(a), int(b)

    def label(self, i: int) -> int:
        a, b = self.pair(i)
        return self.base.label(a) % 10 + self.base.label(b) % 10

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        a, b = self.pair(i)
        (xa, _), (xb, _) = self.base[a], self.base[b]
        return torch.cat([xa, xb], dim=0), self.label(i)


# -- synthetic files in the SHD layout -----------------------------------------------------------


def _synthetic_digit(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A class-specific pattern: three bursts sweeping across channel bands, with jitter/noise."""
    pattern = np.random.default_rng(1000 + label)  # the class's fixed template
    times, units = [], []
    for _ in range(3):
        start_t = pattern.uniform(0.05, 0.65) + rng.normal(0, 0.02)
        start_u = pattern.integers(0, N_CHANNELS - 150)
        slope = pattern.uniform(-300, 300)  # channels per second
        n = rng.poisson(350)
        t = start_t + rng.uniform(0, 0.25, n)
        u = np.clip(start_u + slope * (t - start_t) + rng.normal(0, 12, n), 0, N_CHANNELS - 1)
        times.append(t)
        units.append(u.astype(np.int64))
    noise = rng.poisson(300)
    times.append(rng.uniform(0, 1.05, noise))  # some beyond 1 s, which binning drops
    units.append(rng.integers(0, N_CHANNELS, noise))
    t, u = np.concatenate(times), np.concatenate(units)
    order = np.argsort(t)
    return t[order], u[order]


def write_synthetic_shd(
    folder: str | Path, n_train: int = 400, n_test: int = 120, seed: int = 0
) -> Path:
    """Write ``shd_train.h5`` and ``shd_test.h5`` with synthetic digits (both languages)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    keys = [f"{w}" for w in ("zero one two three four five six seven eight nine".split())] + [
        f"{w}" for w in ("null eins zwei drei vier fuenf sechs sieben acht neun".split())
    ]
    for name, n in (("shd_train.h5", n_train), ("shd_test.h5", n_test)):
        labels = rng.integers(0, N_CLASSES, n)
        digits = [_synthetic_digit(int(lab), rng) for lab in labels]
        with h5py.File(folder / name, "w") as handle:
            float_type = h5py.vlen_dtype(np.dtype("float16"))
            int_type = h5py.vlen_dtype(np.dtype("uint16"))
            times = handle.create_dataset("spikes/times", (n,), dtype=float_type)
            units = handle.create_dataset("spikes/units", (n,), dtype=int_type)
            for i, (t, u) in enumerate(digits):
                times[i] = t.astype(np.float16)
                units[i] = u.astype(np.uint16)
            handle.create_dataset("labels", data=labels.astype(np.uint8))
            handle.create_dataset("extra/keys", data=np.array(keys, dtype="S"))
            handle.create_dataset("extra/speaker", data=rng.integers(0, 12, n).astype(np.uint8))
    return folder
