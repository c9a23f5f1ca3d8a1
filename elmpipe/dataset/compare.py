"""Comparing two datasets simulation by simulation: does a cell reproduce another's outputs?

This is how a lab checks a replay of NeuronIO files (or of any dataset) through its own cell:
for every simulation complete in both, the output spikes are matched in time order within a
tolerance (default 0.25 ms) — a reference spike with no candidate spike that close is *missing*,
a candidate spike with no reference spike that close is *extra* — and the soma traces are
compared by RMSE, raw and clipped at −55 mV (the NeuronIO soma target, where spike shapes do not
dominate). Only the time both datasets cover is compared.

Spike times imported from NeuronIO files are float16 (1 ms steps in [1024, 2048) ms, 2 ms up to
4096 ms, 4 ms beyond), so a comparison against them cannot be finer than that; the report says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from elmpipe.dataset.reader import Dataset, Split
from elmpipe.dataset.schema import SOMA_CLIP_MV
from elmpipe.errors import DatasetError

FLOAT16_NOTE = (
    "spike times of {which} are NeuronIO's float16 values (1 ms steps in [1024, 2048) ms, 2 ms "
    "up to 4096 ms, 4 ms beyond): matching cannot be finer than that"
)


def match_spikes(
    reference: np.ndarray, candidate: np.ndarray, tolerance_ms: float
) -> tuple[list[tuple[float, float]], list[float], list[float]]:
    """(matched pairs, missing reference spikes, extra candidate spikes), matched in time order:
    each reference spike takes the earliest unmatched candidate spike within the tolerance."""
    a, b = np.sort(np.asarray(reference, float)), np.sort(np.asarray(candidate, float))
    matched, missing, extra = [], [], []
    i = j = 0
    while i < len(a) and j < len(b):
        if abs(a[i] - b[j]) <= tolerance_ms + 1e-9:
            matched.append((float(a[i]), float(b[j])))
            i, j = i + 1, j + 1
        elif a[i] < b[j]:
            missing.append(float(a[i]))
            i += 1
        else:
            extra.append(float(b[j]))
            j += 1
    missing += [float(t) for t in a[i:]]
    extra += [float(t) for t in b[j:]]
    return matched, missing, extra


@dataclass
class SimulationComparison:
    simulation: int
    reference_spikes: int
    candidate_spikes: int
    matched: int
    missing: list[float]
    extra: list[float]
    largest_shift_ms: float | None
    soma_rmse_mv: float
    soma_rmse_clipped_mv: float


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def compare_simulation(
    reference: Split, candidate: Split, index: int, n_time: int, tolerance_ms: float
) -> SimulationComparison:
    ref, cand = reference.simulation(index), candidate.simulation(index)
    ref_times = ref["spike_times"][ref["spike_times"] < n_time]
    cand_times = cand["spike_times"][cand["spike_times"] < n_time]
    matched, missing, extra = match_spikes(ref_times, cand_times, tolerance_ms)
    v_ref = ref["soma_v"][:n_time].astype(np.float64)
    v_cand = cand["soma_v"][:n_time].astype(np.float64)
    return SimulationComparison(
        simulation=index,
        reference_spikes=len(ref_times),
        candidate_spikes=len(cand_times),
        matched=len(matched),
        missing=missing,
        extra=extra,
        largest_shift_ms=max((abs(x - y) for x, y in matched), default=None),
        soma_rmse_mv=_rmse(v_ref, v_cand),
        soma_rmse_clipped_mv=_rmse(
            np.minimum(v_ref, SOMA_CLIP_MV), np.minimum(v_cand, SOMA_CLIP_MV)
        ),
    )


def compare_split(
    reference: Dataset, candidate: Dataset, split: str, tolerance_ms: float
) -> dict[str, Any]:
    ref, cand = reference.split(split), candidate.split(split)
    both = np.intersect1d(ref.require_intact(), cand.require_intact())
    n_time = min(ref.n_time, cand.n_time)
    rows = [compare_simulation(ref, cand, int(k), n_time, tolerance_ms) for k in both]
    shifts = [r.largest_shift_ms for r in rows if r.largest_shift_ms is not None]
    summary = {
        "simulations": len(rows),
        "compared_ms": n_time,
        "reference_spikes": sum(r.reference_spikes for r in rows),
        "candidate_spikes": sum(r.candidate_spikes for r in rows),
        "matched": sum(r.matched for r in rows),
        "missing": sum(len(r.missing) for r in rows),
        "extra": sum(len(r.extra) for r in rows),
        "largest_shift_ms": max(shifts, default=None),
        "soma_rmse_mv": _pooled([r.soma_rmse_mv for r in rows]),
        "soma_rmse_clipped_mv": _pooled([r.soma_rmse_clipped_mv for r in rows]),
        "worst_soma_rmse_clipped_mv": max((r.soma_rmse_clipped_mv for r in rows), default=None),
    }
    only = {
        "reference_only": np.setdiff1d(ref.complete, cand.complete).tolist(),
        "candidate_only": np.setdiff1d(cand.complete, ref.complete).tolist(),
    }
    return {"summary": summary, **only, "simulations": [asdict(r) for r in rows]}


def _pooled(per_simulation: list[float]) -> float | None:
    """RMSE over all compared time points (every simulation covers the same duration)."""
    if not per_simulation:
        return None
    return float(np.sqrt(np.mean(np.square(per_simulation))))


def compare(
    reference: str | Path,
    candidate: str | Path,
    split: str | None = None,
    tolerance_ms: float = 0.25,
) -> dict[str, Any]:
    """Compare every split both stores hold (or ``split``); returns a JSON-ready report."""
    if tolerance_ms < 0:
        raise DatasetError(f"the spike tolerance must not be negative, got {tolerance_ms}")
    ref, cand = Dataset(reference), Dataset(candidate)
    if split is not None:
        splits = [split]
    else:
        splits = [s for s in ref.splits if s in cand.splits]
        if not splits:
            raise DatasetError(f"{ref.path} and {cand.path} have no split in common")
    if ref.n_channels != cand.n_channels:
        raise DatasetError(
            f"{ref.path} has {ref.n_channels} input channels, {cand.path} {cand.n_channels}: "
            "these are not simulations of the same inputs"
        )
    notes = [
        FLOAT16_NOTE.format(which=which)
        for which, data in (("the reference", ref), ("the candidate", cand))
        if data.spike_times_are_float16
    ]
    return {
        "reference": str(ref.path),
        "candidate": str(cand.path),
        "tolerance_ms": tolerance_ms,
        "notes": notes,
        "splits": {name: compare_split(ref, cand, name, tolerance_ms) for name in splits},
    }
