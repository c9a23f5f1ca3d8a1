"""The input calibration on the four cells elmpipe is tested on, and the measurements behind it.

    python benchmarks/calibration.py                 # calibrate built-in, cell1, cell2, cell3
    python benchmarks/calibration.py --write-known   # … and ship the built-in and Hay results
    python benchmarks/calibration.py --reference     # re-measure the Hay cell's 24 draws

Each cell is calibrated by the command a user types (`elmpipe cell calibrate --json`), one after
another so that their wall times are comparable; the table shows the chosen scale, the probe's
output against the Hay cell's, and the wall time. ``--write-known`` stores the built-in cell's and
the Hay cell's results in simulations/data/calibrations.json, so that the default commands (and the
tests) need no calibration run; tests check those entries still match today's keys.
``--reference`` simulates the Hay cell on the probe's first 24 draws at scale 1 and prints the
counts that simulations/calibration.py writes down as REFERENCE_DRAW_SPIKES.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MORPHOLOGIES = ROOT.parent / "shared" / "data" / "morphologies"
CELLS = {
    "built-in": None,
    "cell1 (Hay)": MORPHOLOGIES / "cell1.asc",
    "cell2": MORPHOLOGIES / "cell2.asc",
    "cell3": MORPHOLOGIES / "cell3.asc",
}


def calibrate(
    morphology: Path | None, workers: int | None, config: Path | None = None
) -> tuple[dict, float]:
    command = [sys.executable, "-m", "pipelines.cli", "cell", "calibrate", "--json", "--quiet"]
    if config is not None:
        command += ["-c", str(config)]
    if morphology is not None:
        command += ["-m", str(morphology)]
    if workers:
        command += ["--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout), time.perf_counter() - started


def reference(workers: int) -> None:
    """The Hay cell's output spikes on draws 0 … 23 of the probe's stream at scale 1."""
    from pipelines.cluster import ClusterConfig, Task, executor
    from simulations import calibration as cal
    from simulations.cell import CellSpec
    from simulations.inputs import NeuronIOProtocol
    from simulations.runner import DatasetJob, probe_spike_counts
    from simulations.simulator import SimulationSettings, prepare_engine

    settings = cal.probe_settings(SimulationSettings())
    prepare_engine(settings)
    job = DatasetJob(
        store="",
        split=cal.PROBE_SPLIT,
        cell=CellSpec(morphology=str(MORPHOLOGIES / "cell1.asc")),
        protocol=cal.probe_protocol(NeuronIOProtocol(), 1.0),
        settings=settings,
        seed=cal.PROBE_SEED,
    )
    tasks = [Task(probe_spike_counts, (job, k, k + 1)) for k in range(24)]
    with executor(ClusterConfig(workers=workers)) as pool:
        counts = [n for chunk in pool.run(tasks, label="Hay cell, 24 draws") for n in chunk]
    print("REFERENCE_DRAW_SPIKES =", tuple(counts))
    print("written down:          ", cal.REFERENCE_DRAW_SPIKES)
    print("same" if tuple(counts) == cal.REFERENCE_DRAW_SPIKES else "DIFFERENT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--reference", action="store_true", help="re-measure the Hay draws")
    parser.add_argument("--write-known", action="store_true", help="ship built-in + Hay results")
    args = parser.parse_args()
    if args.reference:
        reference(args.workers or 2)
        return
    results = {}
    print(
        f"{'cell':<12} {'scale':>6} {'guess':>6} {'tried':>5} {'probe spikes':>13} "
        f"{'rate Hz':>8} {'target':>7} {'in 0-24':>8} {'wall s':>7}"
    )
    for name, morphology in CELLS.items():
        if morphology is not None and not morphology.is_file():
            print(f"{name:<12} (not found: {morphology})")
            continue
        result, seconds = calibrate(morphology, args.workers)
        results[name] = result
        mine, target = result["probe_achieved"], result["probe_target"]
        print(
            f"{name:<12} {result['input_scale']:>6g} {result['probe']['start']:>6g} "
            f"{len(result['rounds']):>5} {result['rounds'][-1]['spikes']:>6}/"
            f"{result['target_spikes']:<6g} {mine['rate_hz']:>8.2f} {target['rate_hz']:>7.2f} "
            f"{mine['share_in_kept_range']:>8.0%} {seconds:>7.0f}",
            flush=True,
        )
    if args.write_known:
        from simulations.calibration import KNOWN_CALIBRATIONS

        known = {
            results[name]["key"]: {k: v for k, v in results[name].items() if k != "morphology"}
            for name in ("built-in", "cell1 (Hay)")
            if name in results
        }
        KNOWN_CALIBRATIONS.write_text(json.dumps(known, indent=1) + "\n")
        print(f"wrote {KNOWN_CALIBRATIONS}")


if __name__ == "__main__":
    main()
