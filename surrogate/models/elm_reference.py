"""The ELM written straight from its equations, one time step at a time (docs/surrogates.md).

It shares the parameters of an :class:`~surrogate.models.elm.ELM` and exists to check the fast
formulation (tests) and to measure what the reformulation buys (benchmarks/training.py).
"""

from __future__ import annotations

import torch

from surrogate.models.elm import ELM
from surrogate.models.recurrence import SCALED_TANH_GAIN, SCALED_TANH_SLOPE


def plain_forward(model: ELM, x: torch.Tensor) -> torch.Tensor:
    c = model.config
    d_tree, d_brch = c.branches, c.synapses_per_branch
    batch, steps, _ = x.shape
    # routing, once for the whole sequence: x̃_t = X_t[:, idx] ⊙ mask
    routed = x[:, :, model.input_to_synapse_indices] * model.valid_indices_mask.to(x.dtype)
    w_s = torch.relu(model._proto_w_s)
    kappa_trace = torch.exp(-model.dt / model.trace_tau().clamp(min=1e-6))
    kappa_m = model.memory_kappa()
    gain = model.memory_gain(kappa_m)
    linears = [m for m in model.mlp.network if isinstance(m, torch.nn.Linear)]
    act = torch.nn.functional.silu if model.silu else torch.relu
    s = x.new_zeros(batch, d_tree * d_brch)
    b = x.new_zeros(batch, d_tree)
    m = x.new_zeros(batch, c.num_memory)
    outputs = []
    for t in range(steps):
        if model.v2:  # one leaky trace per branch
            b = kappa_trace * b + (w_s * routed[:, t]).view(batch, d_tree, d_brch).sum(-1)
        else:  # one leaky trace per synapse, summed on each branch
            s = kappa_trace * s + w_s * routed[:, t]
            b = s.view(batch, d_tree, d_brch).sum(-1)
        h = torch.cat([b, kappa_m * m], dim=-1)
        for layer in linears[:-1]:
            h = act(layer(h))
        delta = SCALED_TANH_GAIN * torch.tanh(SCALED_TANH_SLOPE * linears[-1](h))
        m = kappa_m * m + gain * delta
        outputs.append(model.w_y(m))
    return torch.stack(outputs, dim=1)
