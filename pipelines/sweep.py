"""Sweeps: a grid of surrogates, one training task per grid point, on the data stage's executors.

A sweep is a grid over model families and sizes (ELM memory units × branches, LSTM hidden
sizes, TCN shapes), and optionally over the amount of training data (the first N complete
simulations, nested) and the start (from scratch, or warm-started from a checkpoint): a
**learning curve**. Every grid point is one task that trains into its own run folder — and,
with ``evaluate_split``, is then evaluated with the NeuronIO protocol; points whose run finished
(``result.json``) are skipped when the sweep is run again, interrupted ones resume from their
last epoch, and a point whose folder was trained with other settings (a changed learning rate,
say) is refused before anything trains, rather than reported under settings it never had. The
sweep ends with a results table (CSV and JSON) and, for a learning curve, a figure of the
evaluated AUC and soma RMSE against simulated training minutes. Training prepares its batches in
threads, so the defaults work in any executor — in this process, in dask's worker processes
(which may not start processes of their own) and in SLURM/PBS jobs.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from elmpipe.dataset import Dataset
from elmpipe.errors import ConfigError
from elmpipe.outputs import atomic_write, check_output_folder, write_json_atomic
from elmpipe.settings import StrictModel
from pipelines.cluster import ClusterConfig, Task, executor
from surrogate.models import ELMConfig, LSTMConfig, ModelConfig, TCNConfig, model_config
from surrogate.neuronio_fit import TrainConfig, TrainSettings, fit
from surrogate.train import check_same_config, finished_result

Family = Literal["elm", "lstm", "tcn"]


def dataset_inputs(data: str | Path, split: str = "train") -> int:
    """Number of input channels of a dataset split (the models' d_in)."""
    return Dataset(data).split(split).n_channels


def tcn_shape(name: str) -> dict[str, int]:
    """'7x128x153' → depth 7, width 128, first kernel 45 and kernels of 19 (as NeuronIO's TCN).

    The first kernel takes whatever the later kernels (19 for depth > 1) leave of the receptive
    field; depth 1 uses one kernel of the full receptive field.
    """
    try:
        depth, width, field = (int(v) for v in name.lower().split("x"))
    except ValueError:
        raise ValueError(f"TCN shape {name!r} is not DEPTHxWIDTHxFIELD, e.g. 7x128x153") from None
    if min(depth, width, field) < 1:
        raise ValueError(f"TCN shape {name!r}: every number must be positive")
    if depth == 1:
        return {"depth": 1, "width": width, "first_kernel": field, "kernel": field}
    kernel = 19 if field > 19 * depth else max(2, field // depth)
    first = field - (depth - 1) * (kernel - 1)
    if first < 1:
        raise ValueError(f"TCN shape {name!r}: receptive field too small for its depth")
    return {"depth": depth, "width": width, "first_kernel": first, "kernel": kernel}


def surrogate_model(family: str, num_input: int, options: dict[str, Any]) -> ModelConfig:
    """A model config from a family and its options (``tcn: SHAPE`` is the TCN shorthand).

    Raises pydantic's ValidationError (a ValueError) for options the family does not take.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if family == "tcn" and "tcn" in given:
        given.update(tcn_shape(given.pop("tcn")))
    given.pop("tcn", None)
    return model_config({"family": family, "num_input": num_input, **given})


class SweepConfig(StrictModel):
    """A grid of models, each trained with the ``train`` settings."""

    models: tuple[Family, ...] = ("elm",)
    num_memory: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
    num_branch: tuple[int, ...] = (45,)
    synapses_per_branch: int = Field(100, ge=1)
    lstm_hidden: tuple[int, ...] = (15, 25, 50, 100)
    tcn: tuple[str, ...] = ("7x128x153",)
    train: TrainSettings = TrainSettings()
    torch_threads: int = Field(1, ge=1, description="PyTorch threads per grid point")
    train_simulations: tuple[int, ...] = Field(
        (), description="learning curve: train on the first N complete simulations (empty: all)"
    )
    starts: tuple[str, ...] = Field(
        ("scratch",), description="'scratch' and/or checkpoints to warm-start from"
    )
    evaluate_split: str | None = Field(
        None, description="evaluate every point with the NeuronIO protocol on this split"
    )

    @field_validator("train_simulations")
    @classmethod
    def _positive_sizes(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if any(n < 1 for n in sizes):
            raise ValueError("every training-set size must be at least 1 simulation")
        return tuple(sorted(set(sizes)))

    @field_validator("starts")
    @classmethod
    def _some_start(cls, starts: tuple[str, ...]) -> tuple[str, ...]:
        if not starts:
            raise ValueError("give at least one start ('scratch' or a checkpoint)")
        return starts

    @field_validator("tcn")
    @classmethod
    def _tcn_shapes(cls, shapes: tuple[str, ...]) -> tuple[str, ...]:
        for shape in shapes:
            tcn_shape(shape)
        return shapes


def grid(sweep: SweepConfig, num_input: int) -> dict[str, TrainConfig]:
    """Name → training config of every grid point (ValidationError for an impossible point)."""
    points: dict[str, ModelConfig] = {}
    for family in sweep.models:
        if family == "elm":
            for d_m in sweep.num_memory:
                for branches in sweep.num_branch:
                    points[f"elm-m{d_m}-b{branches}"] = ELMConfig(
                        num_input=num_input,
                        num_memory=d_m,
                        num_branch=branches,
                        num_synapse_per_branch=sweep.synapses_per_branch,
                    )
        elif family == "lstm":
            for hidden in sweep.lstm_hidden:
                points[f"lstm-h{hidden}"] = LSTMConfig(num_input=num_input, hidden=hidden)
        else:
            for shape in sweep.tcn:
                points[f"tcn-{shape}"] = TCNConfig(num_input=num_input, **tcn_shape(shape))
    sizes = sweep.train_simulations or (None,)
    configs = {}
    for name, model in points.items():
        for size in sizes:
            for start in sweep.starts:
                label = name + (f"-n{size:04d}" if size is not None else "")
                if len(sweep.starts) > 1 or start != "scratch":
                    label += "-" + start_label(start, sweep.starts)
                updates = {"train_simulations": size, "init": None if start == "scratch" else start}
                configs[label] = TrainConfig.of(sweep.train, model).model_copy(update=updates)
    return configs


def start_label(start: str, starts: tuple[str, ...]) -> str:
    """'scratch', 'init' (the only warm start of the sweep) or the checkpoint's file stem."""
    if start == "scratch":
        return "scratch"
    warm = [s for s in starts if s != "scratch"]
    return "init" if len(warm) == 1 else Path(start).stem


def model_name(model: ModelConfig) -> str:
    """The run-folder name of a model (the same names a sweep gives its grid points)."""
    if model.family == "elm":
        return f"elm-m{model.num_memory}-b{model.branches}"
    if model.family == "lstm":
        return f"lstm-h{model.hidden}"
    if model.family == "tcn":
        return f"tcn-{model.name}"
    return model.family


EVALUATED = ("spike_auc", "spike_auc_ci95", "soma_rmse_mv", "tp_at_0.01_fp", "output_spikes")


def evaluate_point(run: Path, data: str, split: str) -> dict[str, Any]:
    """The NeuronIO evaluation of a run's best checkpoint (kept in ``run/eval-<split>/``)."""
    from pipelines.evaluation_output import write_evaluation
    from surrogate.checkpoints import load_model
    from surrogate.evaluate import evaluate

    folder = run / f"eval-{split}"
    metrics_path = folder / "metrics.json"
    if (
        not metrics_path.exists()
        or metrics_path.stat().st_mtime < (run / "best.pt").stat().st_mtime
    ):
        write_evaluation(
            evaluate(load_model(run / "best.pt"), data, split), folder, run / "best.pt"
        )
    metrics = json.loads(metrics_path.read_text())
    return {key: metrics.get(key) for key in EVALUATED}


def reference_metrics(checkpoint: str | Path, data: str | Path, split: str) -> dict[str, Any]:
    """A reference model's NeuronIO metrics on ``split`` (a line in the learning-curve figure)."""
    from surrogate.checkpoints import load_any
    from surrogate.evaluate import evaluate

    metrics = evaluate(load_any(checkpoint), data, split).metrics
    return {"name": Path(checkpoint).name, **{key: metrics.get(key) for key in EVALUATED}}


def fit_point(
    config_json: str, data: str, out: str, threads: int, evaluate_split: str | None = None
) -> dict[str, Any]:
    """One grid point (a task): train (or resume, or find it finished), then evaluate."""
    import torch

    torch.set_num_threads(threads)
    out_path = Path(out)
    done = finished_result(out_path)
    if done is None:
        config = TrainConfig.model_validate_json(config_json)
        fit(config, data, out_path, resume=(out_path / "last.pt").exists(), progress=False)
        done = finished_result(out_path)
    evaluated = evaluate_point(out_path, data, evaluate_split) if evaluate_split else {}
    return {**done, "evaluated": evaluated, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def _row(name: str, config: TrainConfig, done: dict[str, Any], split: str | None) -> dict[str, Any]:
    model = config.model
    best = done.get("best", {})
    provenance = done.get("provenance", {})
    warm = provenance.get("warm_start") or {}
    evaluated = done.get("evaluated", {})
    return {
        "name": name,
        "family": model.family,
        "num_memory": getattr(model, "num_memory", None),
        "num_branch": getattr(model, "num_branch", None),
        "hidden": getattr(model, "hidden", None) if model.family == "lstm" else None,
        "tcn": model.name if model.family == "tcn" else None,
        "parameters": done.get("parameters"),
        "best_epoch": best.get("epoch"),
        "valid_spike_auc": best.get("valid_spike_auc"),
        "valid_soma_rmse_mv": best.get("valid_soma_rmse_mv"),
        "train_loss": best.get("train_loss"),
        "train_simulations": provenance.get("train_simulations"),
        "training_minutes": provenance.get("training_minutes"),
        "start": config.init or "scratch",
        "warm_start_layout": warm.get("layout"),
        **{f"{split}_{key}": value for key, value in evaluated.items()},
        "slurm_job_id": done.get("slurm_job_id"),  # where it trained (this run), if on SLURM
    }


def plan_sweep(sweep: SweepConfig, data: str | Path, source: str = "sweep options") -> dict:
    """Every grid point's config for this dataset, checked before any training."""
    num_input = dataset_inputs(data, sweep.train.train_split)
    try:
        return grid(sweep, num_input)
    except ValueError as exc:
        raise ConfigError(f"{source}: a grid point is impossible for this dataset: {exc}") from exc


def check_points_unchanged(points: dict[str, TrainConfig], out: Path) -> None:
    """Every point's folder that already holds a run must hold one of the same settings: a
    finished run would otherwise be reported as this point's."""
    for name, config in points.items():
        path = out / name / "config.json"
        if not path.exists():
            continue
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = None
        check_same_config(
            stored,
            config,
            out / name,
            advice="move that folder away, or choose another output folder, to train this "
            "point with the new settings",
        )


def run_sweep(
    sweep: SweepConfig,
    data: str | Path,
    out: str | Path,
    cluster: ClusterConfig,
    *,
    progress: bool = True,
    points: dict[str, TrainConfig] | None = None,
    reference: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train every grid point (skipping finished ones); returns the results table.

    ``reference``: a model's evaluated metrics on the same split (``name``, ``spike_auc``,
    ``soma_rmse_mv``), drawn as a line in the learning-curve figure.
    """
    out = check_output_folder(out, "sweep folder")
    data = str(Path(data).resolve())
    points = points if points is not None else plan_sweep(sweep, data)
    check_points_unchanged(points, out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "sweep.json", json.loads(sweep.model_dump_json()))
    started = time.perf_counter()
    tasks = [
        Task(
            fit_point,
            (
                config.model_dump_json(),
                data,
                str(out / name),
                sweep.torch_threads,
                sweep.evaluate_split,
            ),
            key=f"fit-{name}",
        )
        for name, config in points.items()
    ]
    with executor(cluster) as pool:
        results = pool.run(tasks, label="sweep", unit="model", progress=progress)
    table = [
        _row(name, config, done, sweep.evaluate_split)
        for (name, config), done in zip(points.items(), results, strict=True)
    ]
    write_json_atomic(
        out / "results.json",
        {"seconds": time.perf_counter() - started, "reference": reference, "results": table},
    )
    with atomic_write(out / "results.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    if sweep.evaluate_split and len(sweep.train_simulations) > 1:
        from pipelines.report import learning_curve_figure

        learning_curve_figure(table, sweep.evaluate_split, out / "learning_curve.png", reference)
    return table
