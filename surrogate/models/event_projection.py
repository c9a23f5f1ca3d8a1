"""The ELM's input projection z = x·W_eff computed from input events instead of dense rows.

NeuronIO inputs are ±1 on 1–2 % of the channels per millisecond. As events (row = batch·T + t,
channel, value) the projection is Σ value·W[channel] per row, O(events·d_tree), and its weight
gradient is Σ value·∂z[row] per channel, the same size — against the dense GEMM's
O(T·d_in·d_tree) each way. On a CPU both loops are compiled with numba (torch's own gather,
multiply and scatter-add take ~10× longer for the same sums, measured in benchmarks/training.py
--profile); on a GPU, torch's index_add (atomic adds) does it.
"""

from __future__ import annotations

import numba
import numpy as np
import torch


@numba.njit(cache=True, nogil=True)
def _scatter(targets, sources, values, table, n_targets):  # pragma: no cover - compiled
    """out[targets[e]] += values[e] · table[sources[e]] for every event e: the projection
    (targets = rows, sources = channels, table = W) and its weight gradient (the roles swapped,
    table = ∂z) are the same loop."""
    out = np.zeros((n_targets, table.shape[1]), table.dtype)
    for e in range(targets.shape[0]):
        t, s, v = targets[e], sources[e], values[e]
        for k in range(table.shape[1]):
            out[t, k] += v * table[s, k]
    return out


class _CpuEventProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows, channels, values, weight, n_rows: int):
        values = values.to(weight.dtype)
        ctx.save_for_backward(rows, channels, values)
        ctx.n_channels = weight.shape[0]
        out = _scatter(
            rows.numpy(), channels.numpy(), values.numpy(), weight.detach().contiguous().numpy(),
            n_rows,
        )  # fmt: skip
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out):
        rows, channels, values = ctx.saved_tensors
        grad = _scatter(
            channels.numpy(), rows.numpy(), values.numpy(), grad_out.contiguous().numpy(),
            ctx.n_channels,
        )  # fmt: skip
        return None, None, None, torch.from_numpy(grad), None


def _project_with_torch(rows, channels, values, weight, n_rows: int) -> torch.Tensor:
    """The same sums with torch's gather and atomic scatter-add (any device; used on GPUs)."""
    contributions = values.to(weight.dtype).unsqueeze(1) * weight.index_select(0, channels)
    return weight.new_zeros(n_rows, weight.shape[1]).index_add(0, rows, contributions)


def project_events(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight`` for a sparse COO tensor ``x`` (batch, time, d_in) of input events."""
    batch, steps, _ = x.shape
    b, t, channels = x._indices()
    rows = b * steps + t
    values = x._values()
    if weight.device.type == "cpu":
        out = _CpuEventProjection.apply(rows, channels, values, weight, batch * steps)
    else:
        out = _project_with_torch(rows, channels, values, weight, batch * steps)
    return out.view(batch, steps, weight.shape[1])
