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
- ``fast``: elmpipe's ELM (surrogate.models.elm): event-based input projection (it gets the
  sparse inputs as a tensor of events, as elmpipe's training loader gives them; the loader's cost
  of either form is printed too), linear scan, hoisted layer, compiled recurrence with its own
  backward pass (numba on a CPU; on a GPU, CUDA graphs of the per-step loops — and the row
  ``fast, GPU loop`` runs the same loops launched step by step, for comparison).

Inputs are NeuronIO-like — drawn by the data stage's input protocol (±1 spikes on ≈ 1–2 % of the
channels per millisecond, 262 basal and 377 apical segments) — and, separately, dense (a random
choice of −1, 0, +1 everywhere, as token tasks give). Timings alternate between the
implementations, so drift of a shared machine affects all alike; each is the mean of four
consecutive steps after an untimed one (steps follow each other in training; a first step after
another implementation's run finds caches and thread pools cold), the median of the repeats is
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
from surrogate.data import signed_events
from surrogate.models import ELMConfig
from surrogate.models.elm import ELM
from surrogate.models.elm_reference import plain_forward
from surrogate.models.recurrence import recurrence_backend

#: each timing is the mean of this many consecutive steps, after an untimed one
CONSECUTIVE = 4
N_BASAL, N_APICAL = 262, 377  # the Hay cell's dendritic segments (1278 input channels)


def neuronio_like_windows(batch: int, steps: int, seed: int = 0):
    """Boolean input windows (time, 1278) drawn with the NeuronIO protocol on a Hay-sized
    segment layout, and the channel signs (+1 excitatory, −1 inhibitory)."""
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
        draw = generate_inputs(NeuronIOProtocol(input_scale=1.0), layout, 500 + steps, rng_k)
        windows.append(draw.spikes[500 : 500 + steps])
    return windows, sign


def loader_costs(windows, sign, repeats: int = 20) -> tuple[float, float]:
    """Seconds to build a batch's inputs from boolean windows: dense floats, or an event
    tensor (surrogate.data.signed_events). elmpipe's loader cuts its events from simulations
    held in memory instead; this compares the two input forms, not the loader itself."""

    def timed(make) -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            make()
        return (time.perf_counter() - started) / repeats

    def dense() -> torch.Tensor:
        return torch.from_numpy(np.stack([w.astype(np.float32) * sign for w in windows]))

    return timed(dense), timed(lambda: signed_events(windows, sign))


def measure(
    device: torch.device, repeats: int, batch: int, steps: int, d_m: int, x, events=None
) -> None:
    """``x``: dense inputs for every version; ``events``: the same as a sparse tensor, which the
    fast ELM gets instead (as elmpipe's training loader gives it)."""
    torch.manual_seed(0)
    model = ELM(ELMConfig(num_input=1278, num_memory=d_m)).to(device)
    official = official_style(model).to(device)
    x = x.to(device)
    fast_x = (events if events is not None else x).to(device)
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
    if device.type == "cuda":  # the fast ELM with its recurrence as a per-step kernel loop

        def per_step_loop(inputs: torch.Tensor) -> torch.Tensor:
            with recurrence_backend("loop"):
                return model(inputs)

        versions["fast, GPU loop"] = per_step_loop
        optimizers["fast, GPU loop"] = optimizers["fast"]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def inputs(name: str) -> torch.Tensor:
        return fast_x if name.startswith("fast") else x

    def train_step(name, forward, steps: int = CONSECUTIVE) -> float:
        """Seconds per step, the mean of ``steps`` consecutive ones (as training runs them)."""
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            optimizers[name].zero_grad()
            out = forward(inputs(name))
            loss = 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(
                out[..., 0], target[..., 0]
            )
            loss = loss + 0.5 * torch.nn.functional.mse_loss(out[..., 1], target[..., 1])
            loss.backward()
            optimizers[name].step()
        sync()
        return (time.perf_counter() - started) / steps

    @torch.no_grad()
    def infer(name, forward, steps: int = CONSECUTIVE) -> float:
        sync()
        started = time.perf_counter()
        for _ in range(steps):
            forward(inputs(name))
        sync()
        return (time.perf_counter() - started) / steps

    for name, forward in versions.items():  # warm-up: numba compilation, TorchScript profiling
        train_step(name, forward, 3)
        infer(name, forward, 3)
    times = {(name, kind): [] for name in versions for kind in ("train", "infer")}
    for _ in range(repeats):
        for name, forward in versions.items():
            train_step(name, forward, 1)  # untimed: the previous version's run left caches cold
            times[(name, "train")].append(train_step(name, forward))
            infer(name, forward, 1)
            times[(name, "infer")].append(infer(name, forward))
    with torch.no_grad():
        reference = official(x)
        gaps = {n: (f(inputs(n)) - reference).abs().max().item() for n, f in versions.items()}
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
    if events is not None:
        print("(fast gets the inputs as a sparse tensor of events, as elmpipe's loader gives them)")


def profile(batch: int, steps: int, x: torch.Tensor, density: float) -> None:
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
    print(f"\nprofile of 10 fast training steps ({density:.2%} nonzero inputs, as events):")
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
    windows, sign = neuronio_like_windows(args.batch, args.steps)
    sparse = torch.from_numpy(np.stack([w.astype(np.float32) * sign for w in windows]))
    events = signed_events(windows, sign)
    dense = torch.randint(-1, 2, sparse.shape, generator=torch.Generator().manual_seed(0)).float()
    for device in devices:
        print("\n== NeuronIO-like sparse inputs")
        measure(device, args.repeats, args.batch, args.steps, args.num_memory, sparse, events)
        print("\n== dense inputs")
        measure(device, args.repeats, args.batch, args.steps, args.num_memory, dense)
    dense_ms, events_ms = (1000 * s for s in loader_costs(windows, sign))
    print(
        f"\nbuilding one batch's inputs from boolean windows (loader-thread work, not in the "
        f"rows above): dense floats {dense_ms:.2f} ms, events {events_ms:.2f} ms"
    )
    if args.profile:
        profile(args.batch, args.steps, events, float((sparse != 0).float().mean()))


if __name__ == "__main__":
    main()
