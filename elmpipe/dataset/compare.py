"""Comparing two datasets simulation by simulation: does a cell reproduce another's outputs?

This is how a lab checks a replay of NeuronIO files (or of any dataset) through its own cell:
for every simulation complete in both, the output spikes are matched in time order within a
tolerance (default 0.25 ms) — a reference spike with no candidate spike that close is *missing*,
a candidate spike with no reference spike that close is *extra* — and the soma traces are
compared by RMSE, raw and clipped at −55 mV (the NeuronIO soma target, where spike shapes do not
dominate). Only the time both datasets cover is compared.

Both datasets must come from the same cell: their recorded segment tables (row i = input
channels i and n + i) are compared row by row, and a difference is refused naming the first
differing rows and fields — a replay onto another cell, or onto the same cell read with another
channel order, is never compared silently. Stores that record no segment table are compared by
their channel counts only, and the report says so.

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


#: segment-table columns compared exactly, and with a relative/absolute tolerance of 1e-6
EXACT_COLUMNS = ("section", "region", "section_index")
FLOAT_COLUMNS = ("x", "length", "area", "diam", "distance", "xyz")
#: what a table that elmpipe's cell did not write (a NeuronIO import) is compared by: the
#: region of each row, and where a new section starts (NeuronIO numbers sections across both
#: regions, elmpipe within each; lengths and distances have NeuronIO's own definitions)
IMPORTED_COLUMNS = ("region", "section_start")


def _with_section_starts(table: dict[str, Any]) -> dict[str, Any]:
    """Rows that begin a section: the section index or the region changes."""
    index = list(table.get("section_index") or [])
    region = list(table.get("region") or [None] * len(index))
    if len(region) != len(index):
        return table
    starts = [
        i == 0 or index[i] != index[i - 1] or region[i] != region[i - 1] for i in range(len(index))
    ]
    return {**table, "section_start": starts}


def _rows(table: dict[str, Any]) -> int:
    return max((len(v) for v in table.values() if isinstance(v, list)), default=0)


def _same(column: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if column in FLOAT_COLUMNS:
        close = np.isclose(a.astype(float), b.astype(float), rtol=1e-6, atol=1e-6, equal_nan=True)
        return close.reshape(len(a), -1).all(axis=1)
    if column == "region":
        return np.char.lower(a.astype(str)) == np.char.lower(b.astype(str))
    return a.astype(str) == b.astype(str)


def _value(column: str, value: Any) -> str:
    if column in FLOAT_COLUMNS:
        return (
            "(" + ", ".join(f"{v:.6g}" for v in value) + ")" if np.ndim(value) else f"{value:.6g}"
        )
    return str(value)


def segment_table_check(
    reference: dict[str, Any], candidate: dict[str, Any], names: tuple[str, str]
) -> tuple[str | None, str]:
    """Compare two cells' recorded segment tables (``cell`` attributes of two datasets).

    Returns (the difference, or None when the tables agree; what was compared, in words).
    Tables written by elmpipe's cell are compared column by column (section, region, section
    index exactly; x, length, area, diameter, distance, position to 1e-6); a table without
    section names (a NeuronIO import) by region and where sections start; a missing table not
    at all.
    """
    tables = [(cell or {}).get("segment_table") or {} for cell in (reference, candidate)]
    missing = [name for name, table in zip(names, tables, strict=True) if not table]
    if missing:
        return None, (
            f"{' and '.join(missing)} record{'s' if len(missing) == 1 else ''} no segment "
            "table: only the numbers of input channels were compared"
        )
    a, b = tables
    full = "section" in a and "section" in b
    if not full:
        a, b = _with_section_starts(a), _with_section_starts(b)
    candidates = EXACT_COLUMNS + FLOAT_COLUMNS if full else IMPORTED_COLUMNS
    columns = [c for c in candidates if a.get(c) and b.get(c)]
    n_a, n_b = _rows(a), _rows(b)
    if n_a != n_b:
        return f"{names[0]} has {n_a} dendritic segments, {names[1]} {n_b}", ""
    if not columns:
        return None, "the segment tables share no column: only channel counts were compared"
    same = np.ones(n_a, bool)
    fields: dict[str, np.ndarray] = {}
    for column in columns:
        agree = _same(column, np.asarray(a[column]), np.asarray(b[column]))
        fields[column] = ~agree
        same &= agree
    compared = f"segment tables compared row by row ({n_a} rows: {', '.join(columns)})"
    if same.all():
        return None, compared
    rows = np.flatnonzero(~same)
    differing = [c for c in columns if fields[c].any()]
    shown = []
    for row in rows[:3]:
        parts = [
            f"{c} {_value(c, a[c][row])} vs {_value(c, b[c][row])}"
            for c in columns
            if fields[c][row]
        ]
        shown.append(f"row {row}: " + ", ".join(parts[:3]))
    return (
        f"{len(rows)} of {n_a} segment rows differ ({', '.join(differing)}) between "
        f"{names[0]} and {names[1]}; first " + "; ".join(shown)
    ), compared


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
    other_inputs = [int(k) for k in both if not _same_inputs(ref, cand, int(k), n_time)]
    if both.size and len(other_inputs) == both.size:
        raise DatasetError(
            f"[{split}] no simulation of {reference.path} has the same inputs as in "
            f"{candidate.path} (simulations {_indices(other_inputs)}): these are not replays of "
            "each other, and comparing their outputs would mean nothing (a replay: "
            "`elmpipe simulate --replay REFERENCE`)"
        )
    both = np.setdiff1d(both, other_inputs)
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
        "different_inputs": other_inputs,
    }
    return {"summary": summary, **only, "simulations": [asdict(r) for r in rows]}


def _same_inputs(reference: Split, candidate: Split, index: int, n_time: int) -> bool:
    """Did both simulations get the same inputs (what makes one a replay of the other)?"""
    a = reference.read("inputs", np.array([index]))[0, :n_time]
    b = candidate.read("inputs", np.array([index]))[0, :n_time]
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _indices(values: list[int], most: int = 6) -> str:
    shown = ", ".join(map(str, values[:most]))
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


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
    if not 0 <= tolerance_ms < float("inf"):  # nan fails both comparisons
        raise DatasetError(f"the spike tolerance must be a number ≥ 0 ms, got {tolerance_ms}")
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
    difference, cells = segment_table_check(ref.cell, cand.cell, ("the reference", "the candidate"))
    if difference is not None:
        raise DatasetError(
            f"{ref.path} and {cand.path} do not come from the same cell (the same input channel "
            f"on the same segment): {difference}"
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
        "cells": cells,
        "notes": notes,
        "splits": {name: compare_split(ref, cand, name, tolerance_ms) for name in splits},
    }
