"""Training a surrogate with the ELM NeuronIO recipe, resumably.

Loss 0.5·BCE(spike logit) + 0.5·MSE(soma), optionally ignoring the first ``burn_in`` steps of
each window; Adam, lr 5e-4, cosine decay stepped per batch. After every epoch: validation
metrics, one line in metrics.jsonl/metrics.csv, ``last.pt`` (everything needed to continue) and,
when the validation soma RMSE improved, ``best.pt`` (a copy of the weights at that moment).

A run is a pure function of its config: model initialisation is seeded, and batch i of the run
depends only on (seed, i). ``resume=True`` reloads ``last.pt`` and continues with the next epoch,
so a killed run ends with the same weights as an uninterrupted one (on the same device and
thread count; floating-point reductions may differ across them).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from surrogate.checkpoints import read_checkpoint, save_checkpoint
from surrogate.data import Batch, WindowBatches, batch_loader, soma_mv
from surrogate.models import ModelConfig, build_model, count_parameters, model_config


class TrainConfig(BaseModel):
    """One training run. Defaults follow the released ELM NeuronIO training (batch 8, lr 5e-4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelConfig
    train_split: str = "train"
    valid_split: str | None = "valid"
    batch_size: int = Field(8, ge=1)
    window_ms: int = Field(500, ge=1)
    min_start_ms: int = Field(500, ge=0, description="windows start after this (NeuronIO: 500)")
    batches_per_epoch: int = Field(10000, ge=1)
    epochs: int = Field(35, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    burn_in_ms: int = Field(0, ge=0, description="loss ignores the first steps of each window")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    loader_workers: int = Field(2, ge=0)
    valid_batches: int = Field(16, ge=1, description="fixed validation batches per epoch")
    valid_burn_in_ms: int = Field(150, ge=0, description="steps ignored by validation metrics")


class TrainingError(RuntimeError):
    """A run cannot start or continue as asked."""


@dataclass
class FitResult:
    out: Path
    epochs_run: int
    parameters: int
    best: dict[str, Any]
    last: dict[str, Any]
    seconds: float


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' requested but no CUDA GPU is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def loss_fn(output: torch.Tensor, batch: Batch, burn_in: int = 0) -> torch.Tensor:
    """0.5·BCE-with-logits on spikes + 0.5·MSE on the soma target, after ``burn_in`` steps."""
    logits, soma = output[:, burn_in:, 0], output[:, burn_in:, 1]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.spikes[:, burn_in:])
    mse = torch.nn.functional.mse_loss(soma, batch.soma[:, burn_in:])
    return 0.5 * bce + 0.5 * mse


@torch.no_grad()
def validate(
    model: torch.nn.Module, batches: list[Batch], device: torch.device, burn_in: int
) -> dict:
    """Loss, spike AUC and soma RMSE (mV, clipped at −55) over fixed validation windows."""
    model.eval()
    losses, probs, labels, errors = [], [], [], []
    for batch in batches:
        batch = batch.to(device)
        out = model(batch.inputs)
        losses.append(float(loss_fn(out, batch, burn_in)))
        probs.append(torch.sigmoid(out[:, burn_in:, 0]).flatten().cpu().numpy())
        labels.append(batch.spikes[:, burn_in:].flatten().cpu().numpy())
        errors.append(
            soma_mv(out[:, burn_in:, 1] - batch.soma[:, burn_in:]).flatten().cpu().numpy()
        )
    model.train()
    y, p = np.concatenate(labels), np.concatenate(probs)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else None
    return {
        "loss": float(np.mean(losses)),
        "spike_auc": auc,
        "soma_rmse_mv": float(np.sqrt(np.mean(np.concatenate(errors) ** 2))),
        "positive_bins": int(y.sum()),
    }


def _write_metrics(out: Path, history: list[dict]) -> None:
    with open(out / "metrics.jsonl", "w") as handle:
        for row in history:
            handle.write(json.dumps(row) + "\n")
    keys = sorted({k for row in history for k in row})
    with open(out / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def fit(
    config: TrainConfig,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> FitResult:
    """Train ``config.model`` on ``data`` into the run folder ``out``."""
    started = time.perf_counter()
    out = Path(out)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    total = config.batches_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=0.0)
    train = WindowBatches(
        data,
        config.train_split,
        batch_size=config.batch_size,
        window=config.window_ms,
        min_start=config.min_start_ms,
        seed=config.seed,
    )
    if train.reader.n_channels != config.model.num_input:
        raise TrainingError(
            f"the dataset has {train.reader.n_channels} input channels, the model expects "
            f"{config.model.num_input}"
        )
    valid: list[Batch] = []
    if config.valid_split:
        from surrogate.data import SplitReader

        available = len(SplitReader(data, config.valid_split).complete)
        valid_source = WindowBatches(
            data,
            config.valid_split,
            batch_size=max(1, min(config.batch_size, 8, available)),
            window=config.window_ms,
            min_start=config.min_start_ms,
            seed=config.seed + 1_000_003,
        )
        valid = [valid_source[i] for i in range(config.valid_batches)]
    history: list[dict] = []
    best: dict[str, Any] = {}
    first_epoch = 0
    last_path = out / "last.pt"
    if resume and last_path.exists():
        state = read_checkpoint(last_path)
        if state["train_config"] != json.loads(config.model_dump_json()):
            raise TrainingError(f"{last_path} was written by a different training config")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best, first_epoch = state["history"], state["best"], state["epoch"] + 1
    elif last_path.exists():
        raise TrainingError(f"{out} already holds a run; pass --resume to continue it")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.model_dump_json(indent=2))
    burn_in = config.burn_in_ms
    model.train()
    for epoch in range(first_epoch, config.epochs):
        epoch_started = time.perf_counter()
        first = epoch * config.batches_per_epoch
        loader = batch_loader(train, first, first + config.batches_per_epoch, config.loader_workers)
        losses = []
        bar = tqdm(
            loader,
            total=config.batches_per_epoch,
            disable=not progress,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            leave=False,
        )
        for batch in bar:
            batch = batch.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch.inputs), batch, burn_in)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "lr": float(scheduler.get_last_lr()[0]),
            "seconds": time.perf_counter() - epoch_started,
        }
        if valid:
            row.update(
                {
                    f"valid_{k}": v
                    for k, v in validate(model, valid, device, config.valid_burn_in_ms).items()
                }
            )
        history.append(row)
        improved = valid and (not best or row["valid_soma_rmse_mv"] < best["valid_soma_rmse_mv"])
        if improved or not valid:
            best = dict(row)
            save_checkpoint(out / "best.pt", model, metrics=best)  # a copy, not an alias
        save_checkpoint(
            last_path,
            model,
            train_config=json.loads(config.model_dump_json()),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            epoch=epoch,
            history=history,
            best=best,
        )
        _write_metrics(out, history)
        if progress:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float))
            tqdm.write(f"epoch {epoch + 1}: {shown}")
    result = FitResult(
        out=out,
        epochs_run=config.epochs - first_epoch,
        parameters=count_parameters(model),
        best=best,
        last=history[-1] if history else {},
        seconds=time.perf_counter() - started,
    )
    summary = {
        "parameters": result.parameters,
        "best": best,
        "last": result.last,
        "model": config.model.model_dump(mode="json"),
    }
    save_atomic_json(out / "done.json", summary)
    return result


def save_atomic_json(path: Path, data: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


def load_train_config(data: dict) -> TrainConfig:
    """Validate a config dict whose ``model`` carries a ``family``."""
    data = dict(data)
    data["model"] = model_config(data["model"])
    return TrainConfig.model_validate(data)
