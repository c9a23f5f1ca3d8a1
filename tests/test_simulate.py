"""One simulation: event delivery, recording grids, spike detection and labels."""

from __future__ import annotations

import numpy as np
import pytest

from elmpipe.dataset import detect_spikes
from simulations.simulator import SimulationResult, SimulationSettings, Simulator


def test_detect_spikes_local_maxima_above_threshold():
    t = np.arange(0, 10, 0.125)
    v = np.full_like(t, -70.0)
    v[10] = 20.0  # spike
    v[40] = -30.0  # local max below threshold
    v[60:63] = [0.0, 10.0, 0.0]
    assert detect_spikes(t, v, -25.0).tolist() == [t[10], t[61]]


def test_spike_labels_use_int_t_minus_half():
    result = SimulationResult(
        soma_v=np.zeros(10, np.float32),
        nexus_v=np.zeros(10, np.float32),
        spike_times=np.array([0.25, 3.5, 3.625, 9.875]),
    )
    labels = result.spike_labels(10)
    assert np.flatnonzero(labels).tolist() == [0, 3, 9]


@pytest.fixture(scope="module")
def simulator(default_cell):
    return Simulator(default_cell, SimulationSettings(duration_ms=150))


def test_no_input_rests(simulator):
    result = simulator.run(np.array([]), np.array([], dtype=int))
    assert result.soma_v.shape == (150,) and result.soma_v.dtype == np.float32
    assert result.n_spikes == 0
    assert -82 < result.soma_v[-1] < -75


def test_one_event_arrives_at_its_time(simulator):
    channels = len(simulator.synapses)
    quiet = simulator.run(np.array([]), np.array([], dtype=int))
    exc = simulator.run(np.array([50.0] * 30), np.arange(30))
    # inhibition on the same segments: GABA_A reverses at -80 mV, near rest, so it shunts
    both = simulator.run(np.array([50.0] * 60), np.r_[np.arange(30), channels // 2 + np.arange(30)])
    # nothing before the event (up to CVode's different steps), depolarisation after it
    assert np.allclose(exc.soma_v[:50], quiet.soma_v[:50], atol=0.01)
    assert exc.soma_v[52:80].max() > quiet.soma_v[52:80].max() + 0.5
    assert both.soma_v[52:80].max() < exc.soma_v[52:80].max() - 0.1


def test_strong_input_fires_and_is_detected(simulator):
    channels = len(simulator.synapses) // 2
    times = np.repeat(np.arange(20.0, 60.0, 1.0), channels // 4)
    chans = np.tile(np.arange(channels // 4), 40)
    result = simulator.run(times, chans)
    assert result.n_spikes >= 1
    assert np.all(np.diff(result.spike_times) > 0)
    assert np.all(result.spike_times * 8 == np.round(result.spike_times * 8))  # 8 kHz grid
    labels = result.spike_labels(150)
    # NeuronIO's rule: bin int(t - 0.5); two maxima of one shoulder can share a bin
    expected = np.unique((result.spike_times - 0.5).astype(int))
    assert np.array_equal(np.flatnonzero(labels), expected)


def test_binary_inputs_equal_event_lists(simulator):
    rng = np.random.default_rng(0)
    binary = rng.random((150, len(simulator.synapses))) < 0.01
    a = simulator.run_binary(binary)
    t, c = np.nonzero(binary)
    b = simulator.run(t.astype(float), c)
    assert np.array_equal(a.soma_v, b.soma_v)


def test_fixed_step_agrees_with_cvode(default_cell):
    rng = np.random.default_rng(1)
    n = 2 * len(default_cell.segments)
    binary = rng.random((150, n)) < 0.012
    cvode = Simulator(default_cell, SimulationSettings(duration_ms=150)).run_binary(binary)
    fixed = Simulator(default_cell, SimulationSettings(duration_ms=150, engine="neuron-fixed"))
    result = fixed.run_binary(binary)
    assert np.sqrt(np.mean((cvode.soma_v - result.soma_v) ** 2)) < 0.5


def test_dendritic_recording(default_cell):
    sim = Simulator(default_cell, SimulationSettings(duration_ms=50, record_dendrites=True))
    result = sim.run(np.array([10.0]), np.array([0]))
    quiet = sim.run(np.array([]), np.array([], dtype=int))
    assert result.dend_v.shape == (50, len(default_cell.segments))
    assert result.dend_v.dtype == np.float32
    # nothing changes before the event; then the synapse's own segment depolarises most
    assert np.allclose(quiet.dend_v[:10], result.dend_v[:10], atol=0.01)
    assert np.argmax(result.dend_v[12] - quiet.dend_v[12]) == 0


def test_t0_lockout_silences_a_synapse_for_the_run_only_when_on(default_cell):
    """The reference quirk: an input at exactly t = 0 and that synapse never releases again."""
    from simulations.synapses import SynapseSettings

    def run(lockout: bool | None, times: list[float], channels: list[int]):
        settings = SimulationSettings(duration_ms=150, synapses=SynapseSettings(t0_lockout=lockout))
        return Simulator(default_cell, settings).run(np.array(times), np.array(channels))

    late = np.arange(30)  # 30 excitatory synapses, events at 60 ms
    with_t0 = ([0.0] * 30 + [60.0] * 30, [*late, *late])
    quiet = run(True, [], [])
    locked = run(True, *with_t0)
    normal = run(False, *with_t0)
    default = run(None, *with_t0)  # not resolved for a dataset: off
    only_late = run(True, [60.0] * 30, list(late))
    # locked: the 60 ms events of the silenced synapses do nothing at all
    np.testing.assert_array_equal(locked.soma_v, quiet.soma_v)
    # off: the t = 0 events and the 60 ms events both arrive
    assert normal.soma_v[62:90].max() > quiet.soma_v[62:90].max() + 0.5
    np.testing.assert_array_equal(default.soma_v, normal.soma_v)
    # a synapse without a t = 0 event is not silenced, lock-out on or off
    assert only_late.soma_v[62:90].max() > quiet.soma_v[62:90].max() + 0.5
    # other synapses keep releasing when some are silenced
    mixed = run(True, [0.0] + [60.0] * 30, [0, *late])
    assert (
        quiet.soma_v[62:90].max() + 0.5 < mixed.soma_v[62:90].max() < only_late.soma_v[62:90].max()
    )
