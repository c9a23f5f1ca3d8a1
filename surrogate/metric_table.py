"""The table of evaluation metrics: one row per key of ``metrics.json``, which every reader asks.

A row says how a metric is computed from the evaluation's pooled data (:class:`Pooled`: the kept
simulations' spike labels and probabilities, and the soma truth and prediction after the
NeuronIO rescaling), how it is labelled and formatted, and which way is better. The evaluation
(surrogate.evaluate), the report's table, ``elmpipe evaluate``'s printout and the sweep's
results table read this table; a new metric is one row (or one :func:`register` call from a
plugin) and its tests, with no other edit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np

from surrogate.metrics import FP_RATES, ROC, MetricError, bootstrap_auc, soma_metrics


@dataclass(frozen=True)
class Pooled:
    """What the metrics are computed from: (kept simulations, time) arrays after the first
    500 ms. ``truth`` and ``prediction`` are the soma in mV relative to −67.7 mV, the
    prediction rescaled per file; ``raw`` is the prediction before rescaling."""

    labels: np.ndarray
    scores: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    raw: np.ndarray

    @cached_property
    def roc(self) -> ROC:
        return ROC.of(self.labels, self.scores)  # MetricError without spikes or non-spikes

    @cached_property
    def soma(self) -> dict[str, float]:
        return soma_metrics(self.truth, self.prediction)


@dataclass(frozen=True)
class Metric:
    key: str  # the key in metrics.json (sweep tables prefix the split: test_spike_auc)
    label: str  # its column heading
    pattern: str  # str.format pattern of a value
    compute: Callable[[Pooled], Any]
    better: Literal["higher", "lower"] | None = None  # None: not a score (an interval, a count)
    in_sweep: bool = False  # a column of sweep tables and learning curves

    def format(self, value: Any, missing: str = "–") -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return missing
        try:
            return self.pattern.format(value)
        except (ValueError, TypeError, IndexError):
            return str(value)

    @property
    def is_score(self) -> bool:
        return self.better is not None


def _tp_at(rate: float) -> Callable[[Pooled], float]:
    return lambda pooled: pooled.roc.tp_at(rate)


def _auc_at(rate: float) -> Callable[[Pooled], float]:
    return lambda pooled: pooled.roc.auc_at(rate)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(math.sqrt(np.mean((np.asarray(a).ravel() - np.asarray(b).ravel()) ** 2)))


METRICS: list[Metric] = [
    Metric("spike_auc", "AUC", "{:.4f}", lambda p: p.roc.auc, "higher", in_sweep=True),
    Metric(
        "spike_auc_ci95",
        "AUC 95% interval",
        "{0[0]:.3f}–{0[1]:.3f}",
        lambda p: bootstrap_auc(p.labels, p.scores),  # over the kept simulations
        in_sweep=True,
    ),
    *(
        metric
        for rate in FP_RATES
        for metric in (
            Metric(
                f"tp_at_{rate:g}_fp",
                f"TP @ {100 * rate:g}% FP",
                "{:.3f}",
                _tp_at(rate),
                "higher",
                in_sweep=rate == 0.01,
            ),
            Metric(
                f"auc_at_{rate:g}_fp",
                f"AUC @ {100 * rate:g}% FP",
                "{:.4f}",
                _auc_at(rate),
                "higher",
            ),
        )
    ),
    Metric(
        "soma_rmse_mv", "soma RMSE (mV)", "{:.3f}", lambda p: p.soma["soma_rmse_mv"], "lower", True
    ),
    Metric("soma_mae_mv", "soma MAE (mV)", "{:.3f}", lambda p: p.soma["soma_mae_mv"], "lower"),
    Metric(
        "soma_explained_variance_pct",
        "soma EV (%)",
        "{:.2f}",
        lambda p: p.soma["soma_explained_variance_pct"],
        "higher",
    ),
    Metric(
        "soma_rmse_raw_mv (not rescaled)",
        "raw RMSE, not rescaled (mV)",
        "{:.3f}",
        lambda p: _rmse(p.raw, p.truth),
        "lower",
    ),
    Metric("simulations_kept", "simulations kept", "{}", lambda p: int(p.labels.shape[0])),
    Metric("output_spikes", "output spikes", "{}", lambda p: int(p.labels.sum()), in_sweep=True),
]

#: the two metrics that sweep printouts and their figures plot (spike, soma)
HEADLINE = ("spike_auc", "soma_rmse_mv")


def register(metric: Metric) -> Metric:
    """Add a row (a key already in the table is refused: two rows would write one key)."""
    if any(row.key == metric.key for row in METRICS):
        raise ValueError(f"a metric {metric.key!r} is already in the table")
    METRICS.append(metric)
    return metric


def find(key: str) -> Metric:
    for metric in METRICS:
        if metric.key == key:
            return metric
    raise KeyError(f"no metric {key!r} (one of {', '.join(m.key for m in METRICS)})")


def sweep_keys() -> tuple[str, ...]:
    return tuple(metric.key for metric in METRICS if metric.in_sweep)


def compute(pooled: Pooled) -> tuple[dict[str, Any], str | None]:
    """Every metric of the table, and the reason spike metrics are missing (no spikes, or only
    spikes: they are undefined, and left out)."""
    values: dict[str, Any] = {}
    note = None
    for metric in METRICS:
        try:
            values[metric.key] = metric.compute(pooled)
        except MetricError as exc:
            note = note or str(exc)
    return values, note
