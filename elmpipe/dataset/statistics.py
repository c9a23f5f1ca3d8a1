"""Per-split statistics of a dataset, computed with dask.array straight from the store.

Only intact complete simulations count; damaged ones (elmpipe.dataset.integrity) are listed, not
averaged in. Everything is a reduction over chunks, so describing a NeuronIO-scale dataset needs
memory for one chunk per worker, not for the dataset.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from elmpipe.dataset.reader import Dataset, Split
from elmpipe.dataset.schema import KEPT_SPIKE_RANGE, SKIP_MS, SOMA_CLIP_MV
from elmpipe.errors import DatasetError

V_BINS = np.arange(-100.0, 60.0001, 0.01)  # 0.01 mV histogram for exact-enough percentiles


def _percentiles(values: da.Array, qs: tuple[float, ...]) -> dict[str, float]:
    counts, _ = da.histogram(values, bins=V_BINS)
    counts = np.asarray(counts.compute(), dtype=float)
    cumulative = np.cumsum(counts) / max(counts.sum(), 1.0)
    centres = (V_BINS[:-1] + V_BINS[1:]) / 2
    return {f"p{q:g}": float(centres[np.searchsorted(cumulative, q / 100.0)]) for q in qs}


def _unreadable(split: Split, sims: np.ndarray) -> dict[int, str]:
    """Simulations whose data cannot be read (checksum errors): a full read, only on failure."""
    found = {}
    for sim in sims:
        try:
            split.simulation(int(sim))
        except DatasetError as exc:
            found[int(sim)] = str(exc).split(" (", 1)[-1].rstrip(".")
    return found


def _statistics(split: Split, keep: np.ndarray) -> dict[str, Any]:
    group = split.group
    n_time = split.n_time
    seconds = n_time / 1000.0
    sign = split.channel_sign
    inputs = da.from_zarr(group["inputs"])[keep]
    per_channel = inputs.sum(axis=(0, 1)).compute() / (keep.size * seconds)  # Hz per synapse
    out: dict[str, Any] = {
        "input_rate_hz": {
            "excitatory": float(per_channel[sign > 0].mean()),
            "inhibitory": float(per_channel[sign < 0].mean()),
        }
    }
    n_spikes = split.spike_counts()[keep]
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
    clipped = da.minimum(soma, SOMA_CLIP_MV)
    mean, sd, cmean, csd = da.compute(soma.mean(), soma.std(), clipped.mean(), clipped.std())
    out["soma_v_mv"] = {
        "after_ms": start,
        "mean": float(mean),
        "sd": float(sd),
        **_percentiles(soma.ravel(), (5, 50, 95)),
        f"clipped_at_{SOMA_CLIP_MV:g}": {"mean": float(cmean), "sd": float(csd)},
    }
    return out


def describe_split(dataset: Dataset, name: str) -> dict[str, Any]:
    split = dataset.split(name)
    damaged = dict(split.damaged)
    keep = split.intact
    out: dict[str, Any] = {
        "split": name,
        "simulations": split.n_sims,
        "complete": int(split.complete.size),
        "duration_ms": split.n_time,
    }
    if keep.size:
        try:
            out.update(_statistics(split, keep))
        except Exception:  # a chunk that fails its checksum: find which, then describe the rest
            unreadable = _unreadable(split, keep)
            if not unreadable:
                raise
            damaged.update(unreadable)
            keep = keep[~np.isin(keep, list(unreadable))]
            if keep.size:
                out.update(_statistics(split, keep))
    out["damaged"] = {str(k): v for k, v in sorted(damaged.items())}
    out["intact"] = int(keep.size)
    return out


FLOAT16_SPIKES = (
    "output spike times are NeuronIO's float16 values (1 ms steps in [1024, 2048) ms, 2 ms up to "
    "4096 ms, 4 ms beyond) and the 1 ms labels were computed from them; replay comparisons "
    "against them cannot be finer than that"
)


def describe(path: str, split: str | None = None) -> dict[str, Any]:
    dataset = Dataset(path)
    names = [split] if split else dataset.splits
    notes = [FLOAT16_SPIKES] if dataset.spike_times_are_float16 else []
    return {
        "store": str(dataset.path),
        "schema_version": dataset.schema_version,
        "notes": notes,
        "cell": {
            "morphology": dataset.cell.get("morphology"),
            "dendritic_segments": dataset.n_segments,
        },
        "protocol": dataset.protocol.get("kind"),
        "splits": {name: describe_split(dataset, name) for name in names},
    }


def evaluated_output_spikes(split: Split) -> int:
    """Output spikes the NeuronIO evaluation scores in ``split``: in its complete simulations
    with a kept spike count, after the skipped first SKIP_MS (surrogate.evaluate's rule)."""
    complete = split.intact
    if complete.size == 0:
        return 0
    lo, hi = KEPT_SPIKE_RANGE
    counts = split.spike_counts()[complete]
    kept = complete[(counts >= lo) & (counts <= hi)]
    if kept.size == 0:
        return 0
    skip = SKIP_MS if split.n_time > SKIP_MS else 0
    return int(split.spike_labels(kept)[:, skip:].sum())
