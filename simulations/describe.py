"""Per-split statistics of a dataset, computed with dask.array straight from the store.

Only complete simulations count. Everything is a reduction over chunks, so describing a
NeuronIO-scale dataset needs memory for one chunk per worker, not for the dataset.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from simulations.store import Dataset

#: evaluation keeps simulations with this many output spikes (NeuronIO protocol)
KEPT_SPIKE_RANGE = (0, 24)
SKIP_MS = 500  # the NeuronIO evaluation discards the first 500 ms
V_BINS = np.arange(-100.0, 60.0001, 0.01)  # 0.01 mV histogram for exact-enough percentiles


def _percentiles(values: da.Array, qs: tuple[float, ...]) -> dict[str, float]:
    counts, _ = da.histogram(values, bins=V_BINS)
    counts = np.asarray(counts.compute(), dtype=float)
    cumulative = np.cumsum(counts) / max(counts.sum(), 1.0)
    centres = (V_BINS[:-1] + V_BINS[1:]) / 2
    return {f"p{q:g}": float(centres[np.searchsorted(cumulative, q / 100.0)]) for q in qs}


def describe_split(dataset: Dataset, split: str) -> dict[str, Any]:
    group = dataset.group(split)
    complete = np.asarray(group["complete"][:])
    keep = np.flatnonzero(complete)
    n_time = group["soma_v"].shape[1]
    out: dict[str, Any] = {
        "split": split,
        "simulations": int(complete.size),
        "complete": int(keep.size),
        "duration_ms": int(n_time),
    }
    if keep.size == 0:
        return out
    seconds = n_time / 1000.0
    sign = np.asarray(group["channel_sign"][:])
    inputs = da.from_zarr(group["inputs"])[keep]
    per_channel = inputs.sum(axis=(0, 1)).compute() / (keep.size * seconds)  # Hz per synapse
    out["input_rate_hz"] = {
        "excitatory": float(per_channel[sign > 0].mean()),
        "inhibitory": float(per_channel[sign < 0].mean()),
    }
    n_spikes = np.asarray(group["n_spikes"][:])[keep]
    lo, hi = KEPT_SPIKE_RANGE
    edges = [0, 1, 2, 5, 10, 15, 20, 25, 30, 40, 60, 100, 1_000_000]
    hist, _ = np.histogram(n_spikes, bins=edges)
    out["output"] = {
        "rate_hz": float(n_spikes.sum() / (keep.size * seconds)),
        "spikes_per_sim_mean": float(n_spikes.mean()),
        "spikes_per_sim_histogram": {
            f"{a}-{b - 1}" if b - a > 1 else f"{a}": int(c)
            for a, b, c in zip(edges[:-1], edges[1:], hist, strict=True)
        },
        "fraction_sims_0_to_24_spikes": float(np.mean((n_spikes >= lo) & (n_spikes <= hi))),
    }
    start = SKIP_MS if n_time > 2 * SKIP_MS else 0
    soma = da.from_zarr(group["soma_v"])[keep, start:].astype(np.float64)
    clipped = da.minimum(soma, -55.0)
    mean, sd, cmean, csd = da.compute(soma.mean(), soma.std(), clipped.mean(), clipped.std())
    out["soma_v_mv"] = {
        "after_ms": start,
        "mean": float(mean),
        "sd": float(sd),
        **_percentiles(soma.ravel(), (5, 50, 95)),
        "clipped_at_-55": {"mean": float(cmean), "sd": float(csd)},
    }
    return out


def describe(path: str, split: str | None = None) -> dict[str, Any]:
    dataset = Dataset(path)
    splits = [split] if split else dataset.splits
    return {
        "store": str(dataset.path),
        "cell": {
            "morphology": dataset.attrs["cell"].get("morphology"),
            "dendritic_segments": len(dataset.attrs["channels"]["segment"]) // 2,
        },
        "protocol": dataset.attrs["protocol"].get("kind"),
        "splits": {name: describe_split(dataset, name) for name in splits},
    }
