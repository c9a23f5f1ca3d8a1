"""The simulation engines against the reference (NeuronIO's CVode run) on NeuronIO inputs.

The fidelity bar of docs/simulation-engines.md: every output spike matched within 0.25 ms, none
missing or extra, and soma RMSE after clipping at -55 mV at most 0.1 mV.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulations.inputs import InputLayout, NeuronIOProtocol, generate_inputs, simulation_rng
from simulations.simulate import SimulationSettings, Simulator

SPIKE_TOLERANCE_MS = 0.25
CLIPPED_RMSE_MV = 0.1


def neuronio_inputs(cell, duration_ms: float, index: int = 0) -> np.ndarray:
    layout = InputLayout.from_segment_table(cell.segments, ())
    rng = simulation_rng(1, "train", index, 0)
    return generate_inputs(NeuronIOProtocol(), layout, duration_ms, rng).spikes


def clipped_rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.minimum(a, -55.0) - np.minimum(b, -55.0)) ** 2)))


def run(cell, inputs, engine: str, **settings):
    duration = float(inputs.shape[0])
    simulator = Simulator(cell, SimulationSettings(duration_ms=duration, engine=engine, **settings))
    return simulator.run_binary(inputs)


def assert_matches_reference(reference, result) -> None:
    assert reference.n_spikes >= 1, "the test input must make the cell fire"
    assert result.n_spikes == reference.n_spikes, (reference.spike_times, result.spike_times)
    shift = np.abs(result.spike_times - reference.spike_times)
    assert shift.max() <= SPIKE_TOLERANCE_MS, (reference.spike_times, result.spike_times)
    assert clipped_rmse(reference.soma_v, result.soma_v) <= CLIPPED_RMSE_MV


@pytest.fixture(scope="module")
def default_runs(default_cell):
    inputs = neuronio_inputs(default_cell, 1000.0)
    return inputs, run(default_cell, inputs, "neuron-cvode")


def test_coreneuron_matches_the_reference_on_the_default_cell(default_cell, default_runs):
    inputs, reference = default_runs
    assert_matches_reference(reference, run(default_cell, inputs, "coreneuron"))


def test_coreneuron_is_deterministic_and_recording_dendrites_changes_nothing(
    default_cell, default_runs
):
    inputs, _ = default_runs
    plain = run(default_cell, inputs, "coreneuron")
    again = run(default_cell, inputs, "coreneuron")
    with_dendrites = run(default_cell, inputs, "coreneuron", record_dendrites=True)
    assert np.array_equal(plain.soma_v, again.soma_v)
    assert np.array_equal(plain.spike_times, again.spike_times)
    # dendrites are sampled block by block (CORENEURON_BLOCK_MS): the run itself is the same
    assert np.array_equal(plain.soma_v, with_dendrites.soma_v)
    assert with_dendrites.dend_v.shape == (inputs.shape[0], len(default_cell.segments))
    reference = run(default_cell, inputs, "neuron-fixed", record_dendrites=True, second_order=True)
    # the same 1 kHz samples as NEURON's own 1 ms recording of the same fixed-step scheme
    below = (reference.dend_v < -55) & (with_dendrites.dend_v < -55)
    assert np.abs(reference.dend_v - with_dendrites.dend_v)[below].max() < 0.05


def test_neuron_fixed_second_order_is_what_coreneuron_computes(default_cell, default_runs):
    inputs, _ = default_runs
    core = run(default_cell, inputs, "coreneuron")
    fixed = run(default_cell, inputs, "neuron-fixed", second_order=True)
    # same scheme and step; only the compiled maths differ (-ffast-math) and the input delay
    assert np.array_equal(core.spike_times, fixed.spike_times)
    assert clipped_rmse(core.soma_v, fixed.soma_v) < 0.01


def test_coreneuron_matches_the_reference_on_the_hay_cell(hay_cell):
    inputs = neuronio_inputs(hay_cell, 1000.0, index=10)  # 9 spikes
    reference = run(hay_cell, inputs, "neuron-cvode")
    assert_matches_reference(reference, run(hay_cell, inputs, "coreneuron"))


def test_settings_name_the_engine_and_accept_old_stores():
    assert SimulationSettings().engine == "coreneuron"
    assert SimulationSettings().uses_second_order
    assert not SimulationSettings(engine="neuron-fixed").uses_second_order
    old = SimulationSettings.model_validate({"duration_ms": 100, "integrator": "fixed"})
    assert old.engine == "neuron-fixed" and not old.uses_second_order
    assert SimulationSettings.model_validate({"integrator": "cvode"}).engine == "neuron-cvode"
    with pytest.raises(ValueError, match="dt_ms"):
        SimulationSettings(engine="coreneuron", dt_ms=0.03)
    with pytest.raises(ValueError, match="engine"):
        SimulationSettings(engine="brian2")
