"""Writing one evaluation's artefacts: metrics.json (with the ROC points), roc.png, traces.png
and spikes.csv (every output spike evaluated, the ones that cost the AUC most first)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from elmpipe.outputs import atomic_write, write_json_atomic

SPIKE_COLUMNS = ("simulation", "time_ms", "probability", "negatives_above", "nexus_max_mv")


def write_spikes(spikes: list[dict[str, float]], path: Path) -> None:
    """In the evaluation's order, costliest first: ``negatives_above`` is the fraction of
    non-spike bins the surrogate scored higher than the spike, and its mean is 1 − AUC."""
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SPIKE_COLUMNS)
        writer.writeheader()
        for row in spikes:
            writer.writerow(
                {
                    **row,
                    "probability": f"{row['probability']:.6g}",
                    "negatives_above": f"{row['negatives_above']:.6g}",
                    "nexus_max_mv": f"{row['nexus_max_mv']:.2f}",
                }
            )


def write_evaluation(result: Any, out: Path, checkpoint: Path) -> None:
    from surrogate.plots import roc_figure, traces_figure

    out.mkdir(parents=True, exist_ok=True)
    metrics = {**result.metrics, "checkpoint": str(checkpoint)}
    if result.roc is not None:
        roc_figure(result.roc, out / "roc.png")
        metrics["roc"] = {"fpr": result.roc.fpr.tolist(), "tpr": result.roc.tpr.tolist()}
    if result.examples:
        traces_figure(result.examples, out / "traces.png")
    if result.spikes:
        write_spikes(result.spikes, out / "spikes.csv")
    write_json_atomic(out / "metrics.json", metrics)  # last: its presence means "evaluated"
