"""One engine run of NeuronIO inputs in a fresh process, as a dataset worker would do it.

NEURON holds one model per process, and every other cell in a process changes a CVode run (its
error control spans all sections), so engine comparisons run each simulation on its own
(:func:`run_in_fresh_process`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: the engines' fidelity bar (docs/simulation-engines.md)
SPIKE_TOLERANCE_MS = 0.25
CLIPPED_RMSE_MV = 0.1


def clipped_rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.minimum(a, -55.0) - np.minimum(b, -55.0)) ** 2)))


def assert_matches_reference(reference: dict, result: dict) -> None:
    ref, got = reference["spike_times"], result["spike_times"]
    assert len(ref) >= 1, "the test input must make the cell fire"
    assert len(got) == len(ref), (ref, got)
    assert np.abs(got - ref).max() <= SPIKE_TOLERANCE_MS, (ref, got)
    assert clipped_rmse(reference["soma_v"], result["soma_v"]) <= CLIPPED_RMSE_MV


def simulate(
    engine: str,
    out: str,
    *,
    morphology: str | None = None,
    cell: dict | None = None,
    input_scale: float = 1.0,
    ms: float = 1000.0,
    index: int = 0,
    record_dendrites: bool = False,
    second_order: bool | None = None,
    dt_ms: float | None = None,
    adaptive: dict | None = None,
) -> None:
    from simulations.cell import CellSpec
    from simulations.inputs import InputLayout, NeuronIOProtocol, generate_inputs, simulation_rng
    from simulations.simulator import AdaptiveStep, SimulationSettings, Simulator

    the_cell = CellSpec.model_validate(cell or {"morphology": morphology}).build()
    layout = InputLayout.from_segment_table(the_cell.segments, ())
    inputs = generate_inputs(
        NeuronIOProtocol(input_scale=input_scale), layout, ms, simulation_rng(1, "train", index, 0)
    ).spikes
    settings = SimulationSettings(
        duration_ms=ms,
        engine=engine,
        record_dendrites=record_dendrites,
        second_order=second_order,
        dt_ms=dt_ms,
        adaptive=None if adaptive is None else AdaptiveStep(**adaptive),
    )
    result = Simulator(the_cell, settings).run_binary(inputs)
    table = the_cell.segments
    np.savez(
        out,
        section=table.section,
        x=table.x,
        distance=table.distance,
        area=table.area,
        nexus=np.array([the_cell.nexus.section, str(the_cell.nexus.x)]),
        soma_v=result.soma_v,
        spike_times=result.spike_times,
        dend_v=result.dend_v if result.dend_v is not None else np.zeros((0, 0)),
    )


def run_in_fresh_process(engine: str, out: Path, **options) -> dict[str, np.ndarray]:
    """Run :func:`simulate` in a child process and load what it saved."""
    code = (
        "import json, sys; "
        f"sys.path.insert(0, {str(ROOT)!r}); "
        "from tests.engine_runs import simulate; "
        "simulate(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))"
    )
    command = [sys.executable, "-c", code, engine, str(out), json.dumps(options)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} run failed:\n{done.stderr[-3000:]}")
    with np.load(out) as data:
        return {name: data[name] for name in data.files}
