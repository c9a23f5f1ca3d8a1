"""Per-split statistics of a dataset, computed with dask.array straight from the store.

Only intact complete simulations count; damaged ones (elmpipe.dataset.integrity) are listed, not
averaged in. Everything is a reduction over chunks, so describing a NeuronIO-scale dataset needs
memory for one chunk per worker, not for the dataset.

Each split's output is compared with the store's target output (the calibration's, or the Hay
cell's under the protocol for stores without one): :func:`output_warnings` says when the rate is
off by more than a factor of 2, when many simulations are silent, and when many fall outside the
kept 0–24 spikes — the words `dataset describe`, `simulate` and `run` print (docs/own-cell.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from elmpipe.dataset.reader import Dataset, Split
from elmpipe.dataset.schema import KEPT_SPIKE_RANGE, REFERENCE_OUTPUT, SKIP_MS, SOMA_CLIP_MV
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


def _output(n_spikes: np.ndarray, seconds: float) -> dict[str, Any]:
    """Output statistics from the spike counts of the simulations described."""
    lo, hi = KEPT_SPIKE_RANGE
    edges = [0, 1, 2, 5, 10, 15, 20, 25, 30, 40, 60, 100, 1_000_000]
    hist, _ = np.histogram(n_spikes, bins=edges)
    kept = (n_spikes >= lo) & (n_spikes <= hi)
    return {
        "rate_hz": float(n_spikes.sum() / (n_spikes.size * seconds)),
        "spikes_per_sim_mean": float(n_spikes.mean()),
        "spikes_per_sim_histogram": {
            f"{a}-{b - 1}" if b - a > 1 else f"{a}": int(c)
            for a, b, c in zip(edges[:-1], edges[1:], hist, strict=True)
        },
        "fraction_sims_0_to_24_spikes": float(np.mean(kept)),
        "silent_simulations": int(np.sum(n_spikes == 0)),
        "simulations_outside_0_to_24": int(np.sum(~kept)),
    }


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
    out["output"] = _output(split.spike_counts(keep), seconds)
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


def simulated_with(settings: dict[str, Any]) -> str | None:
    """How a store's simulations were integrated, in a few words (None: imported data): stores
    made at different steps are both valid data, and a reader comparing them should see it."""
    engine = settings.get("engine")
    if engine is None:
        return None
    if engine == "neuron-cvode":
        return f"neuron-cvode (atol {settings.get('atol', 1e-3):g})"
    step = settings.get("dt_ms")
    text = engine if step is None else f"{engine} at {_ms(step)}"
    adaptive = settings.get("adaptive")
    if isinstance(adaptive, dict):
        text += f" around spikes, {_ms(adaptive.get('coarse_dt_ms'))} between (adaptive)"
    return text


def _ms(value: Any) -> str:
    """A recorded step as people read it; a damaged one as it is stored."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return f"{value:g} ms" if number else f"{value!r} ms (damaged)"


def describe(path: str, split: str | None = None) -> dict[str, Any]:
    dataset = Dataset(path)
    names = [split] if split else dataset.splits
    notes = [FLOAT16_SPIKES] if dataset.spike_times_are_float16 else []
    target = output_target(dataset)
    splits = {name: describe_split(dataset, name) for name in names}
    for description in splits.values():
        description["warnings"] = output_warnings(description, target)
    return {
        "store": str(dataset.path),
        "schema_version": dataset.schema_version,
        "notes": notes,
        "cell": {
            "morphology": dataset.cell.get("morphology"),
            "dendritic_segments": dataset.n_segments,
        },
        "protocol": dataset.protocol.get("kind"),
        "simulated": simulated_with(dataset.attrs.get("simulation", {})),
        "target_output": target,
        "splits": splits,
        "warnings": [f"[{name}] {line}" for name, s in splits.items() for line in s["warnings"]],
    }


# -- how far the output is from its target ------------------------------------------------------

#: a rate this many times above or below the target's is "far" from it
RATE_FACTOR = 2.0
#: splits with fewer simulations are not compared with the target (all silent still is): the
#: protocol's output per simulation varies as much as its mean (the Hay cell: 7.2 ± 8.7 spikes
#: per 6 s), so the rate of a few simulations is off by 2x by chance alone
MIN_SIMULATIONS_COMPARED = 8
#: silent simulations are worth a word beyond this share (without a target share to compare)
SILENT_SHARE = 0.5


