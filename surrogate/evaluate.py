"""The NeuronIO evaluation protocol (as the ELM paper evaluates), on any dataset in our schema.

1. Windowed inference: 500 ms windows every 350 ms, each from a zero model state; window 0 gives
   its first 500 ms, every later window its steps 150 … 499 (the first 150 are burn-in); the last
   window is zero-padded past the end. All windows of a chunk of simulations run as one batch.
2. Per "file" (128 simulations, or the files an imported NeuronIO split came from) the predicted
   soma is z-scored over all its simulations and times and rescaled to the ground truth's mean/SD.
3. Simulations with 0–24 output spikes (over the whole simulation) are kept, the first 500 ms
   dropped, and all remaining time points pooled for every metric of the table
   (surrogate/metric_table.py; computed as surrogate/metrics.py defines them).
4. The spike AUC gets a 95 % bootstrap interval over the kept simulations (``spike_auc_ci95``),
   and a ``caution`` when it rests on fewer than 50 output spikes (``output_spikes``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from elmpipe.dataset import (
    KEPT_SPIKE_RANGE,
    SIMS_PER_FILE,
    SKIP_MS,
    SOMA_CLIP_MV,
    Dataset,
    DatasetError,
    Split,
)
from elmpipe.errors import InputError
from surrogate import metric_table
from surrogate.data import SOMA_BIAS_MV, soma_mv
from surrogate.metric_table import Pooled
from surrogate.metrics import ROC, auc_caution, rescale_to, spike_ranks

#: a calcium spike at the apical nexus holds it above this for tens of milliseconds; back-
#: propagating action potentials, sampled at 1 kHz, stay well below it (on the Hay study's test
#: split, at most −59 mV within 10 ms of the spikes that came without a calcium spike)
NEXUS_CALCIUM_MV = -40.0
NEXUS_WINDOW_MS = 10


@dataclass(frozen=True)
class EvaluationConfig:
    window: int = 500
    burn_in: int = 150
    stride: int = 350
    skip_ms: int = SKIP_MS  # dropped from every simulation before pooling
    spike_range: tuple[int, int] = KEPT_SPIKE_RANGE  # simulations kept, by output spikes
    sims_per_file: int = SIMS_PER_FILE  # rescaling unit for datasets not imported from files
    sims_per_batch: int = 8  # simulations whose windows run together


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    roc: ROC | None
    examples: list[dict[str, np.ndarray]] = field(default_factory=list)
    #: one row per output spike evaluated, costliest first (spike_table)
    spikes: list[dict[str, float]] = field(default_factory=list)


def window_starts(n_time: int, window: int, stride: int) -> list[int]:
    """Start of every window: int(2 + (T − W)/S) windows (17 for 6 s), the last one padded."""
    if n_time <= window:
        return [0]
    return [k * stride for k in range(int(2 + (n_time - window) / stride))]


@torch.no_grad()
def predict(
    model: nn.Module, inputs: np.ndarray, config: EvaluationConfig, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Windowed inference on signed inputs (sims, time, channels).

    Returns the spike probability and the soma prediction in mV relative to −67.7 mV, both
    (sims, time).
    """
    n_sims, n_time, n_channels = inputs.shape
    w, b = config.window, config.burn_in
    starts = window_starts(n_time, w, config.stride)
    padded = np.zeros((n_sims, starts[-1] + w, n_channels), dtype=np.float32)
    padded[:, :n_time] = inputs
    windows = np.stack([padded[:, s : s + w] for s in starts], axis=1)  # (sims, K, W, C)
    out = model(torch.from_numpy(windows.reshape(-1, w, n_channels)).to(device)).cpu().numpy()
    out = out.reshape(n_sims, len(starts), w, -1)
    stitched = np.zeros((n_sims, n_time, out.shape[-1]), dtype=np.float32)
    for k, start in enumerate(starts):
        first = 0 if k == 0 else b
        lo, hi = start + first, min(start + w, n_time)
        if lo < hi:
            stitched[:, lo:hi] = out[:, k, first : first + hi - lo]
    probability = 1.0 / (1.0 + np.exp(-stitched[..., 0].astype(np.float64)))
    return probability.astype(np.float32), soma_mv(stitched[..., 1])


