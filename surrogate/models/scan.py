"""A linear leaky scan b_t = κ·b_{t−1} + z_t over long sequences: exact, few sequential steps.

Within a chunk of L steps the scan is one matrix product with the lower-triangular decay matrix
D[t, s] = κ^(t−s); chunks are joined by carrying the last value forward (κ^(t+1)·carry). There
is no cumulative product that could overflow, so it is exact for any length and any κ in [0, 1].
"""

from __future__ import annotations

import torch


def leaky_scan(z: torch.Tensor, kappa: float, chunk: int = 128) -> torch.Tensor:
    """Scan along dim 1 of ``z`` (batch, time, features) from a zero state."""
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
