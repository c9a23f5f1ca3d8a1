"""Surrogate model families and a registry from configs to modules.

Every model maps inputs (batch, time, d_in) with values in {−1, 0, +1} (signed spikes) to
(batch, time, 2): the spike logit and the soma voltage in training units
((min(V, −55 mV) + 67.7 mV) / 10).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from torch import nn

from surrogate.models.classifier import Classifier, ClassifierConfig
from surrogate.models.elm import ELM, ELMConfig
from surrogate.models.lstm import LSTM, LSTMConfig
from surrogate.models.tcn import TCN, TCNConfig

ModelConfig = Annotated[
    ELMConfig | TCNConfig | LSTMConfig | ClassifierConfig, Field(discriminator="family")
]
_ADAPTER: TypeAdapter = TypeAdapter(ModelConfig)
FAMILIES = {"elm": ELM, "tcn": TCN, "lstm": LSTM, "classifier": Classifier}
CONFIGS = {"elm": ELMConfig, "tcn": TCNConfig, "lstm": LSTMConfig, "classifier": ClassifierConfig}
#: the families that map inputs to (spike logit, soma) and fit NeuronIO datasets
SURROGATE_FAMILIES = ("elm", "tcn", "lstm")

__all__ = [
    "ELM",
    "LSTM",
    "SURROGATE_FAMILIES",
    "TCN",
    "Classifier",
    "ClassifierConfig",
    "ELMConfig",
    "LSTMConfig",
    "ModelConfig",
    "TCNConfig",
    "build_model",
    "count_parameters",
    "model_config",
]


def model_config(data: dict[str, Any]) -> ModelConfig:
    """Validate a config dict (with its ``family``) into the right config class.

    A dict with a known family is validated by that family's class directly, so that errors
    locate the key itself (``num_memory``), not the union's branch (``elm.num_memory``).
    """
    family = data.get("family") if isinstance(data, dict) else None
    if family in CONFIGS:
        return CONFIGS[family].model_validate(data)
    return _ADAPTER.validate_python(data)


def model_section(value: Any, families: Iterable[str], from_data: Iterable[str]) -> dict[str, Any]:
    """Check a config file's ``model:`` section before the data is known.

    It must be a mapping whose ``family`` (default ``elm``) is one of ``families`` and that does
    not set what the data decides (``from_data``, e.g. ``num_input``); the remaining
    hyper-parameters are checked once the sizes are known.
    """
    if not isinstance(value, dict):
        raise ValueError(
            "expected a mapping such as {family: elm, num_memory: 20}, "
            f"found {type(value).__name__} {value!r}"
        )
    family = value.get("family", "elm")
    if family not in families:
        raise ValueError(f"unknown family {family!r} (one of {', '.join(families)})")
    taken = sorted(set(from_data) & set(value))
    if taken:
        raise ValueError(f"{', '.join(taken)}: set from the data; remove it")
    return {**value, "family": family}


def build_model(config: ModelConfig) -> nn.Module:
    return FAMILIES[config.family](config)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