def file_partition(
    protocol: dict[str, Any], complete: np.ndarray, per_file: int
) -> list[np.ndarray]:
    """Groups of simulation indices that are z-scored together (NeuronIO's files)."""
    if protocol.get("kind") == "neuronio-import" and protocol.get("files"):
        bounds = np.concatenate([[0], np.cumsum([n for _, n in protocol["files"]])])
        groups = [np.arange(lo, hi) for lo, hi in itertools.pairwise(bounds)]
    else:
        groups = [complete[i : i + per_file] for i in range(0, len(complete), per_file)]
    keep = set(complete.tolist())
    return [np.array([i for i in g if i in keep], dtype=np.int64) for g in groups if len(g)]


def _predict_file(
    model: nn.Module, data: Split, members: np.ndarray, config: EvaluationConfig, device: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One file's spike probability, soma prediction (not rescaled), soma truth (clipped, both
    relative to −67.7 mV) and spike labels: (simulations, time) each."""
    probs, somas, truths, labels = [], [], [], []
    for i in range(0, len(members), config.sims_per_batch):
        chunk = members[i : i + config.sims_per_batch]
        prob, soma = predict(model, data.signed_inputs(chunk), config, device)
        if not (np.isfinite(prob).all() and np.isfinite(soma).all()):
            raise InputError(
                f"the model's predictions on {data} (simulations "
                f"{', '.join(map(str, chunk[:6]))}) are not finite numbers: its weights "
                "overflow float32 on these inputs; this checkpoint cannot be evaluated"
            )
        voltage = data.soma_v(chunk).astype(np.float64)
        probs.append(prob)
        somas.append(soma)
        truths.append(np.minimum(voltage, SOMA_CLIP_MV) - SOMA_BIAS_MV)
        labels.append(data.spike_labels(chunk))
    predicted = np.concatenate(somas).astype(np.float64)
    return np.concatenate(probs), predicted, np.concatenate(truths), np.concatenate(labels)


def _pooled(
    model: nn.Module,
    dataset: Dataset,
    data: Split,
    n_spikes: np.ndarray,
    config: EvaluationConfig,
    device: Any,
) -> tuple[Pooled, np.ndarray, int]:
    """The kept simulations' data, pooled over files (each file's prediction rescaled over the
    whole file first); their indices; the milliseconds dropped from each."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("label", "score", "truth", "pred", "raw")}
    kept, skip = [], 0
    lo, hi = config.spike_range
    for members in file_partition(
        dataset.protocol, np.flatnonzero(n_spikes >= 0), config.sims_per_file
    ):
        prob, predicted, truth, label = _predict_file(model, data, members, config, device)
        rescaled = rescale_to(predicted, truth)  # over the whole file
        keep = (n_spikes[members] >= lo) & (n_spikes[members] <= hi)
        skip = config.skip_ms if truth.shape[1] > config.skip_ms else 0
        for key, values in zip(parts, (label, prob, truth, rescaled, predicted), strict=True):
            parts[key].append(values[keep, skip:])
        kept.append(members[keep])
    joined = {key: np.concatenate(values) for key, values in parts.items()}
    pooled = Pooled(
        joined["label"], joined["score"], joined["truth"], joined["pred"], joined["raw"]
    )
    return pooled, np.concatenate(kept), skip


