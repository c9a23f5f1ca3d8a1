"""What CoreNEURON's step costs in fidelity: replays of the original model at several steps.

    python benchmarks/step_size.py                      # 0.0125, 0.02 and 0.025 ms (≈ 3 min)
    python benchmarks/step_size.py 0.0125 0.025 --engine neuron-fixed

Replays the two 6 s runs of the original NeuronIO model in ``../shared/data/reference`` (their
inputs, with the t = 0 lock-out of NeuronIO data) through the Hay cell at each step, one fresh
process per step (NEURON holds one model per process), and prints side by side for each run:
wall seconds, spike count against the reference's, the largest and signed spike shifts, and
the soma RMSE after 500 ms clipped at -55 mV. The fidelity bar of the default engine (every
spike within 0.25 ms, none missing or extra, clipped RMSE ≤ 0.05 mV per replay) is what chose
the default step; this script shows what a larger one would cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RUNS = ("reference-replay-3.npz", "reference-replay-10.npz")
sys.path.insert(0, str(ROOT))


def replay(step_ms: float, engine: str) -> list[dict]:
    """Both replays at one step, in this process (run it in a fresh one)."""
    import time

    from simulations.cell import Cell
    from simulations.simulator import SimulationSettings, Simulator
    from simulations.synapses import SynapseSettings

    cell = Cell(str(SHARED / "morphologies" / "cell1.asc"))
    settings = SimulationSettings(
        duration_ms=6000,
        engine=engine,
        dt_ms=step_ms,
        synapses=SynapseSettings(t0_lockout=True),
    )
    simulator = Simulator(cell, settings)
    rows = []
    for name in RUNS:
        run = np.load(SHARED / "reference" / name)
        inputs = np.concatenate([run["ex"], run["inh"]]).T  # (time, channel)
        started = time.perf_counter()
        result = simulator.run_binary(inputs)
        wall = time.perf_counter() - started
        reference, spikes = run["spk"], result.spike_times
        nearest = [float(spikes[np.argmin(np.abs(spikes - s))] - s) for s in reference]
        clipped = np.minimum(result.soma_v[500:], -55.0) - np.minimum(run["soma"][500:], -55.0)
        rows.append(
            {
                "run": name,
                "wall": wall,
                "spikes": len(spikes),
                "reference_spikes": len(reference),
                "signed_shifts": nearest if len(spikes) else [],
                "clipped_rmse": float(np.sqrt(np.mean(clipped**2))),
            }
        )
    return rows


def _child(step_ms: float, engine: str, packages: Path | None = None) -> list[dict]:
    """Both replays in a fresh process; ``packages``: a folder whose ``simulations`` (and
    ``elmpipe``) replace this repository's (a variant, benchmarks/mechanism_variants.py)."""
    setup = f"sys.path.insert(0, {str(ROOT)!r}); "
    if packages:
        setup += (
            f"sys.path.insert(0, {str(packages)!r}); import simulations; "
            f"assert simulations.__file__.startswith({str(packages)!r}); "
        )
    code = (
        f"import json, sys; {setup}from benchmarks.step_size import replay; "
        f"print(json.dumps(replay({step_ms!r}, {engine!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"step {step_ms} ({packages or ROOT}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("steps", nargs="*", type=float, default=[0.0125, 0.02, 0.025])
    parser.add_argument("--engine", default="coreneuron", choices=["coreneuron", "neuron-fixed"])
    args = parser.parse_args()
    if not (SHARED / "reference" / RUNS[0]).exists():
        sys.exit(f"the reference runs are not in {SHARED / 'reference'}")
    print(
        f"{'step ms':>8} {'run':<24} {'wall s':>7} {'spikes':>7} {'max shift':>10}"
        f" {'clipped RMSE':>13}  signed shifts (ms, ours - reference)"
    )
    for step in args.steps:
        for row in _child(step, args.engine):
            shifts = row["signed_shifts"]
            largest = max((abs(s) for s in shifts), default=float("nan"))
            count = f"{row['spikes']}/{row['reference_spikes']}"
            print(
                f"{step:>8g} {row['run']:<24} {row['wall']:>7.1f} {count:>7} {largest:>10.3f}"
                f" {row['clipped_rmse']:>10.3f} mV  " + " ".join(f"{s:+.3f}" for s in shifts)
            )


if __name__ == "__main__":
    main()
