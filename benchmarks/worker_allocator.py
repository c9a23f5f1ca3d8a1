"""Training speed in a dask worker's environment, with and without keeping freed memory.

    python benchmarks/worker_allocator.py            # ≈ 1 min

dask starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``, which fixes glibc's thresholds,
so every freed batch went back to the OS and came back as fresh pages (surrogate/allocator.py).
This script makes a synthetic dataset of the Hay cell's shape (1278 input channels, 6 s
simulations, NeuronIO-like input rates), then trains the same 300 batches three times, each in a
fresh process, one after the other: a plain environment, dask's worker environment as before
the fix (the thresholds left as dask fixed them), and dask's environment with the fix (what
``elmpipe`` does now). It prints each run's training seconds and user/system CPU seconds, and the
ratios measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_CHANNELS, DURATION_MS = 1278, 6000


def make_dataset(path: Path, n_train: int = 8) -> Path:
    """Random data with the Hay cell's layout: speed depends on shapes and rates, not content."""
    from elmpipe.dataset import DatasetSpec, SimulationRecord, prepare_split, write_block

    half = N_CHANNELS // 2
    spec = DatasetSpec(
        cell={"fingerprint": "synthetic-hay-shape", "segment_table": {"region": ["basal"] * half}},
        channels={
            "segment": [*range(half), *range(half)],
            "kind": ["excitatory"] * half + ["inhibitory"] * half,
        },
        protocol={"kind": "synthetic"},
        simulation={"duration_ms": float(DURATION_MS), "record_dendrites": False},
        seed=0,
    )
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("valid", 2)):
        prepare_split(path, spec, split, n)
        for k in range(n):
            inputs = rng.random((DURATION_MS, N_CHANNELS)) < 0.0015  # ≈ 1.5 Hz per channel
            soma = (-70 + np.cumsum(rng.normal(0, 0.3, DURATION_MS))).astype(np.float32)
            spikes = rng.random(DURATION_MS) < 0.001
            record = SimulationRecord(
                inputs=inputs,
                soma_v=soma,
                nexus_v=soma,
                spikes=spikes,
                spike_times=np.flatnonzero(spikes) + 0.5,
                interval_ms=-1,
                smoothing_ms=-1,
                attempts=1,
            )
            write_block(path, split, k, [record])
    return path


CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads(1)
import surrogate.train
if not {fix}:
    surrogate.train.keep_freed_memory = lambda: False  # as before the fix
from surrogate.models import ELMConfig
from surrogate.neuronio_fit import TrainConfig, fit
config = TrainConfig(
    model=ELMConfig(num_input={channels}, num_memory=20, num_branch=45),
    epochs=1, batches_per_epoch={batches}, valid_batches=1, loader_workers=2, learning_rate=1e-3,
)
result = fit(config, {data!r}, {out!r}, progress=False)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"train_s": result.last["seconds"], "user": usage.ru_utime,
                  "system": usage.ru_stime}}))
"""


def run(data: Path, out: Path, batches: int, *, dask_env: bool, fix: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    if dask_env:
        env["MALLOC_TRIM_THRESHOLD_"] = "65536"  # distributed.nanny.pre-spawn-environ
    code = CHILD.format(
        root=str(ROOT), fix=fix, channels=N_CHANNELS, batches=batches, data=str(data), out=str(out)
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "data.zarr")
        versions = {
            "plain environment": {"dask_env": False, "fix": True},
            "dask worker, before the fix": {"dask_env": True, "fix": False},
            "dask worker, with the fix": {"dask_env": True, "fix": True},
        }
        results = {}
        for i, (name, options) in enumerate(versions.items()):
            results[name] = run(data, Path(tmp) / f"run{i}", args.batches, **options)
    print(f"{args.batches} training batches of 8 × 500 ms, Branch-ELM d_m 20, one thread")
    print(f"{'':<30} {'training s':>11} {'user s':>8} {'system s':>9}")
    for name, r in results.items():
        print(f"{name:<30} {r['train_s']:>11.2f} {r['user']:>8.2f} {r['system']:>9.2f}")
    before = results["dask worker, before the fix"]["train_s"]
    after = results["dask worker, with the fix"]["train_s"]
    plain = results["plain environment"]["train_s"]
    print(
        f"in a dask worker, the fix trains ×{before / after:.2f} faster; "
        f"worker with the fix / plain process: {after / plain:.2f}"
    )


if __name__ == "__main__":
    main()
