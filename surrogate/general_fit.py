"""Pretraining the cell-general Branch-ELM on datasets of several cells, in the one training loop.

Each training batch comes from one cell's dataset — round robin over the cells, so that every
cell weighs the same whatever the size of its dataset — and trains the shared weights through
that cell's view (:meth:`GeneralELM.for_cell`): the same loss as a NeuronIO fit. Every epoch is
validated on each cell's fixed validation windows; the epoch kept is the one with the lowest
validation loss averaged over the cells (``select_best``; per-cell AUC and RMSE are recorded
beside it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from elmpipe.dataset import Dataset
from surrogate.data import Batch, WindowBatches
from surrogate.drive import input_rate_hz
from surrogate.models.general_elm import GeneralELM, GeneralELMConfig
from surrogate.neuronio_fit import (
    TrainSettings,
    better_epoch,
    loss_fn,
    validation_metrics,
    validation_windows,
)
from surrogate.train import RunResult, train


class GeneralTrainConfig(TrainSettings):
    """Pretraining: the datasets (one or more per cell), the model, the training settings."""

    stores: tuple[str, ...] = Field(min_length=1, description="datasets of the cells")
    model: GeneralELMConfig = GeneralELMConfig()
    select_best: Literal["soma_rmse", "loss", "spike_auc"] = Field(
        "loss", description="validation metric, averaged over the cells, that picks best.pt"
    )

    @model_validator(mode="after")
    def _what_the_views_allow(self) -> GeneralTrainConfig:
        if self.ema_decay is not None:
            raise ValueError("ema_decay: a weight average of the general model is not supported")
        if self.init is not None:
            raise ValueError("init: pretraining starts from the general model's initialisation")
        if self.nexus_weight:
            raise ValueError(
                "nexus_weight: the cell-general model predicts the spike and the soma only "
                "(its cells' nexus voltages are not learnt); leave it at 0"
            )
        return self


class GeneralFit:
    """The pretraining task: batches of every cell in turn, one shared model."""

    def __init__(self, config: GeneralTrainConfig, source: str | None = None) -> None:
        self._config = config
        self.source = source  # the config file it came from, as given: the provenance names it
        self.cells = [Dataset(store).cell for store in config.stores]
        #: each cell's drive (surrogate.drive): its view scales the synapse weights by it
        self.rates = [input_rate_hz(store, config.train_split) for store in config.stores]
        self.train = [
            WindowBatches(
                store,
                config.train_split,
                batch_size=config.batch_size,
                window=config.window_ms,
                min_start=config.min_start_ms,
                seed=config.seed + k,
                limit=config.train_simulations,
                events=True,
            )
            for k, store in enumerate(config.stores)
        ]
        self.valid: list[list[Batch]] = []
        if config.valid_split:
            for k, store in enumerate(config.stores):
                self.valid.append(validation_windows(store, config, k, events=True)[1])
        self.views: list[Any] = []

    @property
    def config(self) -> GeneralTrainConfig:
        return self._config

    def build_model(self) -> torch.nn.Module:
        model = GeneralELM(self.config.model)
        self.views = [
            model.for_cell(c, rate) for c, rate in zip(self.cells, self.rates, strict=True)
        ]
        return model

    def provenance(self) -> dict[str, Any]:
        """What the model was pretrained on, shareable as it is (a general model is made to be
        passed on, `surrogate/pretrained/` ships one): stores relative to the folder it ran in,
        cells by file name (the stores hold the rest), no user's absolute paths."""
        return {
            "stores": [_portable(store) for store in self.config.stores],
            "cells": [_file_name(cell.get("morphology")) for cell in self.cells],
            "train_simulations": [len(batches.sims) for batches in self.train],
            "input_rate_hz": self.rates,
            "warm_start": None,
            "config": self.source,
        }

    def starts_trained(self) -> bool:
        return False

    def batches_per_epoch(self) -> int:
        return self.config.batches_per_epoch

    def epoch_batches(self, epoch: int) -> tuple[Callable[[int], Any], range]:
        cells, first = len(self.train), epoch * self.config.batches_per_epoch

        def make(i: int) -> tuple[int, Batch]:
            return i % cells, self.train[i % cells][i // cells]

        return make, range(first, first + self.config.batches_per_epoch)

    def loss(self, model: torch.nn.Module, item: Any, device: torch.device) -> torch.Tensor:
        cell, batch = item
        batch = batch.to(device)
        output = self.views[cell].to(device)(batch.inputs)
        spike_weight = self.config.spike_weight
        return loss_fn(output, batch, self.config.burn_in_ms, spike_weight=spike_weight)

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
        if not self.valid:
            return {}
        row: dict[str, Any] = {}
        per_cell = []
        for k, batches in enumerate(self.valid):
            metrics = validation_metrics(
                self.views[k].to(device),
                batches,
                device,
                self.config.valid_burn_in_ms,
                spike_weight=self.config.spike_weight,
            )
            per_cell.append(metrics)
            row.update({f"valid_{k}_{key}": value for key, value in metrics.items()})
        for key in ("loss", "soma_rmse_mv"):
            row[f"valid_{key}"] = float(np.mean([m[key] for m in per_cell]))
        aucs = [m["spike_auc"] for m in per_cell if m["spike_auc"] is not None]
        row["valid_spike_auc"] = float(np.mean(aucs)) if aucs else None
        return row

    def improved(self, row: dict[str, Any], best: dict[str, Any]) -> bool:
        """By ``select_best``, of the metrics averaged over the cells."""
        return better_epoch(self.config.select_best, row, best)

    def finish(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
        return {}


def _file_name(morphology: str | None) -> str | None:
    return None if morphology is None else Path(morphology).name


def _portable(store: str) -> str:
    """A store's path relative to the working folder where it lies under it, else its name."""
    path = Path(store).resolve()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name


def pretrain(
    config: GeneralTrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    source: str | None = None,
) -> RunResult:
    """Pretrain the cell-general model on ``config.stores`` into the run folder ``out``
    (``source``: the config file, as given, for the provenance)."""
    return train(GeneralFit(config, source), out, resume=resume, progress=progress)
