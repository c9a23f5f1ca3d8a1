"""A linear leaky scan b_t = κ·b_{t−1} + z_t over long sequences, exact.

- On a CPU, the recurrence itself, compiled with numba: T·F multiply-adds each way (the gradient
  is the same scan run backwards in time), and no copies — batch-major in, batch-major out.
- On a GPU, where a sequential loop would idle the device, chunks: within a chunk of L steps the
  scan is one matrix product with the lower-triangular decay matrix D[t, s] = κ^(t−s); chunks
  are joined by carrying the last value forward (κ^(t+1)·carry). There is no cumulative product
  that could overflow, so it is exact for any length and any κ in [0, 1]. (L times the
  arithmetic of the loop, which a GPU has to spare and a CPU does not.)
"""

from __future__ import annotations

import numba
import numpy as np
import torch


@numba.njit(cache=True, nogil=True)
def _scan_forward(z, kappa):  # pragma: no cover - compiled
    out = np.empty_like(z)
    batch, steps, features = z.shape
    for b in range(batch):
        out[b, 0] = z[b, 0]
        for t in range(1, steps):
            for f in range(features):
                out[b, t, f] = kappa * out[b, t - 1, f] + z[b, t, f]
    return out


@numba.njit(cache=True, nogil=True)
def _scan_backward(grad, kappa):  # pragma: no cover - compiled
    out = np.empty_like(grad)
    batch, steps, features = grad.shape
    for b in range(batch):
        out[b, steps - 1] = grad[b, steps - 1]
        for t in range(steps - 2, -1, -1):
            for f in range(features):
                out[b, t, f] = kappa * out[b, t + 1, f] + grad[b, t, f]
    return out


class _CpuScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, kappa: float):
        ctx.kappa = kappa
        return torch.from_numpy(_scan_forward(z.detach().contiguous().numpy(), kappa))

    @staticmethod
    def backward(ctx, grad):
        return torch.from_numpy(_scan_backward(grad.contiguous().numpy(), ctx.kappa)), None


def leaky_scan(z: torch.Tensor, kappa: float, chunk: int = 128) -> torch.Tensor:
    """Scan along dim 1 of ``z`` (batch, time, features) from a zero state."""
    if z.device.type == "cpu" and z.shape[1] > 0:
        return _CpuScan.apply(z, float(kappa))
    return chunked_scan(z, kappa, chunk)


def chunked_scan(z: torch.Tensor, kappa: float, chunk: int = 128) -> torch.Tensor:
    """The GPU form: chunks of ``chunk`` steps as matrix products (any device)."""
    batch, steps, features = z.shape
    length = min(chunk, steps)
    t = torch.arange(length, device=z.device, dtype=z.dtype)
    lag = t[:, None] - t[None, :]
    decay = torch.where(lag >= 0, kappa ** lag.clamp(min=0), torch.zeros_like(lag))
    carry_decay = (kappa ** (t + 1))[:, None]
    # time-major with batch and features flattened: each chunk is one (L × L)·(L × B·D) GEMM
    flat = z.transpose(0, 1).reshape(steps, batch * features)
    outputs = []
    carry = flat.new_zeros(1, batch * features)
    for start in range(0, steps, length):
        block = flat[start : start + length]
        n = block.shape[0]
        scanned = decay[:n, :n] @ block + carry_decay[:n] * carry
        outputs.append(scanned)
        carry = scanned[-1:]
    return torch.cat(outputs, dim=0).reshape(steps, batch, features).transpose(0, 1)
