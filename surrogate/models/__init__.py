"""Surrogate model families, registered with :mod:`surrogate.models.registry`.

Every surrogate maps inputs (batch, time, d_in) with values in {−1, 0, +1} (signed spikes) to
(batch, time, 2): the spike logit and the soma voltage in training units
((min(V, −55 mV) + 67.7 mV) / 10). A family is one module that declares a ``FAMILY``; it is
offered by every command once registered here (or, from another package, through the
``elmpipe.model_families`` entry point).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from surrogate.models import classifier, elm, general_elm, lstm, tcn
from surrogate.models.classifier import Classifier, ClassifierConfig
from surrogate.models.elm import ELM, ELMConfig
from surrogate.models.lstm import LSTM, LSTMConfig
from surrogate.models.registry import (
    FAMILIES,
    ModelConfig,
    build_model,
    encoder_families,
    family,
    load_plugins,
    model_config,
    register,
    surrogate_families,
)
from surrogate.models.tcn import TCN, TCNConfig

for _module in (elm, lstm, tcn, classifier, general_elm):
    register(_module.FAMILY)
load_plugins()

__all__ = [
    "ELM",
    "FAMILIES",
    "LSTM",
    "TCN",
    "Classifier",
    "ClassifierConfig",
    "ELMConfig",
    "LSTMConfig",
    "ModelConfig",
    "TCNConfig",
    "build_model",
    "count_parameters",
    "encoder_families",
    "family",
    "model_config",
    "model_section",
    "register",
    "surrogate_families",
]


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
    families = tuple(families)
    family_name = value.get("family", "elm")
    if family_name not in families:
        raise ValueError(f"unknown family {family_name!r} (one of {', '.join(families)})")
    taken = sorted(set(from_data) & set(value))
    if taken:
        raise ValueError(f"{', '.join(taken)}: set from the data; remove it")
    return {**value, "family": family_name}


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
