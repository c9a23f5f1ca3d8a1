"""Writing one evaluation's artefacts: metrics.json (with the ROC points), roc.png, traces.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_evaluation(result: Any, out: Path, checkpoint: Path) -> None:
    from surrogate.plots import roc_figure, traces_figure

    out.mkdir(parents=True, exist_ok=True)
    metrics = {**result.metrics, "checkpoint": str(checkpoint)}
    if result.roc is not None:
        roc_figure(result.roc, out / "roc.png")
        metrics["roc"] = {"fpr": result.roc.fpr.tolist(), "tpr": result.roc.tpr.tolist()}
    if result.examples:
        traces_figure(result.examples, out / "traces.png")
    partial = out / ".metrics.json.partial"
    partial.write_text(json.dumps(metrics, indent=2))
    partial.replace(out / "metrics.json")  # written last: its presence means "evaluated"
