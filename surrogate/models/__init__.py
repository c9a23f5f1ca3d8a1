"""Surrogate model families and a registry from configs to modules.

Every model maps inputs (batch, time, d_in) with values in {−1, 0, +1} (signed spikes) to
(batch, time, 2): the spike logit and the soma voltage in training units
((min(V, −55 mV) + 67.7 mV) / 10).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from torch import nn

from surrogate.models.elm import ELM, ELMConfig
from surrogate.models.lstm import LSTM, LSTMConfig
from surrogate.models.tcn import TCN, TCNConfig

ModelConfig = Annotated[ELMConfig | TCNConfig | LSTMConfig, Field(discriminator="family")]
_ADAPTER: TypeAdapter = TypeAdapter(ModelConfig)
FAMILIES = {"elm": ELM, "tcn": TCN, "lstm": LSTM}

__all__ = [
    "ELM",
    "LSTM",
    "TCN",
    "ELMConfig",
    "LSTMConfig",
    "ModelConfig",
    "TCNConfig",
    "build_model",
]


def model_config(data: dict[str, Any]) -> ModelConfig:
    """Validate a config dict (with its ``family``) into the right config class."""
    return _ADAPTER.validate_python(data)


def build_model(config: ModelConfig) -> nn.Module:
    return FAMILIES[config.family](config)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
