"""The NeuronIO evaluation metrics, as the ELM evaluation defines them.

Spike prediction: ROC with scikit-learn's semantics (intermediate points dropped); AUC by the
trapezoid rule; TP@f = tpr[i] with i = argmin |fpr − f|, at least 1; AUC@f = mean TPR over the
first i points of a uniform 20 000-point FPR grid on [0, 1], i = argmin |grid − f| clamped to
[1, 19 999] (i = 50 for f = 0.0025, 200 for f = 0.01).

Soma voltage: ground truth min(V, −55 mV) + 67.7 mV; the prediction is z-scored over one file
(all its simulations and times) and rescaled to the ground truth's mean and SD before RMSE, MAE
and explained variance 100·(1 − Var(GT − V̂)/Var(GT)). The raw RMSE, before rescaling, is
reported too, labelled as such.

Uncertainty: the spike AUC's 95 % bootstrap interval over simulations (they are the independent
units; bins of one simulation are not), from 1 000 seeded resamples with replacement. Each
resample's AUC is computed exactly from per-simulation pair counts (:func:`auc_pair_counts`),
so the interval costs one sort per simulation, not 1 000 ROC curves. Below
``FEW_SPIKES`` output spikes the AUC gets a caution (:func:`auc_caution`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elmpipe.errors import InputError

FP_RATES = (0.0025, 0.01)
GRID_POINTS = 20_000
#: bootstrap resamples of the spike AUC's interval, and their seed
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
#: simulations beyond this are resampled in this many contiguous groups (the pair-count matrix
#: is groups × groups)
BOOTSTRAP_MAX_GROUPS = 2000
#: an AUC resting on fewer output spikes than this is flagged as uncertain
FEW_SPIKES = 50


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
        from sklearn.metrics import roc_curve  # here: commands that never score need not load it

        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=True)
        return cls(fpr, tpr)

    @property
    def auc(self) -> float:
        from sklearn.metrics import auc as trapezoid_auc

        return float(trapezoid_auc(self.fpr, self.tpr))

    def tp_at(self, fp_rate: float) -> float:
        i = max(1, int(np.argmin(np.abs(self.fpr - fp_rate))))
        return float(self.tpr[i])

    def auc_at(self, fp_rate: float) -> float:
        grid = np.linspace(0.0, 1.0, GRID_POINTS)
        tpr = np.interp(grid, self.fpr, self.tpr)
        i = int(np.clip(np.argmin(np.abs(grid - fp_rate)), 1, GRID_POINTS - 1))
        return float(np.mean(tpr[:i]))


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


def auc_pair_counts(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair counts behind the AUC, per group of rows (simulations) of ``labels``/``scores``.

    ``labels`` and ``scores`` are (simulations, time). With ``groups`` (each row's group,
    0 … G − 1, non-decreasing; default: one group per row), returns C (G, G), P (G,) and N
    (G,): C[i, j] counts the (spike bin of group i, non-spike bin of group j) pairs ordered
    correctly, ties counted half; P and N count spike and non-spike bins. The AUC of the rows
    drawn w times each is wᵀCw / ((w·P)(w·N)): with w = 1, the AUC itself.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    rows = labels.shape[0]
    groups = np.arange(rows) if groups is None else np.asarray(groups)
    n_groups = int(groups.max()) + 1
    spike_rows, _ = np.nonzero(labels)
    positive_scores = scores[labels]
    positive_groups = groups[spike_rows]
    counts = np.zeros((n_groups, n_groups))
    negatives = np.zeros(n_groups)
    bounds = np.searchsorted(groups, np.arange(n_groups + 1))
    for j in range(n_groups):
        block = slice(bounds[j], bounds[j + 1])
        scored = np.sort(scores[block][~labels[block]])
        negatives[j] = scored.size
        below = np.searchsorted(scored, positive_scores, side="left")
        upto = np.searchsorted(scored, positive_scores, side="right")
        counts[:, j] = np.bincount(
            positive_groups, weights=below + 0.5 * (upto - below), minlength=n_groups
        )
    positives = np.bincount(positive_groups, minlength=n_groups).astype(np.float64)
    return counts, positives, negatives


def resampled_aucs(
    counts: np.ndarray, positives: np.ndarray, negatives: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """The AUC of each resample (a row of ``weights``: how often each group is drawn); NaN
    where a resample holds no spike or no non-spike bin."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    pairs = weights @ positives * (weights @ negatives)
    ordered = np.einsum("bi,ij,bj->b", weights, counts, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, ordered / pairs, np.nan)


def bootstrap_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    max_groups: int = BOOTSTRAP_MAX_GROUPS,
) -> list[float] | None:
    """95 % bootstrap interval [lo, hi] of the spike AUC over simulations (rows).

    Simulations are drawn with replacement (``resamples`` times, seeded: the same data give the
    same interval); beyond ``max_groups`` simulations, contiguous groups of them are drawn
    instead. Resamples without a spike are left out. None when no spike or non-spike bin.
    """
    labels = np.asarray(labels).astype(bool)
    if labels.ndim != 2 or not labels.any() or labels.all():
        return None
    rows = labels.shape[0]
    n_groups = min(rows, max_groups)
    groups = np.arange(rows) * n_groups // rows
    counts, positives, negatives = auc_pair_counts(labels, scores, groups)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=resamples)
    aucs = resampled_aucs(counts, positives, negatives, weights)
    aucs = aucs[np.isfinite(aucs)]
    if aucs.size == 0:
        return None
    low, high = np.percentile(aucs, [2.5, 97.5])
    return [float(low), float(high)]


def auc_caution(metrics: dict) -> str | None:
    """A caution when the spike AUC of an evaluation rests on fewer than ``FEW_SPIKES`` spikes."""
    spikes = metrics.get("output_spikes")
    if metrics.get("spike_auc") is None or spikes is None or spikes >= FEW_SPIKES:
        return None
    interval = metrics.get("spike_auc_ci95")
    span = f" (95 % bootstrap interval {interval[0]:.3f}–{interval[1]:.3f})" if interval else ""
    return (
        f"the spike AUC {metrics['spike_auc']:.3f} rests on {spikes} output spikes, fewer than "
        f"{FEW_SPIKES}: it is uncertain{span}, and so are TP and AUC at low false-positive "
        "rates; evaluate on more (or longer) test simulations before trusting it"
    )
