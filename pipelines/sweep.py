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
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from elmpipe.dataset import Dataset
from elmpipe.errors import ConfigError
from elmpipe.outputs import atomic_write, check_output_folder, write_json_atomic
from elmpipe.settings import StrictModel
from pipelines.cluster import ClusterConfig, Task, executor
from pipelines.resumable import evaluate_once, fit_once
from surrogate.metric_table import sweep_keys
from surrogate.models import FAMILIES, surrogate_families
from surrogate.models import family as model_family
from surrogate.models.registry import FamilyOption, ModelFamily, check_values
from surrogate.neuronio_fit import TrainConfig, TrainSettings
from surrogate.train import check_same_config


def dataset_inputs(data: str | Path, split: str = "train") -> int:
    """Number of input channels of a dataset split (the models' d_in)."""
    return Dataset(data).split(split).n_channels


def surrogate_model(family: str, num_input: int, options: dict[str, Any]) -> Any:
    """A model config from a family and its options (shorthands such as ``tcn: SHAPE`` too).

    Raises a ValueError (pydantic's ValidationError is one) for options the family does not
    take or an unknown family.
    """
    return model_family(family).make_config({**options, "num_input": num_input})


def _sweep_axes() -> dict[str, tuple[ModelFamily, FamilyOption]]:
    """Sweep key → (family, option), over every surrogate family's sweep axes."""
    return {
        option.sweep_key: (FAMILIES[name], option)
        for name in surrogate_families()
        for option in FAMILIES[name].sweep_axes()
        if option.sweep_key
    }


class SweepConfig(StrictModel):
    """A grid of models, each trained with the ``train`` settings.

    The grid's axes are the model families' (surrogate.models.registry): ``num_memory``,
    ``num_branch``, ``synapses_per_branch`` (ELM), ``lstm_hidden``, ``tcn`` and any a plugin
    family adds, each a value or a list, written at the top level of the sweep; an axis not
    given takes the family's default values.
    """

    models: tuple[str, ...] = ("elm",)
    axes: dict[str, tuple[Any, ...]] = Field(
        default_factory=dict, description="sweep key → values (written as top-level keys)"
    )
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

    @model_validator(mode="before")
    @classmethod
    def _gather_axes(cls, data: Any) -> Any:
        """Top-level axis keys (``num_memory: [1, 2]``) → ``axes``, each checked by its family."""
        if not isinstance(data, dict):
            return data
        data, known = dict(data), _sweep_axes()
        axes = dict(data.pop("axes", None) or {})
        axes.update({key: data.pop(key) for key in list(data) if key in known})
        for key, values in axes.items():
            if key not in known:
                raise ValueError(f"unknown sweep axis {key!r} (one of {', '.join(known)})")
            family_, option = known[key]
            try:
                axes[key] = check_values(family_, option, values)
            except ValueError as exc:
                message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc
                raise ValueError(f"{key}: {message}") from None
        return {**data, "axes": axes} if axes else data

    @model_serializer(mode="wrap")
    def _flat_axes(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        data.update(data.pop("axes", None) or {})
        return data

    @field_validator("models")
    @classmethod
    def _surrogates(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        for name in models:
            if name not in surrogate_families():
                raise ValueError(
                    f"unknown model family {name!r} (one of {', '.join(surrogate_families())})"
                )
        return models

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

    def values(self, option: FamilyOption) -> tuple[Any, ...]:
        """An axis's values: the sweep's, else the family's defaults."""
        assert option.sweep_key is not None
        return self.axes.get(option.sweep_key, option.sweep_values)


def model_grid(sweep: SweepConfig, num_input: int) -> dict[str, Any]:
    """Run name → model config of every model of the grid (each family's axes crossed)."""
    points: dict[str, Any] = {}
    for name in sweep.models:
        family_ = model_family(name)
        axes = family_.sweep_axes()
        for values in itertools.product(*(sweep.values(axis) for axis in axes)):
            options = {axis.field: value for axis, value in zip(axes, values, strict=True)}
            model = surrogate_model(name, num_input, options)
            label = family_.run_name(model)
            if label in points:
                raise ValueError(
                    f"two grid points are both {label!r}: family {name}'s run names do not "
                    f"tell {', '.join(axis.sweep_key or '' for axis in axes)} apart"
                )
            points[label] = model
    return points


def grid(sweep: SweepConfig, num_input: int) -> dict[str, TrainConfig]:
    """Name → training config of every grid point (ValidationError for an impossible point)."""
    sizes = sweep.train_simulations or (None,)
    configs = {}
    for name, model in model_grid(sweep, num_input).items():
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


def model_name(model: Any) -> str:
    """The run-folder name of a model (the same names a sweep gives its grid points)."""
    return model_family(model.family).run_name(model)


def evaluate_point(run: Path, data: str, split: str) -> dict[str, Any]:
    """The NeuronIO evaluation of a run's best checkpoint (kept in ``run/eval-<split>/``)."""
    metrics = evaluate_once(run / "best.pt", data, split, run / f"eval-{split}")
    return {key: metrics.get(key) for key in sweep_keys()}


def reference_metrics(checkpoint: str | Path, data: str | Path, split: str) -> dict[str, Any]:
    """A reference model's NeuronIO metrics on ``split`` (a line in the learning-curve figure)."""
    from surrogate.checkpoints import load_any
    from surrogate.evaluate import evaluate

    metrics = evaluate(load_any(checkpoint), data, split).metrics
    return {"name": Path(checkpoint).name, **{key: metrics.get(key) for key in sweep_keys()}}


def fit_point(
    config_json: str, data: str, out: str, threads: int, evaluate_split: str | None = None
) -> dict[str, Any]:
    """One grid point (a task): train (or resume, or find it finished), then evaluate."""
    import torch

    torch.set_num_threads(threads)
    out_path = Path(out)
    done = fit_once(TrainConfig.model_validate_json(config_json), data, out_path, progress=False)
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
        **{  # every family's axes, each filled by the family that has it
            key: getattr(model, option.field, None) if family_.name == model.family else None
            for key, (family_, option) in _sweep_axes().items()
        },
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
