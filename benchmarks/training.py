"""ELM speed: the fast formulation against the plain per-step model, side by side.

    python benchmarks/training.py                 # NeuronIO shape, CPU (and CUDA when present)
    python benchmarks/training.py --repeats 5 --device cpu

Shape: 1278 inputs, Branch-ELM d_m = 20 with 45 branches × 100 synapses, batch 8 × 500 steps.
A training step is forward + loss + backward + Adam; inference is a forward pass without
gradients. Both models share the same weights; timings alternate between them so that drift of
a shared machine affects both alike, and the median of the repeats is reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surrogate.models import ELMConfig
from surrogate.models.elm import ELM
from surrogate.models.elm_reference import plain_forward


def measure(device: torch.device, repeats: int, batch: int, steps: int, d_m: int) -> None:
    torch.manual_seed(0)
    model = ELM(ELMConfig(num_input=1278, num_memory=d_m)).to(device)
    x = torch.randint(-1, 2, (batch, steps, 1278), device=device).float()
    target = torch.rand(batch, steps, 2, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    versions = {"fast": model, "plain": lambda inputs: plain_forward(model, inputs)}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(forward) -> float:
        sync()
        started = time.perf_counter()
        optimizer.zero_grad()
        out = forward(x)
        loss = 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(
            out[..., 0], target[..., 0]
        )
        loss = loss + 0.5 * torch.nn.functional.mse_loss(out[..., 1], target[..., 1])
        loss.backward()
        optimizer.step()
        sync()
        return time.perf_counter() - started

    @torch.no_grad()
    def infer(forward) -> float:
        sync()
        started = time.perf_counter()
        forward(x)
        sync()
        return time.perf_counter() - started

    for forward in versions.values():  # warm-up (numba compilation, allocator)
        train_step(forward)
        infer(forward)
    times = {(name, kind): [] for name in versions for kind in ("train", "infer")}
    for _ in range(repeats):
        for name, forward in versions.items():
            times[(name, "train")].append(train_step(forward))
            times[(name, "infer")].append(infer(forward))
    with torch.no_grad():
        diff = (model(x) - plain_forward(model, x)).abs().max().item()
    label = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"CPU, {torch.get_num_threads()} threads")
    )
    print(
        f"\n{label}: batch {batch} × {steps} steps, d_m {d_m}, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad)} parameters; "
        f"max |fast − plain| {diff:.1e}"
    )
    print(f"{'':<10} {'train s/batch':>14} {'train steps/s':>14} {'infer steps/s':>14}")
    median = {key: statistics.median(values) for key, values in times.items()}
    for name in versions:
        print(
            f"{name:<10} {median[(name, 'train')]:>14.4f} "
            f"{steps / median[(name, 'train')]:>14.0f} {steps / median[(name, 'infer')]:>14.0f}"
        )
    train_gain = median[("plain", "train")] / median[("fast", "train")]
    infer_gain = median[("plain", "infer")] / median[("fast", "infer")]
    print(f"{'speed-up':<10} {'':>14} {train_gain:>13.1f}× {infer_gain:>13.1f}×")
    print("(time steps per second of the whole batch; multiply by the batch size for sample-steps)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--num-memory", type=int, default=20)
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    args = parser.parse_args()
    devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        sys.exit("no CUDA GPU available")
    for device in devices:
        measure(device, args.repeats, args.batch, args.steps, args.num_memory)


if __name__ == "__main__":
    main()
