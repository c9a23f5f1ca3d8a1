"""Every figure elmpipe draws (matplotlib, written as PNG): evaluation, training, sweeps.

Figures are made as ``matplotlib.figure.Figure`` objects, not through pyplot, so importing this
module leaves the caller's matplotlib backend alone (a notebook keeps its inline one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from mpl_toolkits.axes_grid1.inset_locator import mark_inset

from surrogate.metrics import ROC


def roc_figure(roc: ROC, path: str | Path, label: str = "", fp_zoom: float = 0.01) -> Path:
    """ROC curve with the low false-positive region magnified in an inset."""
    fig = Figure(figsize=(5.2, 4.6), dpi=120)
    ax = fig.subplots()
    ax.plot(roc.fpr, roc.tpr, color="C0", lw=1.6, label=f"{label} AUC {roc.auc:.4f}".strip())
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Output spike prediction (1 ms bins)")
    ax.legend(loc="lower right", fontsize=8)
    inset = ax.inset_axes((0.42, 0.18, 0.5, 0.42))
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
    return Path(path)


def traces_figure(examples: list[dict], path: str | Path, threshold: float | None = None) -> Path:
    """True vs predicted soma voltage and spike rasters for a few test simulations."""
    n = max(1, len(examples))
    fig = Figure(figsize=(9, 2.6 * n), dpi=110)
    axes = fig.subplots(2 * n, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1] * n})
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
    return Path(path)


def sweep_figure(rows: list[dict], path: Path, split: str = "test") -> Path:
    """Evaluated AUC and soma RMSE against trainable parameters (log axis), one line per
    family."""
    fig = Figure(figsize=(10, 4), dpi=120)
    ax_auc, ax_rmse = fig.subplots(1, 2)
    families = sorted({r["family"] for r in rows})
    for i, family in enumerate(families):
        points = sorted((r for r in rows if r["family"] == family), key=lambda r: r["parameters"])
        params = [p["parameters"] for p in points]
        style = {"marker": "o", "color": f"C{i}", "label": family.upper()}
        ax_auc.plot(params, [p.get("spike_auc") or float("nan") for p in points], **style)
        ax_rmse.plot(params, [p.get("soma_rmse_mv") or float("nan") for p in points], **style)
    _label_metric_axes(ax_auc, ax_rmse, split, "trainable parameters", legend_size=8)
    return _saved(fig, "Accuracy against model size", path)


def learning_curve_figure(
    rows: list[dict], split: str, path: Path, reference: dict | None = None
) -> Path:
    """Evaluated spike AUC and soma RMSE against simulated training minutes (log axis): one
    line per model and start (scratch / warm start), with an optional reference model's score
    on the same split as a horizontal line."""
    fig = Figure(figsize=(10, 4), dpi=120)
    ax_auc, ax_rmse = fig.subplots(1, 2)
    curves: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        model = row["name"].split("-n")[0]
        start = (
            "from scratch"
            if row["start"] == "scratch"
            else f"warm start ({Path(row['start']).stem})"
        )
        curves.setdefault((model, start), []).append(row)
    for i, ((model, start), points) in enumerate(sorted(curves.items())):
        points = sorted(points, key=lambda r: r["training_minutes"])
        minutes = [p["training_minutes"] for p in points]
        style = {"marker": "o", "color": f"C{i}", "label": f"{model}, {start}"}
        ax_auc.plot(minutes, [p.get(f"{split}_spike_auc") or float("nan") for p in points], **style)
        ax_rmse.plot(
            minutes, [p.get(f"{split}_soma_rmse_mv") or float("nan") for p in points], **style
        )
    if reference:
        for ax, key in ((ax_auc, "spike_auc"), (ax_rmse, "soma_rmse_mv")):
            if reference.get(key) is not None:
                ax.axhline(reference[key], color="k", ls="--", lw=1, label=reference["name"])
    _label_metric_axes(ax_auc, ax_rmse, split, "simulated training data (minutes)", legend_size=7)
    sizes = sorted({row["training_minutes"] for row in rows})
    for ax in (ax_auc, ax_rmse):  # the measured sizes as plain numbers, not powers of ten
        ax.set_xticks(sizes, [f"{m:.3g}" for m in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
    return _saved(fig, "Learning curves: accuracy against the amount of training data", path)


def _label_metric_axes(ax_auc, ax_rmse, split: str, xlabel: str, legend_size: int) -> None:
    """The two panels of AUC and RMSE against a size on a log axis."""
    for ax, label in ((ax_auc, f"spike AUC ({split})"), (ax_rmse, f"soma RMSE (mV, {split})")):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=legend_size)


def _saved(fig: Figure, title: str, path: Path) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    return path


def training_figure(runs: dict[str, Path], path: Path) -> Path | None:
    histories = {}
    for name, run_dir in runs.items():
        log = run_dir / "metrics.jsonl"
        if log.exists():
            histories[name] = [json.loads(line) for line in log.read_text().splitlines()]
    if not histories:
        return None
    fig = Figure(figsize=(10, 3.6), dpi=120)
    ax_loss, ax_rmse = fig.subplots(1, 2)
    for name, rows in histories.items():
        epochs = [r["epoch"] for r in rows]
        trained = [r for r in rows if "train_loss" in r]  # a warm start's epoch 0 has none
        trained_epochs = [r["epoch"] for r in trained]
        ax_loss.plot(trained_epochs, [r["train_loss"] for r in trained], marker=".", label=name)
        if "valid_soma_rmse_mv" in rows[0]:
            ax_rmse.plot(epochs, [r["valid_soma_rmse_mv"] for r in rows], marker=".", label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax_rmse.set(xlabel="epoch", ylabel="validation soma RMSE (mV)")
    for ax in (ax_loss, ax_rmse):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path
