"""Sequence classification for the secondary benchmarks, as a task of the one training loop.

ELM, Branch-ELM and LSTM encoders (surrogate.models) read a sequence and the class logits are
their output at the last step (surrogate.models.classifier), as in the ELM paper's recipes.
Token tasks feed one-hot vectors; SHD feeds spike counts per bin. Input dropout (the SHD recipe)
zeroes input entries during training only and scales the rest by 1/(1 − p), so that evaluation
inputs (undropped) have the size training saw — without that rescaling a model trained on half
its input sees twice as much at test time and collapses to one class. Each epoch's order is a
seeded permutation (seed + epoch); the best epoch is the one with the highest validation
accuracy; the finished run reports test accuracy against chance and the majority class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from surrogate.data import prefetch
from surrogate.models import (
    ClassifierConfig,
    build_model,
    encoder_families,
    model_config,
    model_section,
)
from surrogate.tasks import TaskName
from surrogate.train import LoopSettings

RETRIEVAL_LATENT = 75  # the ELM paper's two-tower code size


class TaskTrainConfig(LoopSettings):
    task: TaskName
    model: dict[str, Any] = Field(
        default_factory=lambda: {"family": "elm"},
        description="encoder family (elm, lstm) and hyper-parameters; sizes come from the task",
    )
    bin_ms: float = Field(10.0, gt=0, description="SHD bin size (also the ELM's Δt)")
    max_length: int | None = Field(None, ge=1, description="token tasks: truncate/pad length")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    epochs: int = Field(10, ge=1)
    batches_per_epoch: int | None = Field(None, ge=1, description="None: one pass over train")
    input_dropout: float = Field(0.0, ge=0, lt=1)
    eval_batches: int | None = Field(None, ge=1, description="cap on validation/test batches")
    adding_pairs: int = Field(16000, ge=1, description="SHD-Adding: pairs per evaluation split")

    @field_validator("model", mode="before")
    @classmethod
    def _encoder_section(cls, value: Any) -> Any:
        """An encoder family; the rest is checked once the task's sizes are known."""
        return model_section(value, encoder_families(), ("num_input", "num_output"))


def datasets(config: TaskTrainConfig, folder: str | Path) -> tuple[Any, Any, Any, int, int]:
    """(train, valid, test, input size, classes) for the task."""
    from surrogate.tasks import lra, shd

    parts: list[Any]  # the three splits
    if config.task == "shd":
        parts = [shd.SHDDataset(folder, s, config.bin_ms) for s in ("train", "valid", "test")]
        return (*parts, shd.N_CHANNELS, shd.N_CLASSES)
    if config.task == "shd-adding":
        size = config.adding_pairs
        parts = [
            shd.SHDAddingDataset(folder, s, config.bin_ms, size=size, seed=seed)
            for s, seed in (("train", config.seed), ("valid", 1), ("test", 2))
        ]
        return (*parts, shd.N_CHANNELS, shd.ADDING_CLASSES)
    return lra.task_datasets(config.task, folder, config.max_length, config.seed)


def classifier_config(config: TaskTrainConfig, n_inputs: int, n_classes: int) -> ClassifierConfig:
    """The model of a task run (raises pydantic's ValidationError for a bad ``model`` section)."""
    outputs = RETRIEVAL_LATENT if config.task == "retrieval" else n_classes
    encoder = {"family": "elm", **config.model, "num_input": n_inputs, "num_output": outputs}
    if encoder["family"] == "elm" and config.task in ("shd", "shd-adding"):
        encoder.setdefault("dt", config.bin_ms)  # one step = one bin
    return ClassifierConfig(
        encoder=model_config(encoder),  # validated alone: errors name the encoder's own keys
        readout="two-tower" if config.task == "retrieval" else "last-step",
        num_classes=n_classes,
    )


def _collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in items]).float(), torch.tensor([y for _, y in items])


def _accuracy(model, dataset, batch_size: int, device, max_batches: int | None, workers: int):
    n_batches = -(-len(dataset) // batch_size)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)

    def make(i: int):
        stop = min(len(dataset), (i + 1) * batch_size)
        return _collate([dataset[j] for j in range(i * batch_size, stop)])

    correct = total = 0
    for x, y in prefetch(make, range(n_batches), workers):
        predicted = model(x.to(device)).argmax(-1).cpu()
        correct += int((predicted == y).sum())
        total += len(y)
    return correct / max(total, 1)


def majority_rate(dataset, max_batches: int | None, batch_size: int) -> float:
    """Accuracy of always answering the most frequent class of the evaluated items."""
    n = len(dataset) if max_batches is None else min(len(dataset), max_batches * batch_size)
    labels = [dataset.label(i) for i in range(n)]
    return float(np.bincount(labels).max() / len(labels)) if labels else 0.0


class SequenceClassification:
    """The training task: a benchmark's sequences in, class logits out."""

    def __init__(self, config: TaskTrainConfig, folder: str | Path) -> None:
        self.config = config
        self.train, self.valid, self.test, n_inputs, self.n_classes = datasets(config, folder)
        self.model_config = classifier_config(config, n_inputs, self.n_classes)

    def build_model(self) -> torch.nn.Module:
        return build_model(self.model_config)

    def batches_per_epoch(self) -> int:
        return self.config.batches_per_epoch or max(1, len(self.train) // self.config.batch_size)

    def epoch_batches(self, epoch: int):
        if hasattr(self.train, "set_epoch"):
            self.train.set_epoch(epoch + 1)  # SHD-Adding: fresh training pairs every epoch
        size = self.config.batch_size
        needed = self.batches_per_epoch() * size
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        order = torch.cat(
            [
                torch.randperm(len(self.train), generator=generator)
                for _ in range(-(-needed // len(self.train)))
            ]
        )[:needed].tolist()

        def make(i: int):
            return _collate([self.train[j] for j in order[i * size : (i + 1) * size]])

        return make, range(self.batches_per_epoch())

    def loss(self, model, batch, device) -> torch.Tensor:
        x, y = (t.to(device) for t in batch)
        if self.config.input_dropout:
            # inverted dropout: zero entries, scale the rest by 1/(1 − p)
            x = torch.nn.functional.dropout(x, self.config.input_dropout, training=True)
        return torch.nn.functional.cross_entropy(model(x), y)

    def _accuracy(self, model, dataset, device) -> float:
        c = self.config
        return _accuracy(model, dataset, c.batch_size, device, c.eval_batches, c.loader_workers)

    def validate(self, model, device) -> dict[str, Any]:
        return {"valid_accuracy": self._accuracy(model, self.valid, device)}

    def improved(self, row: dict[str, Any], best: dict[str, Any]) -> bool:
        return row["valid_accuracy"] > best["valid_accuracy"]

    def provenance(self) -> dict[str, Any]:
        return {"task": self.config.task, "train_items": len(self.train)}

    def starts_trained(self) -> bool:
        return False  # benchmark classifiers always train from random weights

    def finish(self, model, device) -> dict[str, Any]:
        c = self.config
        return {
            "task": c.task,
            "family": self.model_config.encoder.family,
            "classes": self.n_classes,
            "test_accuracy": self._accuracy(model, self.test, device),
            "chance_uniform": 1.0 / self.n_classes,
            "majority_class": majority_rate(self.test, c.eval_batches, c.batch_size),
        }
