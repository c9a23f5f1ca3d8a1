"""The simulation engines against the reference (NeuronIO's CVode run) on NeuronIO inputs.

The fidelity bar of docs/simulation-engines.md: every output spike matched within 0.25 ms, none
missing or extra, and soma RMSE after clipping at -55 mV at most 0.1 mV. Every run happens in a
fresh process (tests/engine_runs.py), as in a dataset worker.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulations.simulator import DEFAULT_STEP_MS, SimulationSettings
from tests.engine_runs import run_in_fresh_process

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


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory):
    """The built-in cell, 1 s of NeuronIO input (2 output spikes), through each engine."""
    tmp = tmp_path_factory.mktemp("engines")
    return {
        "reference": run_in_fresh_process("neuron-cvode", tmp / "cvode.npz"),
        "coreneuron": run_in_fresh_process("coreneuron", tmp / "core.npz"),
        "again": run_in_fresh_process("coreneuron", tmp / "again.npz"),
        "dendrites": run_in_fresh_process(
            "coreneuron", tmp / "core-dend.npz", record_dendrites=True
        ),
        "fixed": run_in_fresh_process(
            "neuron-fixed",
            tmp / "fixed.npz",
            record_dendrites=True,
            second_order=True,
            dt_ms=DEFAULT_STEP_MS["coreneuron"],  # coreneuron's scheme and step, in NEURON
        ),
    }


def test_coreneuron_matches_the_reference_on_the_default_cell(default_runs):
    assert_matches_reference(default_runs["reference"], default_runs["coreneuron"])


def test_coreneuron_is_deterministic_and_recording_dendrites_changes_nothing(default_runs):
    plain, again = default_runs["coreneuron"], default_runs["again"]
    dend = default_runs["dendrites"]
    assert np.array_equal(plain["soma_v"], again["soma_v"])
    assert np.array_equal(plain["spike_times"], again["spike_times"])
    # dendrites are sampled block by block (CORENEURON_BLOCK_MS): the run itself is the same
    assert np.array_equal(plain["soma_v"], dend["soma_v"])
    assert dend["dend_v"].shape == (1000, 380)
    # the same 1 kHz samples as NEURON's own 1 ms recording of the same fixed-step scheme
    fixed = default_runs["fixed"]["dend_v"]
    below = (fixed < -55) & (dend["dend_v"] < -55)
    assert np.abs(fixed - dend["dend_v"])[below].max() < 0.05


def test_coreneuron_computes_what_neuron_fixed_second_order_computes(default_runs):
    core, fixed = default_runs["coreneuron"], default_runs["fixed"]
    # same scheme and step; only the compiled maths (-ffast-math) and the input delay differ
    assert np.array_equal(core["spike_times"], fixed["spike_times"])
    assert clipped_rmse(core["soma_v"], fixed["soma_v"]) < 0.01


def test_coreneuron_matches_the_reference_on_the_hay_cell(hay_path, tmp_path):
    options = {"morphology": str(hay_path), "index": 10}  # an input that makes it fire 9 times
    reference = run_in_fresh_process("neuron-cvode", tmp_path / "cvode.npz", **options)
    result = run_in_fresh_process("coreneuron", tmp_path / "core.npz", **options)
    assert_matches_reference(reference, result)


def test_a_failed_coreneuron_build_says_how_to_go_on(monkeypatch, tmp_path):
    from simulations.mechanisms import MechanismBuildError
    from simulations.simulator import prepare_engine

    monkeypatch.setenv("ELMPIPE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-elmpipe")
    with pytest.raises(MechanismBuildError, match="--engine neuron-fixed"):
        prepare_engine(SimulationSettings(engine="coreneuron"))
    prepare_engine(SimulationSettings(engine="neuron-cvode"))  # needs nothing more


def test_settings_name_the_engine_and_accept_old_stores():
    assert SimulationSettings().engine == "coreneuron"
    assert SimulationSettings().uses_second_order
    assert not SimulationSettings(engine="neuron-fixed").uses_second_order
    old = SimulationSettings.model_validate({"duration_ms": 100, "integrator": "fixed"})
    assert old.engine == "neuron-fixed" and not old.uses_second_order
    assert SimulationSettings.model_validate({"integrator": "cvode"}).engine == "neuron-cvode"
    with pytest.raises(ValueError, match="dt_ms"):
        SimulationSettings(engine="coreneuron", dt_ms=0.03)
    # an unset step is the engine's default, made explicit for a dataset's record
    assert SimulationSettings().step_ms == 0.0125
    assert SimulationSettings(engine="neuron-fixed").step_ms == 0.025
    resolved = SimulationSettings().resolved(t0_lockout=True)
    assert resolved.dt_ms == 0.0125 and resolved.synapses.t0_lockout is True
    assert SimulationSettings(dt_ms=0.025).resolved().dt_ms == 0.025
    with pytest.raises(ValueError, match="engine"):
        SimulationSettings(engine="brian2")


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1, 2, 3])
@pytest.mark.parametrize("cell", ["hay", "default"])
def test_coreneuron_matches_the_reference_on_6_s_runs(request, tmp_path, cell, index):
    """The fidelity bar on full NeuronIO-length runs, four input seeds per cell (≈ 15 min)."""
    morphology = str(request.getfixturevalue("hay_path")) if cell == "hay" else None
    options = {"morphology": morphology, "index": index, "ms": 6000.0}
    reference = run_in_fresh_process("neuron-cvode", tmp_path / "cvode.npz", **options)
    result = run_in_fresh_process("coreneuron", tmp_path / "core.npz", **options)
    if len(reference["spike_times"]) == 0:
        assert len(result["spike_times"]) == 0
        assert clipped_rmse(reference["soma_v"], result["soma_v"]) <= CLIPPED_RMSE_MV
        return
    assert_matches_reference(reference, result)
