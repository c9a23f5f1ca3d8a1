"""The NeuronIO evaluation metrics, as the ELM evaluation defines them.

Spike prediction: ROC with scikit-learn's semantics (intermediate points dropped); AUC by the
trapezoid rule; TP@f = tpr[i] with i = argmin |fpr − f|, at least 1; AUC@f = mean TPR over the
first i points of a uniform 20 000-point FPR grid on [0, 1], i = argmin |grid − f| clamped to
[1, 19 999] (i = 50 for f = 0.0025, 200 for f = 0.01).

Soma voltage: ground truth min(V, −55 mV) + 67.7 mV; the prediction is z-scored over one file
(all its simulations and times) and rescaled to the ground truth's mean and SD before RMSE, MAE
and explained variance 100·(1 − Var(GT − V̂)/Var(GT)). The raw RMSE, before rescaling, is
reported too, labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import auc as trapezoid_auc
from sklearn.metrics import roc_curve

from elmpipe.errors import InputError

FP_RATES = (0.0025, 0.01)
GRID_POINTS = 20_000


class MetricError(InputError):
    """A metric is undefined for the data given (e.g. no spikes at all)."""


@dataclass(frozen=True)
class ROC:
    fpr: np.ndarray
    tpr: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, scores: np.ndarray) -> ROC:
        labels = np.asarray(labels).astype(bool).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if labels.size == 0:
            raise MetricError("no time points to evaluate")
        if labels.all() or not labels.any():
            what = "no output spikes" if not labels.any() else "only spikes"
            raise MetricError(
                f"spike metrics are undefined: the evaluated simulations contain {what} "
                f"({labels.size} time bins); evaluate on simulations with output spikes"
            )
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=True)
        return cls(fpr, tpr)

    @property
    def auc(self) -> float:
        return float(trapezoid_auc(self.fpr, self.tpr))

    def tp_at(self, fp_rate: float) -> float:
        i = max(1, int(np.argmin(np.abs(self.fpr - fp_rate))))
        return float(self.tpr[i])

    def auc_at(self, fp_rate: float) -> float:
        grid = np.linspace(0.0, 1.0, GRID_POINTS)
        tpr = np.interp(grid, self.fpr, self.tpr)
        i = int(np.clip(np.argmin(np.abs(grid - fp_rate)), 1, GRID_POINTS - 1))
        return float(np.mean(tpr[:i]))


def spike_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    roc = ROC.of(labels, scores)
    out = {"spike_auc": roc.auc}
    for f in FP_RATES:
        out[f"tp_at_{f:g}_fp"] = roc.tp_at(f)
        out[f"auc_at_{f:g}_fp"] = roc.auc_at(f)
    return out


def spike_ranks(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """For each spike bin (in ``labels``' order), the fraction of non-spike bins scored above
    it, ties counted half.

    Their mean is exactly 1 − AUC, so they say which output spikes cost the AUC: a whole event
    the surrogate never predicts shows up as a few spikes with most non-spike bins above them,
    a diffuse weakness as many small values.
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    negatives = np.sort(scores[~labels])
    positives = scores[labels]
    if negatives.size == 0:
        raise MetricError("spike ranks are undefined without non-spike bins")
    lower = np.searchsorted(negatives, positives, side="left")
    upper = np.searchsorted(negatives, positives, side="right")
    return (negatives.size - upper + 0.5 * (upper - lower)) / negatives.size


def rescale_to(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """z-score ``prediction`` over all its values, then give it ``truth``'s mean and SD.

    A constant prediction has no SD to normalise; it becomes the truth's mean.
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    sd = prediction.std()
    if sd == 0:
        return np.full_like(prediction, truth.mean())
    return truth.std() * (prediction - prediction.mean()) / sd + truth.mean()


def soma_metrics(truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and explained variance (%) of an already aligned prediction (mV)."""
    truth = np.asarray(truth, dtype=np.float64).ravel()
    prediction = np.asarray(prediction, dtype=np.float64).ravel()
    error = truth - prediction
    variance = truth.var()
    return {
        "soma_rmse_mv": float(np.sqrt(np.mean(error**2))),
        "soma_mae_mv": float(np.mean(np.abs(error))),
        "soma_explained_variance_pct": float(100.0 * (1.0 - error.var() / variance))
        if variance > 0
        else float("nan"),
    }
