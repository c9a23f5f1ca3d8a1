"""Input-to-synapse routings of the (Branch-)ELM: which input channel feeds each synapse.

Routings are computed once at construction and stored in the model as an index vector and a
validity mask (masked synapses receive zero input), exactly as in the released checkpoints.
"""

from __future__ import annotations

import math

import torch


def no_routing(num_input: int, num_synapse: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synapse k gets input k (the vanilla ELM)."""
    if num_synapse != num_input:
        raise ValueError(
            f"routing 'none' needs one synapse per input: "
            f"{num_synapse} synapses for {num_input} inputs"
        )
    return torch.arange(num_input, dtype=torch.int64), torch.ones(num_input, dtype=torch.bool)


def random_routing(
    num_input: int, num_synapse: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each synapse draws its input uniformly (with replacement), from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, num_input, (num_synapse,), generator=generator, dtype=torch.int64)
    return index, torch.ones(num_synapse, dtype=torch.bool)


def neuronio_routing(
    num_input: int,
    num_branch: int,
    num_synapse_per_branch: int,
    segment_order: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping windows over interleaved excitatory/inhibitory inputs (all released models).

    Inputs are laid out as all excitatory channels then all inhibitory ones (the dataset's channel
    order). Interleaved position p is raw channel (p mod 2)·n + ⌊p/2⌋ with n = num_input / 2, so
    neighbouring positions are the excitatory and inhibitory synapse of one segment, and segments
    follow the segment order. Branch j reads positions stride·j + q (q < synapses per branch),
    stride = ⌈num_input / num_branch⌉; positions past the end are masked. For 1278 inputs,
    45 × 100 this reproduces the released checkpoints exactly; any even input count works.
    With ``segment_order``, the positions walk the segments in that order instead (position
    2k and 2k + 1 are segment ``segment_order[k]``).
    """
    if num_input % 2:
        raise ValueError(
            f"neuronio routing needs excitatory and inhibitory halves; got {num_input} inputs"
        )
    stride = math.ceil(num_input / num_branch)
    if stride > num_synapse_per_branch:
        raise ValueError(
            f"neuronio routing: ⌈{num_input}/{num_branch}⌉ = {stride} exceeds "
            f"{num_synapse_per_branch} synapses per branch, so some inputs would feed no synapse"
        )
    half = num_input // 2
    position = torch.arange(num_branch).repeat_interleave(
        num_synapse_per_branch
    ) * stride + torch.arange(num_synapse_per_branch).repeat(num_branch)
    valid = position < num_input
    position = position.clamp(max=num_input - 1)
    segment = position // 2
    if segment_order is not None:
        segment = torch.as_tensor(segment_order, dtype=torch.int64)[segment]
    raw = (position % 2) * half + segment
    raw = torch.where(valid, raw, torch.full_like(raw, num_input - 1))
    return raw.to(torch.int64), valid
