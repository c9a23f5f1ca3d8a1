"""Causal temporal convolutional network in the style of Beniaguev, Segev & London (2021).

Layers: causal Conv1d → ReLU → BatchNorm (ε 1e-3), depth times; then two 1×1 heads (spike logit,
soma). ``depth × width × receptive field`` names a model; the best NeuronIO TCN is 7×128×153
(first kernel 45, then six of 19). Initialisation as published: kernels truncated-normal
(sd 0.002), spike head bias −2 (weight sd 0.001), soma head sd 0.03.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from elmpipe.settings import StrictModel
from surrogate.models.elm import MAX_UNITS
from surrogate.models.registry import FamilyOption, ModelFamily


class TCNConfig(StrictModel):
    family: Literal["tcn"] = "tcn"
    num_input: int = Field(gt=0)
    num_output: int = Field(2, description="spike logit and soma (training units)")
    depth: int = Field(7, ge=1, le=1024)
    width: int = Field(128, ge=1, le=MAX_UNITS)
    first_kernel: int = Field(45, ge=1, le=MAX_UNITS)
    kernel: int = Field(19, ge=1, le=MAX_UNITS)

    @property
    def receptive_field(self) -> int:
        return self.first_kernel + (self.depth - 1) * (self.kernel - 1)

    @property
    def name(self) -> str:
        return f"{self.depth}x{self.width}x{self.receptive_field}"

    @property
    def tcn(self) -> str:
        """The shorthand (``--tcn``, the sweep's ``tcn`` axis) this config is written as."""
        return self.name


class TCN(nn.Module):
    """(batch, time, d_in) → (batch, time, 2); output t sees inputs t − T + 1 … t."""

    def __init__(self, config: TCNConfig) -> None:
        super().__init__()
        self.config = config
        convs, norms = [], []
        channels = config.num_input
        for i in range(config.depth):
            k = config.first_kernel if i == 0 else config.kernel
            conv = nn.Conv1d(channels, config.width, k)
            nn.init.trunc_normal_(conv.weight, std=0.002, a=-0.004, b=0.004)
            assert conv.bias is not None  # made with a bias (the default)
            nn.init.zeros_(conv.bias)
            convs.append(conv)
            norms.append(nn.BatchNorm1d(config.width, eps=1e-3))
            channels = config.width
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.spike_head = nn.Conv1d(config.width, 1, 1)
        self.soma_head = nn.Conv1d(config.width, config.num_output - 1, 1)
        assert self.spike_head.bias is not None and self.soma_head.bias is not None
        nn.init.normal_(self.spike_head.weight, std=0.001)
        nn.init.constant_(self.spike_head.bias, -2.0)
        nn.init.normal_(self.soma_head.weight, std=0.03)
        nn.init.zeros_(self.soma_head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            # torch types ModuleList items as Module (TorchScript knows each is a Conv1d); a
            # scripted function allows one code per ignore comment
            k = conv.kernel_size[0]  # type: ignore[index]
            h = norm(torch.relu(conv(nn.functional.pad(h, (k - 1, 0)))))  # type: ignore[arg-type]
        out = torch.cat([self.spike_head(h), self.soma_head(h)], dim=1)
        return out.transpose(1, 2)


def tcn_shape(name: str) -> dict[str, int]:
    """'7x128x153' → depth 7, width 128, first kernel 45 and kernels of 19 (as NeuronIO's TCN).

    The first kernel takes whatever the later kernels (19 for depth > 1) leave of the receptive
    field; depth 1 uses one kernel of the full receptive field.
    """
    try:
        depth, width, field = (int(v) for v in name.lower().split("x"))
    except ValueError:
        raise ValueError(f"TCN shape {name!r} is not DEPTHxWIDTHxFIELD, e.g. 7x128x153") from None
    if min(depth, width, field) < 1:
        raise ValueError(f"TCN shape {name!r}: every number must be positive")
    if depth == 1:
        return {"depth": 1, "width": width, "first_kernel": field, "kernel": field}
    kernel = 19 if field > 19 * depth else max(2, field // depth)
    first = field - (depth - 1) * (kernel - 1)
    if first < 1:
        raise ValueError(f"TCN shape {name!r}: receptive field too small for its depth")
    return {"depth": depth, "width": width, "first_kernel": first, "kernel": kernel}


def _expand_shape(options: dict) -> dict:
    """The ``tcn`` shorthand (DEPTHxWIDTHxFIELD) → depth, width and kernels."""
    options = dict(options)
    if "tcn" in options:
        options.update(tcn_shape(options.pop("tcn")))
    return options


FAMILY = ModelFamily(
    name="tcn",
    config=TCNConfig,
    module=TCN,
    run_name=lambda config: f"tcn-{config.name}",
    options=(
        FamilyOption(
            "tcn",
            help="shape DEPTHxWIDTHxFIELD (default 7x128x153)",
            value_type=str,
            sweep_key="tcn",
            sweep_values=("7x128x153",),
        ),
    ),
    expand=_expand_shape,
)
