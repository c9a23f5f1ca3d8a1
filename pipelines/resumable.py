"""Done, resume or redo: the one decision ``elmpipe run`` and ``elmpipe sweep`` make for every fit
and evaluation they were asked for.

A fit is **finished** when its run folder holds ``result.json`` (written last), **interrupted**
when it holds ``last.pt`` (the end of an epoch) and nothing is finished, and **new** otherwise: a
finished fit is kept, an interrupted one resumes from its last epoch, a new one starts. An
evaluation is **current** when its ``metrics.json`` (written last) is not older than the
checkpoint it scored; a checkpoint trained again since is evaluated again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from surrogate.train import finished_result

FitState = Literal["finished", "interrupted", "new"]


def fit_state(run_dir: Path) -> FitState:
    if finished_result(run_dir) is not None:
        return "finished"
    return "interrupted" if (run_dir / "last.pt").exists() else "new"


def fit_once(
    config: Any,
    data: str | Path,
    run_dir: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` unless it finished there; returns its result."""
    from surrogate.neuronio_fit import fit

    state = fit_state(run_dir)
    if log is not None:
        words = {"finished": "finished earlier", "interrupted": "resuming", "new": "training"}
        log(f"   {run_dir.name}: {words[state]}")
    if state != "finished":
        fit(config, data, run_dir, resume=state == "interrupted", progress=progress)
    result = finished_result(run_dir)
    assert result is not None  # fit writes it last
    return result


def evaluation_is_current(folder: Path, checkpoint: Path) -> bool:
    metrics = folder / "metrics.json"
    return metrics.exists() and metrics.stat().st_mtime >= checkpoint.stat().st_mtime


def evaluate_once(
    checkpoint: Path,
    data: str | Path,
    split: str,
    folder: Path,
    *,
    settings: Any = None,
    device: str = "cpu",
    examples: int = 3,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The NeuronIO evaluation of ``checkpoint`` on ``split``, written to ``folder`` (metrics,
    figures, spikes) unless a current one is there; returns its metrics."""
    from pipelines.evaluation_output import write_evaluation
    from surrogate.checkpoints import load_model
    from surrogate.evaluate import EvaluationConfig, evaluate
    from surrogate.train import pick_device

    if evaluation_is_current(folder, checkpoint):
        if log is not None:
            log(f"   {checkpoint.parent.name}: evaluated earlier")
    else:
        result = evaluate(
            load_model(checkpoint),
            data,
            split,
            settings or EvaluationConfig(),
            pick_device(device),
            examples=examples,
        )
        write_evaluation(result, folder, checkpoint)
        if log is not None:
            auc, rmse = result.metrics.get("spike_auc"), result.metrics.get("soma_rmse_mv")
            log(
                f"   {checkpoint.parent.name}: AUC {auc if auc is None else round(auc, 4)}, "
                f"soma RMSE {float('nan') if rmse is None else rmse:.3f} mV"
            )
            if "caution" in result.metrics:
                log(f"   caution: {result.metrics['caution']}")
    return json.loads((folder / "metrics.json").read_text())
