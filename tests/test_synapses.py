"""Synapse kinetics on a dendritic segment of a real cell, against the documented equations."""

from __future__ import annotations

import numpy as np
import pytest

from simulations import electrophysiology as ephys
from tests.channel_reference import dual_exponential, mg_block

ONSET = 100.0


@pytest.fixture(scope="module")
def site(default_cell):
    return default_cell.dendritic_segments()[len(default_cell.segments) // 2]


def _after_onset(rec, name):
    keep = rec.t >= ONSET
    return rec.t[keep] - ONSET, rec.traces[name][keep]


def test_single_excitatory_event_ampa_and_nmda_time_courses(default_cell, site):
    v_hold = -40.0
    rec = ephys.synaptic_event(
        default_cell, "AmpaNmda", site, onset=ONSET, window=250.0, clamp_at=v_hold, atol=1e-7
    )
    gmax = 0.0004
    t, g_ampa = _after_onset(rec, "g_AMPA")
    _, g_nmda = _after_onset(rec, "g_NMDA")
    block = mg_block(v_hold)
    np.testing.assert_allclose(g_ampa / gmax, dual_exponential(t, 0.3, 3.0), atol=2e-3)
    np.testing.assert_allclose(g_nmda / (gmax * block), dual_exponential(t, 2.0, 70.0), atol=2e-3)
    # documented peaks: both normalised to gmax (0.4 nS) at tp = 0.768 ms (AMPA), 7.32 ms (NMDA)
    assert g_ampa.max() == pytest.approx(gmax, rel=2e-3)
    assert t[np.argmax(g_ampa)] == pytest.approx(0.768, abs=0.06)
    assert g_nmda.max() / block == pytest.approx(gmax, rel=2e-3)
    assert t[np.argmax(g_nmda)] == pytest.approx(7.32, abs=0.11)
    # nothing before the event
    assert np.all(rec.traces["g"][rec.t < ONSET] == 0)


@pytest.mark.parametrize(("v", "documented"), [(-70, 0.013), (-50, 0.061), (-30, 0.245), (0, 0.78)])
def test_mg_block_values(default_cell, site, v, documented):
    rec = ephys.synaptic_event(default_cell, "AmpaNmda", site, onset=ONSET, window=20.0, clamp_at=v)
    block = rec.at("mgblock", ONSET + 10.0)
    assert block == pytest.approx(float(mg_block(v)), rel=1e-3)
    assert block == pytest.approx(documented, abs=0.0015)


def test_inhibitory_event_gaba_a_time_course_and_reversal(default_cell, site):
    rec = ephys.synaptic_event(
        default_cell, "GabaA", site, onset=ONSET, window=60.0, clamp_at=-60.0, atol=1e-7
    )
    t, g = _after_onset(rec, "g")
    np.testing.assert_allclose(g / 0.001, dual_exponential(t, 0.2, 8.0), atol=2e-3)
    assert g.max() == pytest.approx(0.001, rel=2e-3)
    assert t[np.argmax(g)] == pytest.approx(0.757, abs=0.06)


def test_gaba_a_reverses_at_minus_80(h_units):
    h, sec = h_units
    syn = h.GabaA(sec(0.5))
    for v in (-90.0, -80.0, -50.0):
        h.finitialize(v)
        syn.B, syn.A = 1.0, 0.0
        h.fcurrent()
        assert syn.i == pytest.approx(0.001 * (v + 80.0), abs=1e-12)


def test_events_sum_linearly(default_cell, site):
    kwargs = {"onset": ONSET, "window": 50.0, "clamp_at": -60.0, "atol": 1e-8}
    one = ephys.synaptic_event(default_cell, "AmpaNmda", site, **kwargs)
    three = ephys.synaptic_event(default_cell, "AmpaNmda", site, n_events=3, **kwargs)
    np.testing.assert_allclose(three.traces["g_AMPA"], 3 * one.traces["g_AMPA"], atol=3e-6)
    assert three.traces["g_AMPA"].max() == pytest.approx(3 * 0.0004, rel=2e-3)


def test_every_event_releases_including_at_t0(h_units):
    """Deterministic release, no lock-out: an event at t = 0 and later ones all add conductance."""
    h, sec = h_units
    syn = h.AmpaNmda(sec(0.5))
    times = [0.0, 7.0, 19.0, 33.0]
    holder = []

    def queue():
        for t in times:
            holder[0].event(t)

    con = h.NetCon(None, syn)
    con.weight[0] = 1.0
    holder.append(con)
    handler = h.FInitializeHandler(queue)
    g = h.Vector().record(syn._ref_g_AMPA)
    tv = h.Vector().record(h._ref_t)
    h.cvode_active(1)
    h.finitialize(-65.0)
    h.continuerun(45.0)
    t, g = np.array(tv), np.array(g)
    expected = 0.0004 * sum(dual_exponential(t - s, 0.3, 3.0) for s in times)
    np.testing.assert_allclose(g, expected, atol=4e-6)
    del handler
    h.cvode_active(0)


@pytest.fixture
def h_units():
    """A bare passive compartment for point-process unit checks."""
    from simulations._neuron import hoc
    from simulations.mechanisms import load_mechanisms

    load_mechanisms()
    h = hoc()
    sec = h.Section(name="synapse_probe")
    sec.L = sec.diam = 10.0
    sec.insert("pas")
    return h, sec
