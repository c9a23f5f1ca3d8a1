"""The ELM as the official implementation runs it: one TorchScript step per time step.

Written from the published equations (../shared/docs/elm-model.md §2–3), in the style of the
released PyTorch module, so that `benchmarks/training.py` measures the speed-up users care about
against what they would otherwise run: routing applied once to the whole sequence, then a
scripted loop over time whose step updates the 4500-wide synapse traces, sums them per branch,
and runs the MLP and the memory update — about ten small operations per step, each recorded by
autograd during training. It takes its weights from one of our ELMs, so both compute the same
function (the benchmark checks the outputs agree).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from surrogate.models.elm import ELM


class OfficialStyleELM(nn.Module):
    """ELM v1 (one hidden MLP layer), per-synapse traces, a scripted per-step loop."""

    def __init__(self, model: ELM) -> None:
        super().__init__()
        config = model.config
        if config.version != "v1" or config.mlp_layers != 1:
            raise ValueError("the official-style module covers ELM v1 with one hidden layer")
        self.w_s = nn.Parameter(model._proto_w_s.detach().clone())
        self.tau_m_logit = nn.Parameter(model._proto_tau_m.detach().clone(), requires_grad=False)
        self.register_buffer("index", model.input_to_synapse_indices.clone())
        self.register_buffer("mask", model.valid_indices_mask.to(self.w_s.dtype).clone())
        first, last = model.mlp.network[0], model.mlp.network[2]
        self.w1 = nn.Parameter(first.weight.detach().clone())
        self.c1 = nn.Parameter(first.bias.detach().clone())
        self.w2 = nn.Parameter(last.weight.detach().clone())
        self.c2 = nn.Parameter(last.bias.detach().clone())
        self.wy = nn.Parameter(model.w_y.weight.detach().clone())
        self.cy = nn.Parameter(model.w_y.bias.detach().clone())
        self.kappa_s = math.exp(-1.0 / float(model.trace_tau()[0]))
        self.tau_min, self.tau_max = config.tau_m_min, config.tau_m_max
        self.lambda_value = config.lambda_value
        self.num_branch = config.branches
        self.per_branch = config.synapses_per_branch
        self.num_memory = config.num_memory

    def step(
        self,
        x_t: torch.Tensor,
        s: torch.Tensor,
        m: torch.Tensor,
        w_s: torch.Tensor,
        kappa_m: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = self.kappa_s * s + w_s * x_t  # synapse traces (B × d_s)
        b = s.view(s.shape[0], self.num_branch, self.per_branch).sum(-1)  # branch sums
        u = torch.cat([b, kappa_m * m], dim=-1)
        h = torch.relu(torch.nn.functional.linear(u, self.w1, self.c1))
        delta = 1.7159 * torch.tanh((2.0 / 3.0) * torch.nn.functional.linear(h, self.w2, self.c2))
        m = kappa_m * m + self.lambda_value * (1.0 - kappa_m) * delta
        y = torch.nn.functional.linear(m, self.wy, self.cy)
        return y, s, m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routed = x[:, :, self.index] * self.mask  # routing once, before the loop
        w_s = torch.relu(self.w_s)
        tau_m = self.tau_min + (self.tau_max - self.tau_min) * torch.sigmoid(self.tau_m_logit)
        kappa_m = torch.exp(-1.0 / tau_m.clamp(min=1e-6))
        s = x.new_zeros(x.shape[0], w_s.shape[0])
        m = x.new_zeros(x.shape[0], self.num_memory)
        outputs: list[torch.Tensor] = []
        for t in range(x.shape[1]):
            y, s, m = self.step(routed[:, t], s, m, w_s, kappa_m)
            outputs.append(y)
        return torch.stack(outputs, dim=1)


def official_style(model: ELM) -> torch.jit.ScriptModule:
    """The scripted official-style module with ``model``'s weights."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*jit.*")
        return torch.jit.script(OfficialStyleELM(model))
