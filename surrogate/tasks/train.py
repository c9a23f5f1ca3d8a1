"""Sequence classification for the secondary benchmarks: the class is read from the last step.

ELM, Branch-ELM and LSTM models from ``surrogate.models`` with ``num_output`` = classes; the
logits of the final time step go into a cross-entropy loss, as in the ELM paper's recipes.
Token tasks feed one-hot vectors; SHD feeds spike counts per bin. Input dropout (the SHD recipe)
zeroes input entries during training only and scales the rest by 1/(1 - p), so that evaluation
inputs (undropped) have the size training saw — without that rescaling a model trained on half
its input sees twice as much at test time and collapses to one class (the reference notebook
avoided this by dropping at test time too). Every epoch writes metrics and a checkpoint;
``resume`` continues a stopped run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from surrogate.checkpoints import FORMAT, VERSION, read_checkpoint, save_atomic
from surrogate.models import build_model, count_parameters, model_config
from surrogate.train import pick_device

TaskName = Literal[
    "shd", "shd-adding", "listops", "text", "retrieval", "image", "pathfinder", "pathx"
]


class TaskTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskName
    model: dict[str, Any] = Field(description="family and hyper-parameters; sizes filled in")
    bin_ms: float = Field(10.0, gt=0, description="SHD bin size (also the ELM's Δt)")
    max_length: int | None = Field(None, ge=1, description="token tasks: truncate/pad length")
    optimizer: Literal["adam", "adamax"] = "adam"
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    epochs: int = Field(10, ge=1)
    batches_per_epoch: int | None = Field(None, ge=1, description="None: one pass over train")
    input_dropout: float = Field(0.0, ge=0, lt=1)
    eval_batches: int | None = Field(None, ge=1, description="cap on validation/test batches")
    adding_pairs: int = Field(16000, ge=1, description="SHD-Adding: pairs per evaluation split")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    loader_workers: int = Field(0, ge=0)


class LastStep(torch.nn.Module):
    """A sequence model whose prediction is its output at the last time step."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, -1]


def datasets(config: TaskTrainConfig, folder: str | Path) -> tuple[Any, Any, Any, int, int]:
    """(train, valid, test, input size, classes) for the task."""
    from surrogate.tasks import lra, shd

    if config.task == "shd":
        parts = [shd.SHDDataset(folder, s, config.bin_ms) for s in ("train", "valid", "test")]
        return (*parts, shd.N_CHANNELS, shd.N_CLASSES)
    if config.task == "shd-adding":
        size = config.adding_pairs
        parts = [
            shd.SHDAddingDataset(folder, s, config.bin_ms, size=size, seed=seed)
            for s, seed in (("train", config.seed), ("valid", 1), ("test", 2))
        ]
        return (*parts, shd.N_CHANNELS, 19)
    return lra.task_datasets(config.task, folder, config.max_length, config.seed)


RETRIEVAL_LATENT = 75  # the ELM paper's two-tower code size


def model_spec(config: TaskTrainConfig, n_inputs: int, n_classes: int) -> dict[str, Any]:
    outputs = RETRIEVAL_LATENT if config.task == "retrieval" else n_classes
    spec = {"family": "elm", **config.model, "num_input": n_inputs, "num_output": outputs}
    if spec["family"] == "elm" and config.task in ("shd", "shd-adding"):
        spec.setdefault("dt", config.bin_ms)  # one step = one bin
    return spec


def build_classifier(config: TaskTrainConfig, n_inputs: int, n_classes: int) -> torch.nn.Module:
    from surrogate.tasks.lra import TwoTower

    model = build_model(model_config(model_spec(config, n_inputs, n_classes)))
    if config.task == "retrieval":
        return TwoTower(model, RETRIEVAL_LATENT, n_classes)
    return LastStep(model)


def _loader(dataset, batch_size: int, shuffle_seed: int | None, workers: int):
    generator = None
    if shuffle_seed is not None:
        generator = torch.Generator().manual_seed(shuffle_seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle_seed is not None,
        generator=generator,
        num_workers=workers,
        drop_last=shuffle_seed is not None,
    )


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader, device, max_batches: int | None = None) -> float:
    model.eval()
    correct = total = 0
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        predicted = model(x.to(device).float()).argmax(-1).cpu()
        correct += int((predicted == y).sum())
        total += len(y)
    model.train()
    return correct / max(total, 1)


def fit_task(
    config: TaskTrainConfig,
    folder: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on a task; returns the final metrics (also in OUT/result.json)."""
    started = time.perf_counter()
    out = Path(out)
    device = pick_device(config.device)
    train, valid, test, n_inputs, n_classes = datasets(config, folder)
    torch.manual_seed(config.seed)
    model = build_classifier(config, n_inputs, n_classes).to(device)
    optimiser_class = torch.optim.Adamax if config.optimizer == "adamax" else torch.optim.Adam
    optimiser = optimiser_class(model.parameters(), lr=config.learning_rate)
    per_epoch = config.batches_per_epoch or len(train) // config.batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=per_epoch * config.epochs
    )
    history: list[dict] = []
    first = 0
    if resume and (out / "last.pt").exists():
        state = read_checkpoint(out / "last.pt")
        model.load_state_dict(state["state_dict"])
        optimiser.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, first = state["history"], state["epoch"] + 1
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.model_dump_json(indent=2))
    dropout = torch.nn.Dropout(config.input_dropout) if config.input_dropout else None
    for epoch in range(first, config.epochs):
        if hasattr(train, "set_epoch"):
            train.set_epoch(epoch + 1)
        loader = _loader(train, config.batch_size, config.seed + epoch, config.loader_workers)
        losses = []
        bar = tqdm(
            total=per_epoch,
            desc=f"{config.task} epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
        )
        for i, (x, y) in enumerate(loader):
            if i >= per_epoch:
                break
            x, y = x.to(device).float(), y.to(device)
            if dropout is not None:
                x = dropout(x)  # inverted dropout: zero entries, scale the rest by 1/(1-p)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.item())
            bar.update(1)
        bar.close()
        eval_loader = _loader(valid, config.batch_size, None, config.loader_workers)
        row = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "valid_accuracy": accuracy(model, eval_loader, device, config.eval_batches),
        }
        history.append(row)
        save_atomic(
            {
                "format": FORMAT,
                "version": VERSION,
                "task": config.task,
                "model": model_spec(config, n_inputs, n_classes),
                "state_dict": model.state_dict(),
                "optimizer": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "history": history,
            },
            out / "last.pt",
        )
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        if progress:
            loss, acc = row["train_loss"], row["valid_accuracy"]
            tqdm.write(f"epoch {epoch + 1}: loss {loss:.4f}, valid accuracy {acc:.4f}")
    test_loader = _loader(test, config.batch_size, None, config.loader_workers)
    result = {
        "task": config.task,
        "family": config.model.get("family", "elm"),
        "parameters": count_parameters(model),
        "classes": n_classes,
        "test_accuracy": accuracy(model, test_loader, device, config.eval_batches),
        "valid_accuracy": history[-1]["valid_accuracy"] if history else None,
        "chance_uniform": 1.0 / n_classes,
        "majority_class": majority_rate(test, config.eval_batches, config.batch_size),
        "epochs": len(history),
        "seconds": time.perf_counter() - started,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def majority_rate(dataset, max_batches: int | None, batch_size: int) -> float:
    """Accuracy of always answering the most frequent class of the evaluated items."""
    n = len(dataset) if max_batches is None else min(len(dataset), max_batches * batch_size)
    labels = [dataset.label(i) for i in range(n)]
    return float(np.bincount(labels).max() / len(labels)) if labels else 0.0
