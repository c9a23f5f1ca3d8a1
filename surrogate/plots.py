"""Evaluation figures (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
from mpl_toolkits.axes_grid1.inset_locator import mark_inset

from surrogate.metrics import ROC


def roc_figure(roc: ROC, path: str | Path, label: str = "", fp_zoom: float = 0.01) -> Path:
    """ROC curve with the low false-positive region magnified in an inset."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=120)
    ax.plot(roc.fpr, roc.tpr, color="C0", lw=1.6, label=f"{label} AUC {roc.auc:.4f}".strip())
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Output spike prediction (1 ms bins)")
    ax.legend(loc="lower right", fontsize=8)
    inset = ax.inset_axes([0.42, 0.18, 0.5, 0.42])
    inset.plot(roc.fpr, roc.tpr, color="C0", lw=1.4)
    for f in (0.0025, 0.01):
        inset.axvline(f, color="C3", lw=0.8, ls=":")
        inset.text(f, 0.02, f" {f:g}", color="C3", fontsize=7, rotation=90, va="bottom")
    visible = roc.tpr[roc.fpr <= fp_zoom]
    inset.set(
        xlim=(0, fp_zoom), ylim=(0, min(1.0, (visible.max() if visible.size else 1) * 1.15 + 0.02))
    )
    inset.tick_params(labelsize=7)
    inset.set_title(f"FPR ≤ {fp_zoom:g}", fontsize=8)
    mark_inset(ax, inset, loc1=2, loc2=4, fc="none", ec="0.6", lw=0.6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def traces_figure(examples: list[dict], path: str | Path, threshold: float | None = None) -> Path:
    """True vs predicted soma voltage and spike rasters for a few test simulations."""
    n = max(1, len(examples))
    fig, axes = plt.subplots(
        2 * n,
        1,
        figsize=(9, 2.6 * n),
        dpi=110,
        sharex=True,
        gridspec_kw={"height_ratios": [4, 1] * n},
    )
    axes = np.atleast_1d(axes)
    for i, ex in enumerate(examples):
        t = ex["offset_ms"] + np.arange(ex["truth_mv"].size)
        ax, raster = axes[2 * i], axes[2 * i + 1]
        ax.plot(t, ex["truth_mv"], color="k", lw=0.9, label="simulation (clipped at −55 mV)")
        ax.plot(t, ex["prediction_mv"], color="C1", lw=0.9, label="surrogate")
        ax.set_ylabel("soma (mV)")
        ax.set_title(f"test simulation {ex['simulation']}", fontsize=9, loc="left")
        if i == 0:
            ax.legend(loc="upper right", fontsize=8, ncol=2)
        spikes = t[ex["spikes"].astype(bool)]
        raster.vlines(spikes, 0.55, 1.0, color="k", lw=1.0)
        peak = float(ex["probability"].max()) or 1.0
        raster.plot(t, 0.5 * ex["probability"] / peak, color="C1", lw=0.8)
        if threshold is not None:
            predicted = t[ex["probability"] >= threshold]
            raster.vlines(predicted, 0.0, 0.45, color="C1", lw=0.6)
        raster.set(ylim=(0, 1.05), yticks=[])
        raster.set_ylabel("spikes", fontsize=8)
        raster.text(
            t[0], 0.5, f" surrogate p (peak {peak:.2f})", fontsize=7, color="C1", va="bottom"
        )
    axes[-1].set_xlabel("time (ms)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
