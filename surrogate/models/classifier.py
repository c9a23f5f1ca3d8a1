"""Sequence classifiers for the secondary benchmarks: an encoder read out at its last step.

``last-step``: the encoder's output at the final time step are the class logits (LRA, SHD, as in
the ELM paper). ``two-tower`` (LRA Retrieval): one shared encoder reads both documents, and an MLP
compares the two codes [a, b, a·b, a − b]. A classifier is a model family of its own, so its
checkpoints load with :func:`surrogate.checkpoints.load_model` like any other.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from elmpipe.settings import StrictModel
from surrogate.models.registry import FAMILIES, ModelConfig, ModelFamily, build_model


class ClassifierConfig(StrictModel):
    family: Literal["classifier"] = "classifier"
    encoder: ModelConfig  # a registered encoder family's config (ELM, LSTM)
    readout: Literal["last-step", "two-tower"] = "last-step"
    num_classes: int = Field(gt=1)

    @field_validator("encoder")
    @classmethod
    def _an_encoder(cls, encoder: Any) -> Any:
        if not FAMILIES[encoder.family].encoder:
            encoders = [name for name, f in FAMILIES.items() if f.encoder]
            raise ValueError(
                f"{encoder.family} is not a sequence encoder (one of {', '.join(encoders)})"
            )
        return encoder

    @model_validator(mode="after")
    def _sizes(self) -> ClassifierConfig:
        if self.readout == "last-step" and self.encoder.num_output != self.num_classes:
            raise ValueError("a last-step readout needs encoder.num_output = num_classes")
        return self

    @property
    def num_input(self) -> int:
        return self.encoder.num_input


class Classifier(nn.Module):
    """(batch, time, d_in) → class logits (batch, classes); two-tower: (batch, 2, time, d_in)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_model(config.encoder)
        self.head: nn.Module | None = None
        if config.readout == "two-tower":
            latent = config.encoder.num_output
            self.head = nn.Sequential(
                nn.Linear(4 * latent, latent), nn.ReLU(), nn.Linear(latent, config.num_classes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return self.encoder(x)[:, -1]
        batch = x.shape[0]
        codes = self.encoder(x.flatten(0, 1))[:, -1].view(batch, 2, -1)
        a, b = codes[:, 0], codes[:, 1]
        return self.head(torch.cat([a, b, a * b, a - b], dim=-1))


FAMILY = ModelFamily(
    name="classifier",
    config=ClassifierConfig,
    module=Classifier,
    run_name=lambda config: f"classifier-{config.encoder.family}",
    surrogate=False,
)
