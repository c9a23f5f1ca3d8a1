"""The simulation engines against the reference (NeuronIO's CVode run) on NeuronIO inputs.

The fidelity bar of docs/simulation-engines.md: every output spike matched within 0.25 ms, none
missing or extra, and soma RMSE after clipping at -55 mV at most 0.1 mV — for coreneuron with its
fine step throughout and with the adaptive step. Every run happens in a fresh process
(tests/engine_runs.py), as in a dataset worker.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulations.simulator import (
    DEFAULT_STEP_MS,
    AdaptiveStep,
    SimulationSettings,
    merge_spans,
    outside,
    split_plan,
    step_plan,
)
from tests.engine_runs import (
    CLIPPED_RMSE_MV,
    assert_matches_reference,
    clipped_rmse,
    run_in_fresh_process,
)

#: the two ways coreneuron steps (fine throughout; coarse away from spikes), as engine_runs options
STEPPING = {"fine": {}, "adaptive": {"adaptive": {}}}


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory):
    """The built-in cell, 1 s of NeuronIO input (2 output spikes), through each engine."""
    tmp = tmp_path_factory.mktemp("engines")
    return {
        "reference": run_in_fresh_process("neuron-cvode", tmp / "cvode.npz"),
        "coreneuron": run_in_fresh_process("coreneuron", tmp / "core.npz"),
        "again": run_in_fresh_process("coreneuron", tmp / "again.npz"),
        "adaptive": run_in_fresh_process("coreneuron", tmp / "adaptive.npz", adaptive={}),
        "adaptive-capped": run_in_fresh_process(
            "coreneuron", tmp / "adaptive-capped.npz", adaptive={"max_fine_share": 0.05}
        ),
        "adaptive-dendrites": run_in_fresh_process(
            "coreneuron", tmp / "adaptive-dend.npz", adaptive={}, record_dendrites=True
        ),
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


def test_adaptive_steps_match_the_reference_on_the_default_cell(default_runs):
    assert_matches_reference(default_runs["reference"], default_runs["adaptive"])
    # coarse steps change the run (not a copy of the fine one), within the bar
    assert not np.array_equal(
        default_runs["adaptive"]["soma_v"], default_runs["coreneuron"]["soma_v"]
    )


def test_a_bounded_fine_share_moves_the_windows_and_keeps_the_spikes(default_runs):
    """``max_fine_share`` (the demo's) raises the window threshold when the soma sits above
    −65 mV too long; the spikes stay (within a coarse step: the demo's bar, not the fidelity's)."""
    reference, capped = default_runs["reference"], default_runs["adaptive-capped"]
    assert not np.array_equal(capped["soma_v"], default_runs["adaptive"]["soma_v"])
    assert len(capped["spike_times"]) == len(reference["spike_times"]) >= 1
    assert np.abs(capped["spike_times"] - reference["spike_times"]).max() <= 0.5


def test_adaptive_steps_record_dendrites_without_changing_the_run(default_runs):
    plain, dend = default_runs["adaptive"], default_runs["adaptive-dendrites"]
    assert np.array_equal(plain["soma_v"], dend["soma_v"])
    assert dend["dend_v"].shape == (1000, 380)
    fine = default_runs["dendrites"]["dend_v"]  # the same samples, at the fine step throughout
    assert clipped_rmse(fine, dend["dend_v"]) <= CLIPPED_RMSE_MV  # the soma's bar, every segment


def test_the_adaptive_plan_is_fine_around_spikes_and_coarse_elsewhere():
    windows = merge_spans([(300.0, 307.0), (10.0, 17.0), (15.0, 20.0)])
    assert windows == [(10.0, 20.0), (300.0, 307.0)]
    assert step_plan(windows, 1000.0, 0.0125, 0.1) == [
        (10.0, 0.1), (20.0, 0.0125), (300.0, 0.1), (307.0, 0.0125), (1000.0, 0.1),
    ]  # fmt: skip
    assert step_plan([(0.0, 5.0)], 5.0, 0.0125, 0.1) == [(5.0, 0.0125)]
    assert split_plan([(700.0, 0.1), (1000.0, 0.0125)], 500.0) == [
        (500.0, 0.1), (700.0, 0.1), (1000.0, 0.0125),
    ]  # fmt: skip
    assert list(outside(windows, np.array([5.0, 10.0, 12.0, 25.0, 307.0, 308.0]))) == [5, 25, 308]


def test_adaptive_settings_are_checked():
    assert SimulationSettings(adaptive=AdaptiveStep()).input_delay_ms == 0.2  # two scout steps
    assert SimulationSettings().input_delay_ms == 0.05
    with pytest.raises(ValueError, match="engine coreneuron"):
        SimulationSettings(engine="neuron-cvode", adaptive=AdaptiveStep())
    with pytest.raises(ValueError, match="multiple of dt_ms"):
        SimulationSettings(adaptive=AdaptiveStep(coarse_dt_ms=0.03))
    with pytest.raises(ValueError, match="multiple of dt_ms"):
        SimulationSettings(dt_ms=0.025, adaptive=AdaptiveStep(coarse_dt_ms=0.025))
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match="max_fine_share"):
            AdaptiveStep(max_fine_share=share)


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


@pytest.mark.slow  # in CI the Hay cell's CoreNEURON runs are held to the original model's own
# reference runs instead (tests/test_fidelity.py, both steppings); this one is their twin
# against our CVode run, 1.5 minutes
def test_coreneuron_matches_the_reference_on_the_hay_cell(hay_path, tmp_path):
    options = {"morphology": str(hay_path), "index": 10}  # an input that makes it fire 9 times
    reference = run_in_fresh_process("neuron-cvode", tmp_path / "cvode.npz", **options)
    for name, stepping in STEPPING.items():
        result = run_in_fresh_process("coreneuron", tmp_path / f"{name}.npz", **options, **stepping)
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
    # an adaptive store from before the fine share's bound continues unbounded
    from elmpipe.dataset.schema import upgrade_stored_settings

    stored = SimulationSettings(adaptive=AdaptiveStep()).model_dump(mode="json")
    del stored["adaptive"]["max_fine_share"]
    assert upgrade_stored_settings(stored) == SimulationSettings(
        adaptive=AdaptiveStep()
    ).model_dump(mode="json")
    resolved = SimulationSettings().resolved(t0_lockout=True)
    assert resolved.dt_ms == 0.0125 and resolved.synapses.t0_lockout is True
    assert SimulationSettings(dt_ms=0.025).resolved().dt_ms == 0.025
    with pytest.raises(ValueError, match="engine"):
        SimulationSettings(engine="brian2")


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1, 2, 3])
@pytest.mark.parametrize("cell", ["hay", "default"])
def test_coreneuron_matches_the_reference_on_6_s_runs(request, tmp_path, cell, index):
    """The fidelity bar on full NeuronIO-length runs, four input seeds per cell, for both ways
    coreneuron steps (≈ 20 min)."""
    morphology = str(request.getfixturevalue("hay_path")) if cell == "hay" else None
    options = {"morphology": morphology, "index": index, "ms": 6000.0}
    reference = run_in_fresh_process("neuron-cvode", tmp_path / "cvode.npz", **options)
    for name, stepping in STEPPING.items():
        result = run_in_fresh_process("coreneuron", tmp_path / f"{name}.npz", **options, **stepping)
        if len(reference["spike_times"]) == 0:
            assert len(result["spike_times"]) == 0
            assert clipped_rmse(reference["soma_v"], result["soma_v"]) <= CLIPPED_RMSE_MV
            continue
        assert_matches_reference(reference, result)
