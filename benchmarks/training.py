"""ELM speed, side by side in one run: elmpipe's fast ELM against what users would otherwise run.

    python benchmarks/training.py                  # NeuronIO shape, CPU (and CUDA when present)
    python benchmarks/training.py --profile        # also: where a fast training step spends time

Shape: 1278 inputs, Branch-ELM d_m = 20 with 45 branches × 100 synapses, batch 8 × 500 steps.
A training step is forward + loss + backward + Adam; inference is a forward pass without
gradients. Three implementations share the same weights (the run checks their outputs agree):

- ``official-style``: the ELM as the released PyTorch module runs it — a TorchScript step per
  time step over 4500 synapse traces (benchmarks/official_style_elm.py, written from the
  published equations);
- ``plain``: elmpipe's per-step reference (surrogate.models.elm_reference), the equations as
  written;
- ``fast``: elmpipe's ELM (surrogate.models.elm): event-based input projection, linear scan,
  hoisted layer, compiled recurrence with its own backward pass.

Inputs are NeuronIO-like — drawn by the data stage's input protocol (±1 spikes on ≈ 1–2 % of the
channels per millisecond, 262 basal and 377 apical segments) — and, separately, dense (a random
choice of −1, 0, +1 everywhere, as token tasks give). Timings alternate between the
implementations, so drift of a shared machine affects all alike; the median of the repeats is
reported, and each speed-up is a ratio measured in this one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.official_style_elm import official_style
from surrogate.models import ELMConfig
from surrogate.models.elm import ELM
from surrogate.models.elm_reference import plain_forward

N_BASAL, N_APICAL = 262, 377  # the Hay cell's dendritic segments (1278 input channels)


def neuronio_like_inputs(batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    """Signed spike inputs drawn with the NeuronIO protocol on a Hay-sized segment layout."""
    from simulations.inputs import InputLayout, NeuronIOProtocol, generate_inputs, simulation_rng

    rng = np.random.default_rng(seed)
    n = N_BASAL + N_APICAL
    layout = InputLayout(
        region=np.array(["basal"] * N_BASAL + ["apical"] * N_APICAL),
        length=rng.uniform(2.0, 40.0, n),  # the Hay cell's segment lengths span 1.7–39.9 µm
        xyz=rng.normal(size=(n, 3)),
    )
    sign = np.r_[np.ones(n), -np.ones(n)].astype(np.float32)
    windows = []
    for k in range(batch):
        rng_k = simulation_rng(seed, "b", k)
        draw = generate_inputs(NeuronIOProtocol(), layout, 500 + steps, rng_k)
        windows.append(draw.spikes[500 : 500 + steps].astype(np.float32) * sign)
    return torch.from_numpy(np.stack(windows))


def measure(device: torch.device, repeats: int, batch: int, steps: int, d_m: int, x) -> None:
    torch.manual_seed(0)
    model = ELM(ELMConfig(num_input=1278, num_memory=d_m)).to(device)
    official = official_style(model).to(device)
    x = x.to(device)
    target = torch.rand(batch, steps, 2, device=device)
    optimizers = {
        "fast": torch.optim.Adam(model.parameters(), lr=1e-9),
        "official-style": torch.optim.Adam(official.parameters(), lr=1e-9),
    }
    optimizers["plain"] = optimizers["fast"]
    versions = {
        "official-style": official,
        "plain": lambda inputs: plain_forward(model, inputs),
        "fast": model,
    }

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(name, forward) -> float:
        sync()
        started = time.perf_counter()
        optimizers[name].zero_grad()
        out = forward(x)
        loss = 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(
            out[..., 0], target[..., 0]
        )
        loss = loss + 0.5 * torch.nn.functional.mse_loss(out[..., 1], target[..., 1])
        loss.backward()
        optimizers[name].step()
        sync()
        return time.perf_counter() - started

    @torch.no_grad()
    def infer(forward) -> float:
        sync()
        started = time.perf_counter()
        forward(x)
        sync()
        return time.perf_counter() - started

    for name, forward in versions.items():  # warm-up: numba compilation, TorchScript profiling
        for _ in range(3):
            train_step(name, forward)
            infer(forward)
    times = {(name, kind): [] for name in versions for kind in ("train", "infer")}
    for _ in range(repeats):
        for name, forward in versions.items():
            times[(name, "train")].append(train_step(name, forward))
            times[(name, "infer")].append(infer(forward))
    with torch.no_grad():
        reference = official(x)
        gaps = {name: (f(x) - reference).abs().max().item() for name, f in versions.items()}
    label = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    density = float((x != 0).float().mean())
    print(
        f"\n{label}: batch {batch} × {steps} steps, {density:.2%} of inputs nonzero, d_m {d_m}, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad)} parameters; "
        "max |output − official-style| "
        + ", ".join(f"{k} {v:.1e}" for k, v in gaps.items() if k != "official-style")
    )
    print(f"{'':<15} {'train s/batch':>14} {'infer s/batch':>14} {'train ×':>8} {'infer ×':>8}")
    median = {key: statistics.median(values) for key, values in times.items()}
    base_train = median[("official-style", "train")]
    base_infer = median[("official-style", "infer")]
    for name in versions:
        train, inference = median[(name, "train")], median[(name, "infer")]
        print(
            f"{name:<15} {train:>14.4f} {inference:>14.4f} "
            f"{base_train / train:>7.1f}× {base_infer / inference:>7.1f}×"
        )
    print("(× = speed-up against the official-style TorchScript module, measured in this run)")


def profile(batch: int, steps: int, x: torch.Tensor) -> None:
    """Where one fast training step spends its time (PyTorch profiler, CPU)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    model = ELM(ELMConfig(num_input=1278))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-9)
    target = torch.rand(batch, steps, 2)

    def step() -> None:
        optimizer.zero_grad()
        out = model(x)
        loss = torch.nn.functional.mse_loss(out, target)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            step()
    print(f"\nprofile of 10 fast training steps ({(x != 0).float().mean():.2%} nonzero inputs):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--num-memory", type=int, default=20)
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--profile", action="store_true", help="profile a fast training step")
    args = parser.parse_args()
    devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        sys.exit("no CUDA GPU available")
    sparse = neuronio_like_inputs(args.batch, args.steps)
    dense = torch.randint(-1, 2, sparse.shape, generator=torch.Generator().manual_seed(0)).float()
    for device in devices:
        for name, x in (("NeuronIO-like sparse inputs", sparse), ("dense inputs", dense)):
            print(f"\n== {name}")
            measure(device, args.repeats, args.batch, args.steps, args.num_memory, x)
    if args.profile:
        profile(args.batch, args.steps, sparse)


if __name__ == "__main__":
    main()