def _examples(
    pooled: Pooled, ids: np.ndarray, n_spikes: np.ndarray, count: int, skip: int
) -> list[dict[str, Any]]:
    """The ``count`` kept simulations with the most output spikes, in simulation order."""
    chosen = [int(k) for k in np.argsort(-n_spikes[ids], kind="stable")[:count]]
    return [
        {
            "simulation": int(ids[k]),
            "truth_mv": pooled.truth[k] + SOMA_BIAS_MV,
            "prediction_mv": pooled.prediction[k] + SOMA_BIAS_MV,
            "spikes": pooled.labels[k],
            "probability": pooled.scores[k],
            "offset_ms": skip,
        }
        for k in sorted(chosen)
    ]


def evaluate(
    model: nn.Module,
    store: str | Path,
    split: str = "test",
    config: EvaluationConfig = EvaluationConfig(),
    device: torch.device | str = "cpu",
    examples: int = 3,
) -> Evaluation:
    """Evaluate ``model`` on the complete simulations of ``split``."""
    device = torch.device(device)
    model = model.to(device).eval()
    dataset = Dataset(store)
    data = dataset.split(split)
    complete = data.require_intact()
    if complete.size == 0:
        raise DatasetError(f"{data} has no complete simulations")
    expected = _model_inputs(model)
    if expected is not None and expected != data.n_channels:
        raise DatasetError(f"the model takes {expected} inputs; {data} has {data.n_channels}")
    n_spikes = np.full(data.n_sims, -1, dtype=np.int64)  # −1: not complete
    n_spikes[complete] = data.spike_counts(complete)
    pooled, ids, skip = _pooled(model, dataset, data, n_spikes, config, device)
    metrics: dict[str, Any] = {
        "split": split,
        "simulations": int(complete.size),
        "simulations_kept": int(ids.size),
        "time_points": int(pooled.labels.size),
        "output_spikes": int(pooled.labels.sum()),
        "protocol": {
            "window_ms": config.window,
            "burn_in_ms": config.burn_in,
            "stride_ms": config.stride,
            "skip_ms": config.skip_ms,
            "spike_range": list(config.spike_range),
        },
    }
    if ids.size == 0:
        lo, hi = config.spike_range
        metrics["note"] = f"no simulation has {lo}–{hi} output spikes; nothing was evaluated"
        return Evaluation(metrics, None)
    values, spike_note = metric_table.compute(pooled)
    metrics.update(values)
    roc, spikes = None, []
    if spike_note is None:
        roc = pooled.roc
        spikes = spike_table(data, ids, pooled.labels, pooled.scores, skip)
    else:
        metrics["spike_note"] = spike_note
    if (caution := auc_caution(metrics)) is not None:
        metrics["caution"] = caution
    return Evaluation(metrics, roc, _examples(pooled, ids, n_spikes, examples, skip), spikes)


def spike_table(
    data: Split, ids: np.ndarray, label: np.ndarray, score: np.ndarray, skip: int
) -> list[dict[str, float]]:
    """One row per output spike evaluated, costliest first: simulation, time_ms, probability;
    the fraction of non-spike bins scored above it (its share of 1 − AUC,
    ``metrics.spike_ranks``); and the highest nexus voltage within ``NEXUS_WINDOW_MS`` of it,
    which tells the spikes that a dendritic calcium spike drove (``NEXUS_CALCIUM_MV``) from the
    others."""
    rows, times = np.nonzero(label)
    ranks = spike_ranks(label, score)  # row-major, as np.nonzero orders them
    nexus = data.read("nexus_v", ids)
    table = []
    for r, t, rank in zip(rows, times, ranks, strict=True):
        at = t + skip
        around = nexus[r, max(0, at - NEXUS_WINDOW_MS) : at + NEXUS_WINDOW_MS + 1]
        table.append(
            {
                "simulation": int(ids[r]),
                "time_ms": int(at),
                "probability": float(score[r, t]),
                "negatives_above": float(rank),
                "nexus_max_mv": float(np.max(around)),
            }
        )
    return sorted(table, key=lambda row: -row["negatives_above"])


def _model_inputs(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "num_input", None)