def output_target(dataset: Dataset) -> dict[str, Any]:
    """What the dataset's output should look like: the target its input calibration aimed at,
    or the Hay cell's output under the protocol (REFERENCE_OUTPUT) for stores without one.
    ``source`` says which."""
    calibration = dataset.calibration or {}
    target = calibration.get("target") or {}
    if target.get("rate_hz"):
        return {**target, "source": "calibration"}
    return {**REFERENCE_OUTPUT, "source": "reference: the Hay cell under the protocol"}


def output_warnings(description: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """What is worth a warning in a split's output, given its target (:func:`output_target`).

    ``description`` is a split's description (:func:`describe_split`, or the cheap
    :func:`split_output` without input and soma statistics). Warnings: no output spike at all; a
    rate more than ``RATE_FACTOR`` times above or below the target's; more than
    ``SILENT_SHARE`` of the simulations silent (for a target that records its silent share at
    the same duration: more than twice that share, and at least 10 %); more than twice the
    target's share of simulations outside the kept 0–24 spikes, which the NeuronIO evaluation
    drops.
    """
    out = description.get("output")
    n = description.get("intact", 0)
    if not out or not n:
        return []
    rate, wanted = out["rate_hz"], float(target["rate_hz"])
    source = target.get("source", "target")
    warnings = []
    silent = out["silent_simulations"]
    if silent == n:
        return [
            f"no output spike in any of the {n} simulations: a surrogate cannot learn spikes "
            f"from them and the spike AUC is undefined; the inputs under-drive the cell "
            f"(target {wanted:.2f} Hz, {source}; `elmpipe cell calibrate`)"
        ]
    if n < MIN_SIMULATIONS_COMPARED:
        return []  # too few: one strong draw more or less moves the rate several-fold
    if rate < wanted / RATE_FACTOR or rate > wanted * RATE_FACTOR:
        under = rate < wanted
        warnings.append(
            f"output rate {rate:.2f} Hz is {wanted / rate if under else rate / wanted:.1f}x "
            f"{'below' if under else 'above'} the target {wanted:.2f} Hz ({source}): the "
            f"inputs {'under' if under else 'over'}-drive the cell, so a surrogate learns a "
            f"{'quieter' if under else 'busier'} regime than intended (`elmpipe cell calibrate`)"
        )
    same_duration = target.get("duration_ms") == description.get("duration_ms")
    silent_limit = SILENT_SHARE
    if same_duration and target.get("silent_share") is not None:
        silent_limit = min(SILENT_SHARE, max(0.1, 2 * float(target["silent_share"])))
    if silent / n > silent_limit:
        warnings.append(
            f"{silent} of {n} simulations ({silent / n:.0%}) have no output spike (more than "
            f"{silent_limit:.0%}): they teach a surrogate little about spikes"
        )
    outside = out["simulations_outside_0_to_24"]
    lo, hi = KEPT_SPIKE_RANGE
    allowed = RATE_FACTOR * (1.0 - float(target.get("share_in_kept_range", 1.0)))
    if outside > allowed * n + 1e-9:  # twice the target's share is still fine
        warnings.append(
            f"{outside} of {n} simulations ({outside / n:.0%}) have more than {hi} output "
            f"spikes, outside the kept {lo}–{hi} (target: {allowed / RATE_FACTOR:.0%} outside, "
            f"{source}): the NeuronIO evaluation drops them"
        )
    return warnings


def split_output(dataset: Dataset, name: str) -> dict[str, Any]:
    """A split's output statistics from its spike counts alone: cheap enough after every
    ``simulate``, and enough for :func:`output_warnings`."""
    split = dataset.split(name)
    keep = split.intact
    out: dict[str, Any] = {"split": name, "duration_ms": split.n_time, "intact": int(keep.size)}
    if keep.size:
        out["output"] = _output(split.spike_counts(keep), split.n_time / 1000.0)
    return out


def split_warnings(path: str | Path, name: str) -> list[str]:
    """:func:`output_warnings` for one split of a store, from spike counts alone."""
    dataset = Dataset(path)
    return output_warnings(split_output(dataset, name), output_target(dataset))


def evaluated_output_spikes(split: Split) -> int:
    """Output spikes the NeuronIO evaluation scores in ``split``: in its complete simulations
    with a kept spike count, after the skipped first SKIP_MS (surrogate.evaluate's rule)."""
    complete = split.intact
    if complete.size == 0:
        return 0
    lo, hi = KEPT_SPIKE_RANGE
    counts = split.spike_counts(complete)
    kept = complete[(counts >= lo) & (counts <= hi)]
    if kept.size == 0:
        return 0
    skip = SKIP_MS if split.n_time > SKIP_MS else 0
    return int(split.spike_labels(kept)[:, skip:].sum())
