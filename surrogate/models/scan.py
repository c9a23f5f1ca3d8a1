"""A linear leaky scan b_t = κ·b_{t−1} + z_t over long sequences: exact, few sequential steps.

Within a chunk of L steps the scan is one matrix product with the lower-triangular decay matrix
D[t, s] = κ^(t−s); chunks are joined by carrying the last value forward (κ^(t+1)·carry). There
is no cumulative product that could overflow, so it is exact for any length and any κ in [0, 1].
"""

from __future__ import annotations

import torch


def leaky_scan(z: torch.Tensor, kappa: float, chunk: int = 128) -> torch.Tensor:
    """Scan along dim 1 of ``z`` (batch, time, features) from a zero state."""
    steps = z.shape[1]
    length = min(chunk, steps)
    t = torch.arange(length, device=z.device, dtype=z.dtype)
    lag = t[:, None] - t[None, :]
    decay = torch.where(lag >= 0, kappa ** lag.clamp(min=0), torch.zeros_like(lag))
    carry_decay = kappa ** (t + 1)
    outputs = []
    carry = torch.zeros(z.shape[0], z.shape[2], device=z.device, dtype=z.dtype)
    for start in range(0, steps, length):
        block = z[:, start : start + length]
        n = block.shape[1]
        scanned = torch.einsum("ts,bsd->btd", decay[:n, :n], block)
        scanned = scanned + carry_decay[:n, None] * carry[:, None, :]
        outputs.append(scanned)
        carry = scanned[:, -1]
    return torch.cat(outputs, dim=1)
