"""The fit stage: one training run, or a sweep of them on the same executors as the data stage.

A sweep is a grid over model families and sizes (ELM memory units × branches, LSTM hidden
sizes, TCN shapes). Every grid point is one task that trains into its own run folder; points whose
run finished (``done.json``) are skipped when the sweep is run again, interrupted ones resume from
their last epoch. The sweep ends with a results table (CSV and JSON).
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import zarr
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from pipelines.cluster import ClusterConfig, executor
from surrogate.models import ELMConfig, LSTMConfig, TCNConfig, model_config
from surrogate.train import TrainConfig, fit, load_train_config


class FitError(ValueError):
    """A fit or sweep request cannot be carried out as given."""


def dataset_inputs(data: str | Path, split: str = "train") -> int:
    """Number of input channels of a dataset split (the models' d_in)."""
    try:
        return int(zarr.open_group(str(data), mode="r", zarr_format=3)[split]["inputs"].shape[2])
    except Exception as exc:
        raise FitError(f"cannot read split {split!r} of dataset {data}: {exc}") from exc


def tcn_shape(name: str) -> dict[str, int]:
    """'7x128x153' → depth 7, width 128, first kernel 45 and kernels of 19 (as NeuronIO's TCN).

    The first kernel takes whatever the later kernels (19 for depth > 1) leave of the receptive
    field; depth 1 uses one kernel of the full receptive field.
    """
    try:
        depth, width, field = (int(v) for v in name.lower().split("x"))
    except ValueError as exc:
        raise FitError(f"TCN shape {name!r} is not DEPTHxWIDTHxFIELD, e.g. 7x128x153") from exc
    if depth == 1:
        return {"depth": 1, "width": width, "first_kernel": field, "kernel": field}
    kernel = 19 if field > 19 * depth else max(2, field // depth)
    first = field - (depth - 1) * (kernel - 1)
    if first < 1:
        raise FitError(f"TCN shape {name!r}: receptive field too small for its depth")
    return {"depth": depth, "width": width, "first_kernel": first, "kernel": kernel}


class SweepConfig(BaseModel):
    """A grid of models, each trained with ``train`` settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: tuple[str, ...] = ("elm",)
    num_memory: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
    num_branch: tuple[int, ...] = (45,)
    synapses_per_branch: int = 100
    lstm_hidden: tuple[int, ...] = (15, 25, 50, 100)
    tcn: tuple[str, ...] = ("7x128x153",)
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields")
    torch_threads: int = Field(1, ge=1, description="PyTorch threads per grid point")


def grid(sweep: SweepConfig, num_input: int) -> dict[str, TrainConfig]:
    """Name → training config of every grid point."""
    points: dict[str, dict] = {}
    for family in sweep.models:
        if family == "elm":
            for d_m in sweep.num_memory:
                for branches in sweep.num_branch:
                    points[f"elm-m{d_m}-b{branches}"] = ELMConfig(
                        num_input=num_input,
                        num_memory=d_m,
                        num_branch=branches,
                        num_synapse_per_branch=sweep.synapses_per_branch,
                    ).model_dump()
        elif family == "lstm":
            for hidden in sweep.lstm_hidden:
                points[f"lstm-h{hidden}"] = LSTMConfig(
                    num_input=num_input, hidden=hidden
                ).model_dump()
        elif family == "tcn":
            for shape in sweep.tcn:
                points[f"tcn-{shape}"] = TCNConfig(
                    num_input=num_input, **tcn_shape(shape)
                ).model_dump()
        else:
            raise FitError(f"unknown model family {family!r} (elm, lstm, tcn)")
    return {name: load_train_config({**sweep.train, "model": m}) for name, m in points.items()}


def fit_point(config_json: str, data: str, out: str, threads: int) -> dict[str, Any]:
    """One grid point (a task): train, or resume, or return the finished result."""
    import torch

    torch.set_num_threads(threads)
    out_path = Path(out)
    if (out_path / "done.json").exists():
        return json.loads((out_path / "done.json").read_text())
    config = load_train_config(json.loads(config_json))
    resume = (out_path / "last.pt").exists()
    fit(config, data, out_path, resume=resume, progress=False)
    done = json.loads((out_path / "done.json").read_text())
    return {**done, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def _row(name: str, config: TrainConfig, done: dict[str, Any]) -> dict[str, Any]:
    model = config.model
    best = done.get("best", {})
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
        "slurm_job_id": done.get("slurm_job_id"),  # where it trained (this run), if on SLURM
    }


def run_sweep(
    sweep: SweepConfig,
    data: str | Path,
    out: str | Path,
    cluster: ClusterConfig,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    data, out = str(Path(data).resolve()), Path(out).resolve()
    points = grid(sweep, dataset_inputs(data, sweep.train.get("train_split", "train")))
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(sweep.model_dump_json(indent=2))
    rows: dict[str, dict] = {}
    started = time.perf_counter()
    with executor(cluster) as pool:
        futures = {
            pool.submit(
                fit_point,
                cfg.model_dump_json(),
                data,
                str(out / name),
                sweep.torch_threads,
                key=f"fit-{name}",
            ): name
            for name, cfg in points.items()
        }
        with tqdm(total=len(futures), desc="sweep", unit="model", disable=not progress) as bar:
            try:
                for future in pool.as_completed(list(futures)):
                    name = futures[future]
                    rows[name] = _row(name, points[name], future.result())
                    bar.update(1)
            except BaseException:
                pool.cancel(list(futures))
                raise
    table = [rows[name] for name in points]
    (out / "results.json").write_text(
        json.dumps({"seconds": time.perf_counter() - started, "results": table}, indent=2)
    )
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return table


def model_from_options(family: str, num_input: int, options: dict[str, Any]) -> Any:
    """A model config from command-line options (None: the family's default)."""
    given = {k: v for k, v in options.items() if v is not None}
    if family == "tcn" and "tcn" in given:
        given.update(tcn_shape(given.pop("tcn")))
    given.pop("tcn", None)
    return model_config({"family": family, "num_input": num_input, **given})
