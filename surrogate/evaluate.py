"""The NeuronIO evaluation protocol (as the ELM paper evaluates), on any dataset in our schema.

1. Windowed inference: 500 ms windows every 350 ms, each from a zero model state; window 0 gives
   its first 500 ms, every later window its steps 150 … 499 (the first 150 are burn-in); the last
   window is zero-padded past the end. All windows of a chunk of simulations run as one batch.
2. Per "file" (128 simulations, or the files an imported NeuronIO split came from) the predicted
   soma is z-scored over all its simulations and times and rescaled to the ground truth's mean/SD.
3. Simulations with 0–24 output spikes (over the whole simulation) are kept, the first 500 ms
   dropped, and all remaining time points pooled for the metrics (surrogate/metrics.py).
4. The spike AUC gets a 95 % bootstrap interval over the kept simulations (``spike_auc_ci95``),
   and a ``caution`` when it rests on fewer than 50 output spikes (``output_spikes``).
"""

from __future__ import annotations

import itertools
import math
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
from surrogate.data import SOMA_BIAS_MV, soma_mv
from surrogate.metrics import (
    ROC,
    MetricError,
    auc_caution,
    bootstrap_auc,
    rescale_to,
    soma_metrics,
    spike_metrics,
    spike_ranks,
)

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
    n_spikes_all = np.full(data.n_sims, -1, dtype=np.int64)
    n_spikes_all[complete] = data.spike_counts(complete)
    truths, predictions, raw, labels, scores, kept_ids = [], [], [], [], [], []
    for members in file_partition(dataset.protocol, complete, config.sims_per_file):
        prob_file, soma_file, truth_file, label_file = [], [], [], []
        for i in range(0, len(members), config.sims_per_batch):
            chunk = members[i : i + config.sims_per_batch]
            prob, soma = predict(model, data.signed_inputs(chunk), config, device)
            if not (np.isfinite(prob).all() and np.isfinite(soma).all()):
                raise InputError(
                    f"the model's predictions on {data} (simulations "
                    f"{', '.join(map(str, chunk[:6]))}) are not finite numbers: its weights "
                    "overflow float32 on these inputs; this checkpoint cannot be evaluated"
                )
            voltage = data.soma_v(chunk)
            prob_file.append(prob)
            soma_file.append(soma)
            truth_file.append(np.minimum(voltage.astype(np.float64), SOMA_CLIP_MV) - SOMA_BIAS_MV)
            label_file.append(data.spike_labels(chunk))
        truth = np.concatenate(truth_file)
        predicted = np.concatenate(soma_file).astype(np.float64)
        rescaled = rescale_to(predicted, truth)  # over the whole file
        lo, hi = config.spike_range
        keep = (n_spikes_all[members] >= lo) & (n_spikes_all[members] <= hi)
        skip = config.skip_ms if truth.shape[1] > config.skip_ms else 0
        truths.append(truth[keep, skip:])
        predictions.append(rescaled[keep, skip:])
        raw.append(predicted[keep, skip:])
        labels.append(np.concatenate(label_file)[keep, skip:])
        scores.append(np.concatenate(prob_file)[keep, skip:])
        kept_ids.append(members[keep])
    truth, prediction = np.concatenate(truths), np.concatenate(predictions)
    label, score = np.concatenate(labels), np.concatenate(scores)
    ids = np.concatenate(kept_ids)
    metrics: dict[str, Any] = {
        "split": split,
        "simulations": int(complete.size),
        "simulations_kept": int(ids.size),
        "time_points": int(label.size),
        "output_spikes": int(label.sum()),
        "protocol": {
            "window_ms": config.window,
            "burn_in_ms": config.burn_in,
            "stride_ms": config.stride,
            "skip_ms": config.skip_ms,
            "spike_range": list(config.spike_range),
        },
    }
    if ids.size == 0:
        metrics["note"] = f"no simulation has {lo}–{hi} output spikes; nothing was evaluated"
        return Evaluation(metrics, None)
    roc, spikes = None, []
    try:
        roc = ROC.of(label, score)
        metrics.update(spike_metrics(label, score))
        metrics["spike_auc_ci95"] = bootstrap_auc(label, score)  # over the kept simulations
        spikes = spike_table(data, ids, label, score, skip)
    except MetricError as exc:
        metrics["spike_note"] = str(exc)
    if (caution := auc_caution(metrics)) is not None:
        metrics["caution"] = caution
    metrics.update(soma_metrics(truth, prediction))
    raw_error = np.concatenate(raw).ravel() - truth.ravel()
    metrics["soma_rmse_raw_mv (not rescaled)"] = float(math.sqrt(np.mean(raw_error**2)))
    chosen = [int(k) for k in np.argsort(-n_spikes_all[ids], kind="stable")[:examples]]
    example_list = [
        {
            "simulation": int(ids[k]),
            "truth_mv": truth[k] + SOMA_BIAS_MV,
            "prediction_mv": prediction[k] + SOMA_BIAS_MV,
            "spikes": label[k],
            "probability": score[k],
            "offset_ms": skip,
        }
        for k in sorted(chosen)
    ]
    return Evaluation(metrics, roc, example_list, spikes)


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
