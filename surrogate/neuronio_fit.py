"""Fitting a surrogate to a NeuronIO-style dataset: the ELM recipe as a task of the training loop.

Batches are 500 ms windows (surrogate.data.WindowBatches; batch i = f(seed, i)); the loss is
w·BCE(spike logit) + (1 − w)·MSE(soma target) with the spike weight w 0.5 as released,
optionally ignoring the first ``burn_in`` steps of each window. A larger w buys spike AUC for a
little soma RMSE: the spike head is what the AUC measures and what the model learns last. With
``nexus_weight`` > 0 it adds that weight × the MSE of a third output against the nexus voltage:
an auxiliary target, because the spikes a surrogate misses most are those that dendritic
calcium spikes drive (docs/how-much-data.md), and the nexus shows them. Adam, lr 5e-4, cosine
decay per batch (surrogate.train). After every epoch: loss, spike AUC and soma RMSE on fixed
validation windows; the best epoch is the one with the lowest validation soma RMSE (as the
released code chose), or the lowest validation loss or the highest spike AUC (``select_best``)
— with little data the spike head overfits while the soma RMSE still improves, and the loss
sees both.

A fit refuses data it cannot learn spikes from: training simulations without an output spike
after ``min_start_ms`` are an error, and so are validation windows without one when the best
epoch is chosen by spike AUC (undefined on them). Chosen by soma RMSE or loss, the fit goes on
with a DataWarning (and records it in result.json) — those criteria are still defined, but the
spike output is never validated, and the loss's spike term then rewards predicting no spike.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator

from elmpipe.dataset import SKIP_MS, Dataset
from elmpipe.errors import DataWarning, InputError
from surrogate.data import Batch, WindowBatches, soma_mv
from surrogate.drive import input_rate_hz
from surrogate.geometry import CellGeometry
from surrogate.models import ModelConfig, build_model
from surrogate.train import LoopSettings, RunResult, TrainingError, train
from surrogate.warm_start import SynapseMapping, resolve_source, warm_start

#: a warm start's defaults (``init`` given, these not): a fine-tuning on a new cell's small
#: dataset — 1 500 batches, best.pt by validation loss — measured in docs/how-much-data.md;
#: the released recipe (35 × 10 000 batches) would take hours to overfit 64 simulations
FINE_TUNING = {"epochs": 6, "batches_per_epoch": 250, "select_best": "loss"}


class TrainSettings(LoopSettings):
    """How a NeuronIO fit trains. Defaults follow the released ELM NeuronIO training; a warm
    start (``init``) defaults to :data:`FINE_TUNING` instead."""

    train_split: str = "train"
    valid_split: str | None = "valid"
    batch_size: int = Field(8, ge=1)
    window_ms: int = Field(500, ge=1)
    min_start_ms: int = Field(SKIP_MS, ge=0, description="windows start after this (NeuronIO)")
    batches_per_epoch: int = Field(10000, ge=1)
    epochs: int = Field(35, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    burn_in_ms: int = Field(0, ge=0, description="loss ignores the first steps of each window")
    valid_batches: int = Field(16, ge=1, description="fixed validation batches per epoch")
    valid_burn_in_ms: int = Field(150, ge=0, description="steps ignored by validation metrics")
    train_simulations: int | None = Field(
        None, ge=1, description="train on the first N complete simulations only (None: all)"
    )
    init: str | None = Field(
        None,
        description="start from this checkpoint (ours or a released ELM state dict; "
        "'general': the shipped cell-general model; 'builtin': the shipped surrogate of the "
        "built-in cell) instead of random weights, and fine-tune (FINE_TUNING's defaults)",
    )
    init_synapses: SynapseMapping = Field(
        "by-position",
        description="a warm start from another cell: map synapse weights by row position, by "
        "the place of their segment in the cell (by-geometry), or start them fresh",
    )
    init_cell: str | None = Field(
        None,
        description="the cell the --init model was trained on, when its file does not say (a "
        "released ELM: the Hay cell): a dataset of that cell, or its cell record (JSON)",
    )
    select_best: Literal["soma_rmse", "loss", "spike_auc"] = Field(
        "soma_rmse", description="validation metric that picks best.pt (released: soma_rmse)"
    )
    spike_weight: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="the spike term's share of the loss, w·BCE + (1 − w)·MSE (released: 0.5)",
    )
    nexus_weight: float = Field(
        0.0,
        ge=0,
        description="weight of an auxiliary loss on the nexus voltage, predicted as a third "
        "output (0: off, as released)",
    )

    @model_validator(mode="before")
    @classmethod
    def _warm_start_settings_need_a_warm_start(cls, data: Any) -> Any:
        """Without ``init``, how synapses would be mapped is no part of the run (so a run
        written before the default mapping changed still resumes)."""
        if isinstance(data, dict) and not data.get("init"):
            data = {k: v for k, v in data.items() if k not in ("init_synapses", "init_cell")}
        return data

    @model_validator(mode="before")
    @classmethod
    def _a_warm_start_fine_tunes(cls, data: Any) -> Any:
        """With ``init``, what was not set explicitly follows :data:`FINE_TUNING`."""
        if isinstance(data, dict) and data.get("init"):
            data = {**FINE_TUNING, **data}
        return data

    @model_validator(mode="after")
    def _burn_in_inside_the_window(self) -> TrainSettings:
        for name in ("burn_in_ms", "valid_burn_in_ms"):
            if getattr(self, name) >= self.window_ms:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must be shorter than window_ms "
                    f"({self.window_ms}): the loss and metrics would see no step"
                )
        return self


class TrainConfig(TrainSettings):
    """One NeuronIO fit: the training settings and the model."""

    model: ModelConfig

    @model_validator(mode="before")
    @classmethod
    def _nexus_output(cls, data: Any) -> Any:
        """A nexus target needs a third output; the model gets it (and says so in its config)."""
        if not isinstance(data, dict) or not data.get("nexus_weight"):
            return data
        model = data.get("model")
        if isinstance(model, BaseModel):
            model = model.model_dump()
        if isinstance(model, dict) and model.get("num_output", 2) == 2:
            data = {**data, "model": {**model, "num_output": 3}}
        return data

    @model_validator(mode="after")
    def _nexus_output_present(self) -> TrainConfig:
        if self.nexus_weight and self.model.num_output != 3:
            raise ValueError(
                f"nexus_weight needs 3 model outputs (spike, soma, nexus); the model has "
                f"{self.model.num_output}"
            )
        return self

    @classmethod
    def of(cls, settings: TrainSettings, model: ModelConfig) -> TrainConfig:
        return cls(**settings.model_dump(), model=model)


def better_epoch(select_best: str, row: dict[str, Any], best: dict[str, Any]) -> bool:
    """Whether an epoch's validation ``row`` beats the ``best`` so far by ``select_best`` (a loss
    and an RMSE fall, an AUC rises); without validation the latest epoch is the best known."""
    if "valid_loss" not in row:
        return True
    if select_best == "spike_auc":
        now, then = row["valid_spike_auc"], best["valid_spike_auc"]
        return now is not None and (then is None or now > then)
    key = "valid_loss" if select_best == "loss" else "valid_soma_rmse_mv"
    return bool(row[key] < best[key])


def loss_fn(
    output: torch.Tensor,
    batch: Batch,
    burn_in: int = 0,
    *,
    spike_weight: float = 0.5,
    nexus_weight: float = 0.0,
) -> torch.Tensor:
    """``spike_weight``·BCE-with-logits on spikes + (1 − ``spike_weight``)·MSE on the soma
    target, after ``burn_in`` steps; plus ``nexus_weight`` × MSE of output 2 on the nexus target
    when there is one."""
    logits, soma = output[:, burn_in:, 0], output[:, burn_in:, 1]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.spikes[:, burn_in:])
    mse = torch.nn.functional.mse_loss(soma, batch.soma[:, burn_in:])
    loss = spike_weight * bce + (1 - spike_weight) * mse
    if nexus_weight:
        if batch.nexus is None:
            raise ValueError("a nexus weight needs batches with the nexus target")
        nexus = torch.nn.functional.mse_loss(output[:, burn_in:, 2], batch.nexus[:, burn_in:])
        loss = loss + nexus_weight * nexus
    return loss


def validation_metrics(
    model: torch.nn.Module,
    batches: list[Batch],
    device: torch.device,
    burn_in: int,
    *,
    spike_weight: float = 0.5,
    nexus_weight: float = 0.0,
) -> dict[str, Any]:
    """Loss (the training loss's terms), spike AUC and soma RMSE (mV, clipped at −55) over
    fixed validation windows."""
    losses, probs, labels, errors = [], [], [], []
    for batch in batches:
        batch = batch.to(device)
        out = model(batch.inputs)
        loss = loss_fn(out, batch, burn_in, spike_weight=spike_weight, nexus_weight=nexus_weight)
        losses.append(float(loss))
        probs.append(torch.sigmoid(out[:, burn_in:, 0]).flatten().cpu().numpy())
        labels.append(batch.spikes[:, burn_in:].flatten().cpu().numpy())
        errors.append(
            soma_mv(out[:, burn_in:, 1] - batch.soma[:, burn_in:]).flatten().cpu().numpy()
        )
    from sklearn.metrics import roc_auc_score  # here: `elmpipe fit --help` need not load it

    y, p = np.concatenate(labels), np.concatenate(probs)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < y.size else None
    return {
        "loss": float(np.mean(losses)),
        "spike_auc": auc,
        "soma_rmse_mv": float(np.sqrt(np.mean(np.concatenate(errors) ** 2))),
        "positive_bins": int(y.sum()),
    }


def validation_windows(
    store: str | Path,
    config: TrainSettings,
    seed_offset: int = 0,
    *,
    events: bool,
    nexus: bool = False,
) -> tuple[WindowBatches, list[Batch]]:
    """The fixed validation batches of a store's ``valid_split`` (batches of at most 8 of its
    simulations, seeded apart from the training batches), and their source."""
    assert config.valid_split is not None
    available = len(Dataset(store).split(config.valid_split).require_intact())
    source = WindowBatches(
        store,
        config.valid_split,
        batch_size=max(1, min(config.batch_size, 8, available)),
        window=config.window_ms,
        min_start=config.min_start_ms,
        seed=config.seed + 1_000_003 + seed_offset,
        events=events,
        nexus=nexus,
    )
    return source, [source[i] for i in range(config.valid_batches)]


def _geometry_record(cell: dict[str, Any]) -> dict[str, Any] | None:
    """The places of a dataset's inputs, as a checkpoint keeps them (None: the dataset does not
    record them, e.g. an import of NeuronIO's files)."""
    try:
        return CellGeometry.from_record(cell).record()
    except ValueError:
        return None


