"""LSTM baseline with the same two outputs as the ELM (spike logit, soma)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from elmpipe.settings import StrictModel
from surrogate.models.elm import MAX_UNITS
from surrogate.models.registry import FamilyOption, ModelFamily


class LSTMConfig(StrictModel):
    family: Literal["lstm"] = "lstm"
    num_input: int = Field(gt=0)
    num_output: int = 2
    hidden: int = Field(50, ge=1, le=MAX_UNITS, description="units per layer (ELM paper: 15 … 250)")
    layers: int = Field(1, ge=1)


class LSTM(nn.Module):
    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.num_input, config.hidden, config.layers, batch_first=True)
        self.head = nn.Linear(config.hidden, config.num_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out)


FAMILY = ModelFamily(
    name="lstm",
    config=LSTMConfig,
    module=LSTM,
    run_name=lambda config: f"lstm-h{config.hidden}",
    options=(
        FamilyOption(
            "hidden",
            help="hidden units (default 50)",
            sweep_key="lstm_hidden",
            sweep_values=(15, 25, 50, 100),
        ),
    ),
    encoder=True,
)
