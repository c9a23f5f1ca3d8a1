"""The one training loop: every surrogate and benchmark model trains through :func:`train`.

A :class:`TrainingTask` plugs in what differs between tasks — the model, the batches, the loss,
the per-epoch validation, which epoch is best and what the finished run reports
(surrogate.neuronio_fit for NeuronIO surrogates, surrogate.tasks.classification for the
secondary benchmarks). The loop owns what must not differ between them: device, seeding, the
optimiser with a cosine learning-rate decay stepped per batch, batches prepared ahead by threads,
progress, per-epoch metrics (metrics.jsonl and metrics.csv), checkpoints — ``last.pt`` every epoch
(everything needed to continue), ``best.pt`` when the task's selection metric improved (a copy
of the weights, not an alias; with ``ema_decay``, of their moving average, which is then what is
validated), both loadable by :func:`surrogate.checkpoints.load_model` — resume
with a check that the run's config is unchanged, and ``result.json`` written atomically last, so
its presence means "finished".

A run is a pure function of its config: the model initialisation is seeded, and the task's
batches depend only on (seed, epoch, index). ``resume=True`` reloads ``last.pt`` and continues
with the next epoch, so a killed run ends with the same weights as an uninterrupted one (on the
same device and thread count; floating-point reductions may differ across them).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
from pydantic import BaseModel, Field, ValidationError, model_validator
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from elmpipe.errors import EnvironmentProblem, InputError
from elmpipe.outputs import atomic_write, check_output_folder, write_json_atomic, write_text_atomic
from elmpipe.settings import StrictModel
from surrogate.allocator import keep_freed_memory
from surrogate.checkpoints import read_checkpoint, save_checkpoint
from surrogate.data import prefetch
from surrogate.models import count_parameters
from surrogate.tracking import Backend, open_trackers

RESULT_FILE = "result.json"


class TrainingError(InputError):
    """A run cannot start or continue as asked (another run in the folder, a changed config)."""


class LoopSettings(StrictModel):
    """The settings the loop itself reads; every task's config extends these."""

    epochs: int = Field(10, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    optimizer: Literal["adam", "adamax"] = "adam"
    weight_decay: float = Field(
        0.0,
        ge=0,
        description="decoupled weight decay (AdamW): every step shrinks each weight by "
        "lr × this, a pull towards zero that the gradient must keep paying for (0: none, as "
        "released)",
    )
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="validate, select and save an exponential moving average of the weights, "
        "updated every step with this decay (e.g. 0.999: an average over the last ~1 000 "
        "steps), instead of the weights of the last step (None: off, as released)",
    )
    seed: int = Field(0, ge=0, lt=2**63, description="seeds the initialisation and batches")
    track: tuple[Backend, ...] = Field(
        (),
        description="log epochs, results and evaluations to these trackers (surrogate.tracking)",
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking store (None: MLflow's default, sqlite:///mlflow.db)"
    )
    experiment: str | None = Field(
        None, description="MLflow experiment (None: the name of the run folder's parent)"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    loader_workers: int = Field(2, ge=0, description="threads preparing batches ahead")
    patience: int | None = Field(
        None,
        ge=1,
        description="stop after this many epochs without a better validation result; the "
        "schedule is not shortened, so best.pt is what the full run would have picked whenever "
        "its best epoch comes first (None: run every epoch)",
    )

    @model_validator(mode="after")
    def _decay_needs_adam(self) -> LoopSettings:
        if self.weight_decay and self.optimizer != "adam":
            raise ValueError(f"weight_decay needs optimizer 'adam', not {self.optimizer!r}")
        return self


class TrainingTask(Protocol):
    """What a task plugs into the loop."""

    @property
    def config(self) -> LoopSettings:
        """The whole run config (compared on resume); tasks extend :class:`LoopSettings`."""
        ...

    def build_model(self) -> torch.nn.Module: ...

    def batches_per_epoch(self) -> int: ...

    def epoch_batches(self, epoch: int) -> tuple[Callable[[int], Any], Iterable[int]]:
        """(make, indices): the epoch's training batches are ``make(i)`` for ``i`` in indices."""
        ...

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor: ...

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
        """Per-epoch metrics (keys start with ``valid_``), model in eval mode, no gradients."""
        ...

    def improved(self, row: dict[str, Any], best: dict[str, Any]) -> bool:
        """Is the epoch ``row`` better than ``best`` (the rows of earlier epochs' best)?"""
        ...

    def finish(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
        """Extra fields for result.json (e.g. test accuracy), computed once at the end."""
        ...

    def provenance(self) -> dict[str, Any]:
        """What the run was made from (data used, warm start), kept with every checkpoint."""
        ...

    def starts_trained(self) -> bool:
        """Does the model start from trained weights (a warm start)? Then the loop validates
        it before training, as epoch 0, and it can be ``best.pt``: fine-tuning never hands back
        a model worse on validation than the one it began with."""
        ...


@dataclass
class RunResult:
    out: Path
    epochs_run: int
    parameters: int
    best: dict[str, Any]
    last: dict[str, Any]
    seconds: float
    summary: dict[str, Any]


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("device 'cuda' requested but no CUDA GPU is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _write_metrics(out: Path, history: list[dict]) -> None:
    write_text_atomic(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    keys = sorted({k for row in history for k in row})
    with atomic_write(out / "metrics.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _config_json(config: BaseModel) -> dict[str, Any]:
    return json.loads(config.model_dump_json())


#: settings a resumed run may change: when to stop, and where it is logged, do not change what
#: is learned
NOT_IDENTITY = ("patience", "track", "tracking_uri", "experiment")


def check_same_config(
    stored: Any,
    config: BaseModel,
    path: Path,
    advice: str = "use another --out, or the original settings to resume it",
) -> None:
    """The stored run config, read with today's defaults, must equal ``config``, but for
    :data:`NOT_IDENTITY`. The error names the settings that differ."""
    try:
        restored = type(config).model_validate(stored)
        restored = restored.model_copy(
            update={name: getattr(config, name) for name in NOT_IDENTITY}
        )
    except ValidationError:
        restored = None
    if restored == config:
        return
    if restored is None:
        changed = "its settings are unreadable"
    else:
        then, now = _config_json(restored), _config_json(config)
        changed = "differs in " + ", ".join(k for k in now if then.get(k) != now[k])
    raise TrainingError(f"{path} was written by a different training config ({changed}); {advice}")


def _out_of_patience(settings: LoopSettings, history: list[dict], best: dict[str, Any]) -> bool:
    if settings.patience is None or not history or not best:
        return False
    return history[-1]["epoch"] - best["epoch"] >= settings.patience


def _validated(task: TrainingTask, model: torch.nn.Module, device: torch.device) -> dict:
    """The task's validation metrics, in eval mode without gradients; back to training after."""
    model.eval()
    with torch.no_grad():
        metrics = task.validate(model, device)
    model.train()
    return metrics


def _shown(row: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float))


def _validate_start(
    task: TrainingTask,
    model: torch.nn.Module,
    device: torch.device,
    out: Path,
    provenance: dict[str, Any],
    progress: bool,
) -> tuple[list[dict], dict[str, Any]]:
    """Epoch 0: the warm-started model before any training, validated and kept as ``best.pt``
    (later epochs replace it only by doing better). Without validation there is nothing to
    compare, so nothing is recorded."""
    started = time.perf_counter()
    metrics = _validated(task, model, device)
    if not metrics:
        return [], {}
    row = {"epoch": 0, "seconds": time.perf_counter() - started, **metrics}
    save_checkpoint(out / "best.pt", model, metrics=row, provenance=provenance)
    _write_metrics(out, [row])
    if progress:
        tqdm.write(f"epoch 0 (the warm start, before training): {_shown(row)}")
    return [row], dict(row)


def _train_epoch(
    task: TrainingTask,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    averaged: AveragedModel | None,
    epoch: int,
    device: torch.device,
    progress: bool,
) -> list[float]:
    """One epoch of optimisation steps; returns each batch's loss."""
    settings = task.config
    make, indices = task.epoch_batches(epoch)
    losses: list[float] = []
    bar = tqdm(
        total=task.batches_per_epoch(),
        disable=not progress,
        desc=f"epoch {epoch + 1}/{settings.epochs}",
        unit="batch",
        leave=False,
    )
    for batch in prefetch(make, indices, settings.loader_workers):
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(model, batch, device)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if averaged is not None:
            averaged.update_parameters(model)
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    return losses


def _optimizer(settings: LoopSettings, model: torch.nn.Module) -> torch.optim.Optimizer:
    if settings.optimizer == "adamax":
        return torch.optim.Adamax(model.parameters(), lr=settings.learning_rate)
    # decoupled, as AdamW: not scaled by Adam's gradient statistics; with 0 it is plain Adam
    return torch.optim.Adam(
        model.parameters(),
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
        decoupled_weight_decay=True,
    )


def _weight_average(settings: LoopSettings, model: torch.nn.Module) -> AveragedModel | None:
    """The moving average of the weights that ``ema_decay`` asks for (None without one).

    Only parameters are averaged: buffers, which no optimiser step trains (the ELM's routing,
    the TCN's BatchNorm statistics), are copied from the live model at every update."""
    if settings.ema_decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay))


@dataclass
class _Session:
    """A run's live state: the model, what optimises it, and what it has done so far."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    averaged: AveragedModel | None
    history: list[dict[str, Any]]
    best: dict[str, Any]
    first_epoch: int  # 0, or the epoch after the last one saved
    resumed: bool

    @property
    def scored(self) -> torch.nn.Module:
        """What is validated, selected and saved: the moving average when there is one."""
        return self.model if self.averaged is None else self.averaged.module


def _open_session(task: TrainingTask, out: Path, resume: bool, device: torch.device) -> _Session:
    """A new run's model and optimiser, or a resumed run's as ``last.pt`` left them."""
    settings = task.config
    last_path = out / "last.pt"
    state = None
    if last_path.exists():
        if not resume:
            raise TrainingError(f"{out} already holds a run; pass --resume to continue it")
        state = read_checkpoint(last_path)
        check_same_config(state.get("train_config"), settings, last_path)
    torch.manual_seed(settings.seed)
    model = task.build_model().to(device)
    optimizer = _optimizer(settings, model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=task.batches_per_epoch() * settings.epochs, eta_min=0.0
    )
    session = _Session(model, optimizer, scheduler, None, [], {}, 0, state is not None)
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        session.history, session.best = state["history"], state["best"]
        session.first_epoch = state["epoch"] + 1
    session.averaged = _weight_average(settings, model)
    if session.averaged is not None and state is not None:
        session.averaged.load_state_dict(state["averaged"])
    return session


def _save_epoch(
    session: _Session, out: Path, row: dict[str, Any], settings: LoopSettings, provenance: dict
) -> None:
    """best.pt when the epoch improved on the best, and always last.pt and the metrics."""
    if row is session.best:
        # a copy of the weights at this epoch, not an alias of the live ones
        save_checkpoint(out / "best.pt", session.scored, metrics=row, provenance=provenance)
    save_checkpoint(
        out / "last.pt",
        session.model,
        averaged=None if session.averaged is None else session.averaged.state_dict(),
        train_config=_config_json(settings),
        optimizer=session.optimizer.state_dict(),
        scheduler=session.scheduler.state_dict(),
        epoch=row["epoch"] - 1,
        history=session.history,
        best=session.best,
        provenance=provenance,
    )
    _write_metrics(out, session.history)


def _run_epoch(
    task: TrainingTask, session: _Session, epoch: int, device: torch.device, progress: bool
) -> dict[str, Any]:
    """Train one epoch and validate it; returns its metrics row."""
    started = time.perf_counter()
    losses = _train_epoch(
        task,
        session.model,
        session.optimizer,
        session.scheduler,
        session.averaged,
        epoch,
        device,
        progress,
    )
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "train_loss": float(np.mean(losses)),
        "lr": float(session.scheduler.get_last_lr()[0]),
        "seconds": time.perf_counter() - started,
    }
    row.update(_validated(task, session.scored, device))
    return row


def _summary(
    task: TrainingTask,
    session: _Session,
    device: torch.device,
    stopped_early: bool,
    seconds: float,
    provenance: dict,
) -> dict[str, Any]:
    """result.json: the task's final results (e.g. test accuracy) and the run's record."""
    session.scored.eval()
    with torch.no_grad():
        extra = task.finish(session.scored, device)
    history = session.history
    return {
        "parameters": count_parameters(session.model),
        "epochs": sum(1 for row in history if row["epoch"] > 0),  # not the warm start's 0
        "stopped_early": stopped_early,
        "best": session.best,
        "last": history[-1] if history else {},
        # every family's module keeps its pydantic config as ``config``
        "model": cast(BaseModel, session.model.config).model_dump(mode="json"),
        "seconds": seconds,
        "provenance": provenance,
        **extra,
    }


def train(
    task: TrainingTask, out: str | Path, *, resume: bool = False, progress: bool = True
) -> RunResult:
    """Train ``task``'s model into the run folder ``out`` (or continue it with ``resume``)."""
    started = time.perf_counter()
    keep_freed_memory()  # batches reuse the last one's memory, in dask workers too
    out = check_output_folder(out, "run folder")
    settings = task.config
    device = pick_device(settings.device)
    session = _open_session(task, out, resume, device)
    provenance = task.provenance()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", _config_json(settings))
    if not session.resumed and task.starts_trained():
        session.history, session.best = _validate_start(
            task, session.scored, device, out, provenance, progress
        )
    session.model.train()
    # a resumed run that had stopped stays stopped
    stopped_early = _out_of_patience(settings, session.history, session.best)
    tracked = open_trackers(
        settings.track,
        out,
        _config_json(settings),
        uri=settings.tracking_uri,
        experiment=settings.experiment,
    )
    for start_row in [] if session.resumed else session.history:  # the warm start's epoch 0
        tracked.epoch(start_row)
    last_epoch = session.first_epoch if stopped_early else settings.epochs
    for epoch in range(session.first_epoch, last_epoch):
        row = _run_epoch(task, session, epoch, device, progress)
        session.history.append(row)
        tracked.epoch(row)
        if not session.best or task.improved(row, session.best):
            session.best = row
        _save_epoch(session, out, row, settings, provenance)
        if progress:
            tqdm.write(f"epoch {epoch + 1}: {_shown(row)}")
        if _out_of_patience(settings, session.history, session.best):
            stopped_early = True
            if progress:
                best_epoch = session.best["epoch"]
                tqdm.write(f"stopped: no better validation result since epoch {best_epoch}")
            break
    seconds = time.perf_counter() - started
    summary = _summary(task, session, device, stopped_early, seconds, provenance)
    write_json_atomic(out / RESULT_FILE, summary)  # last: its presence means "finished"
    with tracked:
        tracked.finish(summary)
    return RunResult(
        out=out,
        epochs_run=sum(1 for row in session.history if row["epoch"] > session.first_epoch),
        parameters=summary["parameters"],
        best=session.best,
        last=summary["last"],
        seconds=seconds,
        summary=summary,
    )


def finished_result(out: str | Path) -> dict[str, Any] | None:
    """The summary of a finished run in ``out``, or None if it has not finished."""
    path = Path(out) / RESULT_FILE
    return json.loads(path.read_text()) if path.exists() else None