def read_cell_record(source: str | None) -> dict[str, Any] | None:
    """A cell record from a dataset of that cell or a JSON file holding one (None: none given)."""
    if source is None:
        return None
    path = Path(source).expanduser()
    if path.is_file():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--init-cell {path}: not a cell record (JSON): {exc}") from None
        if not isinstance(record, dict):
            raise InputError(f"--init-cell {path}: not a cell record (a JSON object)")
        return record
    return Dataset(path).cell


class NeuronIOFit:
    """The training task: windows of a dataset split in, spike logit and soma out."""

    def __init__(self, config: TrainConfig, data: str | Path) -> None:
        self.config = config
        self.train = WindowBatches(
            data,
            config.train_split,
            batch_size=config.batch_size,
            window=config.window_ms,
            min_start=config.min_start_ms,
            seed=config.seed,
            limit=config.train_simulations,
            events=config.model.family == "elm",  # the ELM projects inputs event by event
            nexus=config.nexus_weight > 0,
        )
        if self.train.n_channels != config.model.num_input:
            raise TrainingError(
                f"the dataset has {self.train.n_channels} input channels, the model expects "
                f"{config.model.num_input}"
            )
        self._require_training_spikes()
        self.data = data
        self.cell: dict[str, Any] = Dataset(data).cell
        self.cell_geometry = _geometry_record(self.cell)
        self.data_warnings: list[str] = []
        self.valid: list[Batch] = []
        if config.valid_split:
            source, self.valid = validation_windows(
                data,
                config,
                events=config.model.family == "elm",
                nexus=config.nexus_weight > 0,
            )
            self._check_validation_spikes(source)

    def _require_training_spikes(self) -> None:
        """An error unless some training simulation has an output spike where windows go."""
        split, sims, start = self.train.split, self.train.sims, self.config.min_start_ms
        with_spikes = sims[split.spike_counts(sims) > 0]
        for sim in with_spikes:  # the first one nearly always answers
            if split.spike_labels(np.array([sim]))[0, start:].any():
                return
        raise TrainingError(
            f"{split}: none of the {len(sims)} training simulations has an output spike after "
            f"{start} ms, where training windows start: the spike output cannot be learned (its "
            "loss term would only teach 'never spike') and no spike AUC can be computed. "
            "Simulate more or longer training simulations, and check the input calibration "
            "(`elmpipe dataset describe`, `elmpipe cell calibrate`)."
        )

    def _check_validation_spikes(self, source: WindowBatches) -> None:
        """Validation windows without a spike: an error when the best epoch is chosen by spike
        AUC, a DataWarning (kept in result.json) otherwise."""
        burn_in = self.config.valid_burn_in_ms
        if sum(float(batch.spikes[:, burn_in:].sum()) for batch in self.valid) > 0:
            return
        config = self.config
        where = (
            f"{source.split}: the {config.valid_batches} fixed validation batches "
            f"({len(source.sims)} simulations, {config.window_ms} ms windows after "
            f"{config.min_start_ms} ms) hold no output spike after their {burn_in} ms burn-in"
        )
        remedy = (
            "Add validation simulations (or longer ones), or more valid_batches, and check the "
            "input calibration (`elmpipe dataset describe`, `elmpipe cell calibrate`)."
        )
        if config.select_best == "spike_auc":
            raise TrainingError(
                f"{where}: the validation spike AUC is undefined, so choosing the best epoch by "
                f"it (select_best spike_auc) is meaningless. {remedy}"
            )
        consequence = (
            "the validation spike AUC is undefined and the spike output goes unvalidated"
            + (
                "; the best epoch is chosen by a loss whose spike term then rewards predicting "
                "no spike"
                if config.select_best == "loss"
                else "; the best epoch is chosen by soma RMSE alone"
            )
        )
        message = f"{where}: {consequence}. {remedy}"
        self.data_warnings.append(message)
        warnings.warn(message, DataWarning, stacklevel=2)

    def build_model(self) -> torch.nn.Module:
        model = build_model(self.config.model)
        self.warm_start = None
        if self.config.init:
            source = resolve_source(self.config.init)
            self.warm_start = warm_start(
                model,
                source,
                self.config.init_synapses,
                target_cell=self.cell,
                source_cell=read_cell_record(self.config.init_cell),
                target_rate=lambda: input_rate_hz(self.data, self.config.train_split),
            )
        return model

    def provenance(self) -> dict[str, Any]:
        """Recorded in the checkpoints and result.json: the training data and the warm start."""
        return {
            "train_simulations": len(self.train.sims),
            "training_minutes": len(self.train.sims) * self.train.n_time / 60_000,
            "warm_start": self.warm_start,
            "warnings": self.data_warnings,
            # where each input sits: what a later warm start by geometry maps from
            "cell": self.cell_geometry,
        }

    def starts_trained(self) -> bool:
        return self.warm_start is not None

    def batches_per_epoch(self) -> int:
        return self.config.batches_per_epoch

    def epoch_batches(self, epoch: int):
        first = epoch * self.config.batches_per_epoch
        return self.train.__getitem__, range(first, first + self.config.batches_per_epoch)

    def loss(self, model: torch.nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
        batch = batch.to(device)
        return loss_fn(
            model(batch.inputs),
            batch,
            self.config.burn_in_ms,
            spike_weight=self.config.spike_weight,
            nexus_weight=self.config.nexus_weight,
        )

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
        if not self.valid:
            return {}
        metrics = validation_metrics(
            model,
            self.valid,
            device,
            self.config.valid_burn_in_ms,
            spike_weight=self.config.spike_weight,
            nexus_weight=self.config.nexus_weight,
        )
        return {f"valid_{k}": v for k, v in metrics.items()}

    def improved(self, row: dict[str, Any], best: dict[str, Any]) -> bool:
        return better_epoch(self.config.select_best, row, best)

    def finish(self, model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
        return {}


def fit(
    config: TrainConfig,
    data: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> RunResult:
    """Train ``config.model`` on ``data`` into the run folder ``out``."""
    return train(NeuronIOFit(config, data), out, resume=resume, progress=progress)
