"""Export a trained surrogate to TorchScript, for use outside Python training code.

The exported file runs with ``torch.jit.load`` from Python or LibTorch (C++) — for example as a
point neuron inside a network simulation. ELMs are exported as a frozen inference module with the
input routing, synapse weights and κ_m already folded in, and with a ``step`` method that
advances one time step, so a simulator can drive it millisecond by millisecond:

    model = torch.jit.load("elm.pt")
    branch, memory = model.initial_state(1)
    y, branch, memory = model.step(x_t, branch, memory)   # x_t: (1, d_in), y: (1, 2)

TCN and LSTM models are scripted as they are (``forward`` over a whole sequence).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from surrogate.models.elm import ELM
from surrogate.models.recurrence import SCALED_TANH_GAIN, SCALED_TANH_SLOPE


class ELMInference(nn.Module):
    """Frozen ELM: same outputs as the trained module, TorchScript-friendly, steppable."""

    # the buffers registered in __init__, declared for type checkers only: TorchScript reads
    # class annotations when it scripts the module, and these must not change what it builds
    if TYPE_CHECKING:
        projection: torch.Tensor
        branch_weight: torch.Tensor
        first_bias: torch.Tensor
        recurrent: torch.Tensor
        kappa_m: torch.Tensor
        gain: torch.Tensor

    def __init__(self, model: ELM) -> None:
        super().__init__()
        with torch.no_grad():
            linears = [m for m in model.mlp.network if isinstance(m, nn.Linear)]
            d_tree = model.num_branch
            kappa_m = model.memory_kappa()
            self.register_buffer("projection", model.input_projection().clone())
            self.kappa_s = math.exp(-model.dt / max(float(model.trace_tau()[0]), 1e-6))
            self.register_buffer("branch_weight", linears[0].weight[:, :d_tree].clone())
            self.register_buffer("first_bias", linears[0].bias.clone())
            self.register_buffer("recurrent", (linears[0].weight[:, d_tree:] * kappa_m).clone())
            self.hidden = nn.ModuleList([_copy(layer) for layer in linears[1:-1]])
            self.out = _copy(linears[-1])
            self.register_buffer("kappa_m", kappa_m.clone())
            self.register_buffer("gain", model.memory_gain(kappa_m).clone())
            self.readout = _copy(model.w_y)
        self.silu = model.silu
        self.tanh_gain = SCALED_TANH_GAIN  # attributes: TorchScript does not read float globals
        self.tanh_slope = SCALED_TANH_SLOPE
        self.num_input = model.num_input
        self.num_branch = d_tree
        self.num_memory = model.num_memory

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(x) if self.silu else torch.relu(x)

    @torch.jit.export
    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero branch traces (batch, d_tree) and memory (batch, d_m)."""
        return (
            torch.zeros(batch, self.num_branch, dtype=self.projection.dtype),
            torch.zeros(batch, self.num_memory, dtype=self.projection.dtype),
        )

    @torch.jit.export
    def step(
        self, x: torch.Tensor, branch: torch.Tensor, memory: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One time step: inputs (batch, d_in) → outputs (batch, d_o) and the new state."""
        branch = self.kappa_s * branch + x @ self.projection
        h = self._act(
            torch.nn.functional.linear(branch, self.branch_weight, self.first_bias)
            + memory @ self.recurrent.t()
        )
        for layer in self.hidden:
            h = self._act(layer(h))
        delta = self.tanh_gain * torch.tanh(self.tanh_slope * self.out(h))
        memory = self.kappa_m * memory + self.gain * delta
        return self.readout(memory), branch, memory

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A whole sequence (batch, time, d_in) → (batch, time, d_o), from a zero state."""
        branch, memory = self.initial_state(x.shape[0])
        outputs: list[torch.Tensor] = []
        for t in range(x.shape[1]):
            y, branch, memory = self.step(x[:, t], branch, memory)
            outputs.append(y)
        return torch.stack(outputs, dim=1)


def _copy(layer: nn.Linear) -> nn.Linear:
    copy = nn.Linear(layer.in_features, layer.out_features)
    copy.load_state_dict(layer.state_dict())
    return copy


def to_torchscript(model: nn.Module) -> torch.jit.ScriptModule:
    model = model.eval()
    module = ELMInference(model).eval() if isinstance(model, ELM) else model
    with warnings.catch_warnings():
        # PyTorch ≥ 2.10 flags TorchScript as deprecated; it is still the format LibTorch loads
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*jit.*")
        return torch.jit.script(module)


def export_torchscript(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` as a TorchScript file; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_torchscript(model).save(str(path))
    return path
