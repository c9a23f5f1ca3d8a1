"""Each channel's steady states, time constants and current against the documented equations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.channel_reference import CHANNELS, SINGULAR_POINTS, sk_e2_zinf

VOLTAGES = [-95.3, -80.1, -65.7, -50.2, -35.9, -20.4, 0.3, 25.6]
_names = itertools.count()


@pytest.fixture(scope="module")
def h():
    from simulations._neuron import hoc
    from simulations.mechanisms import load_mechanisms

    load_mechanisms()
    return hoc()


def compartment(h, *mechanisms, gbar=1e-3):
    sec = h.Section(name=f"probe{next(_names)}")
    sec.L = sec.diam = 10.0
    for name in mechanisms:
        sec.insert(name)
        if name != "CaDynamics_E2":
            setattr(sec(0.5), f"gbar_{name}", gbar)
    if h.ismembrane("k_ion", sec=sec):
        sec.ek = -85.0
    if h.ismembrane("na_ion", sec=sec):
        sec.ena = 50.0
    return sec


def initialise(h, v, celsius=6.3):
    h.cvode_active(0)
    h.celsius = celsius
    h.dt = 0.025
    h.finitialize(v)


@pytest.mark.parametrize("mechanism", sorted(CHANNELS))
def test_steady_states_and_time_constants(h, mechanism):
    reference, gates, _, _ = CHANNELS[mechanism]
    sec = compartment(h, mechanism)
    mech = getattr(sec(0.5), mechanism)
    for v in VOLTAGES:
        initialise(h, v)
        expected = reference(v)
        for gate in gates:
            inf, tau = expected[gate]
            assert getattr(mech, f"{gate}Inf") == pytest.approx(inf, rel=1e-6, abs=1e-12), (gate, v)
            assert getattr(mech, f"{gate}Tau") == pytest.approx(tau, rel=1e-6), (gate, v)
            # the state starts at its steady state (INITIAL block)
            assert getattr(mech, gate) == pytest.approx(inf, rel=1e-6, abs=1e-12), (gate, v)


@pytest.mark.parametrize("mechanism", sorted(CHANNELS))
def test_current_is_gbar_times_gates_times_driving_force(h, mechanism):
    reference, gates, current, reversal = CHANNELS[mechanism]
    gbar = 2e-3
    sec = compartment(h, mechanism, gbar=gbar)
    seg = sec(0.5)
    for v in (-70.2, -30.4, 10.7):
        initialise(h, v)
        h.fcurrent()
        rates = reference(v)
        open_fraction = np.prod([rates[g][0] ** p for g, p in gates.items()])
        e = reversal if isinstance(reversal, float) else getattr(seg, reversal)
        assert getattr(seg, current) == pytest.approx(gbar * open_fraction * (v - e), rel=1e-6)


@pytest.mark.parametrize("mechanism", sorted(CHANNELS))
def test_gates_relax_exponentially_with_their_time_constant(h, mechanism):
    """Knock each gate off its steady state under voltage clamp and watch it relax."""
    reference, gates, _, _ = CHANNELS[mechanism]
    sec = compartment(h, mechanism)
    mech = getattr(sec(0.5), mechanism)
    clamp = h.SEClamp(sec(0.5))
    clamp.rs, clamp.dur1 = 1e-4, 1e9
    for v in (-75.3, -20.6):
        clamp.amp1 = v
        for gate in gates:
            inf, tau = reference(v)[gate]
            start = 0.0 if inf > 0.5 else 1.0
            initialise(h, v)
            setattr(mech, gate, start)
            # CVode (tight tolerance) keeps states and t in step, unlike the staggered fixed step
            h.cvode_active(1)
            h.CVode().atol(1e-9)
            h.CVode().re_init()
            h.continuerun(min(tau, 40.0))
            expected = inf + (start - inf) * np.exp(-h.t / tau)
            assert getattr(mech, gate) == pytest.approx(expected, abs=2e-5), (gate, v)
    h.cvode_active(0)
    h.CVode().atol(1e-3)


@pytest.mark.parametrize(
    ("mechanism", "v"), [(m, v) for m, points in SINGULAR_POINTS.items() for v in points]
)
def test_rates_are_continuous_through_removable_singularities(h, mechanism, v):
    reference, gates, _, _ = CHANNELS[mechanism]
    sec = compartment(h, mechanism)
    mech = getattr(sec(0.5), mechanism)
    initialise(h, v)
    for gate in gates:
        for attr, k in ((f"{gate}Inf", 0), (f"{gate}Tau", 1)):
            value = getattr(mech, attr)
            below, above = reference(v - 1e-4)[gate][k], reference(v + 1e-4)[gate][k]
            assert np.isfinite(value)
            assert (
                min(below, above) - 1e-6 * abs(value)
                <= value
                <= max(below, above) + 1e-6 * abs(value)
            )


@pytest.mark.parametrize("cai", [1e-8, 5e-5, 2e-4, 4.3e-4, 1e-3, 5e-3])
def test_sk_e2_calcium_dependence(h, cai):
    sec = compartment(h, "SK_E2", gbar=1e-3)
    seg = sec(0.5)
    seg.cai = cai  # nothing writes cai here, so initialisation leaves it alone
    initialise(h, -60.3)
    h.fcurrent()
    assert seg.SK_E2.zInf == pytest.approx(sk_e2_zinf(cai), rel=1e-6, abs=1e-15)
    assert seg.ik == pytest.approx(1e-3 * sk_e2_zinf(cai) * (-60.3 + 85.0), rel=1e-6, abs=1e-15)
    # z relaxes with a fixed 1 ms time constant
    seg.SK_E2.z = 0.0
    h.continuerun(1.0)
    assert seg.SK_E2.z == pytest.approx(sk_e2_zinf(cai) * (1 - np.exp(-1.0)), rel=1e-3)


def test_calcium_shell_decays_to_its_floor(h):
    sec = compartment(h, "CaDynamics_E2")
    seg = sec(0.5)
    seg.CaDynamics_E2.decay, seg.CaDynamics_E2.minCai = 40.0, 1e-4
    h.cai0_ca_ion = 6e-4
    try:
        initialise(h, -70.0)
        assert seg.cai == pytest.approx(6e-4)  # no INITIAL block: starts from the ion's cai0
        h.continuerun(40.0)
        assert seg.cai == pytest.approx(1e-4 + 5e-4 * np.exp(-1.0), rel=1e-4)
    finally:
        h.cai0_ca_ion = 5e-5


def test_calcium_shell_starts_at_neuron_default_and_relaxes_up(h):
    sec = compartment(h, "CaDynamics_E2")
    initialise(h, -70.0)
    assert sec(0.5).cai == pytest.approx(5e-5)
    h.continuerun(50.0)
    assert 5e-5 < sec(0.5).cai < 1e-4


def test_calcium_influx_matches_shell_equation(h):
    from scipy.constants import physical_constants

    faraday = physical_constants["Faraday constant"][0]
    sec = compartment(h, "Ca_HVA", "CaDynamics_E2", gbar=5e-3)
    seg = sec(0.5)
    gamma, depth, decay, floor = 0.05, 0.1, 80.0, 1e-4
    seg.CaDynamics_E2.gamma, seg.CaDynamics_E2.decay = gamma, decay
    clamp = h.SEClamp(seg)
    clamp.rs, clamp.dur1, clamp.amp1 = 1e-4, 1e9, -5.0
    initialise(h, -5.0)
    h.dt = 0.001
    h.continuerun(2.0)
    cai0, ica = seg.cai, seg.ica
    h.continuerun(2.002)
    slope = (seg.cai - cai0) / 0.002
    expected = -10000 * ica * gamma / (2 * faraday * depth) - (cai0 - floor) / decay
    assert ica < 0
    assert slope == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize(("celsius", "expected"), [(6.3, 119.3), (34.0, 131.1)])
def test_calcium_reversal_follows_nernst(h, celsius, expected):
    from scipy.constants import R, physical_constants

    faraday = physical_constants["Faraday constant"][0]
    sec = compartment(h, "Ca_HVA", "CaDynamics_E2")
    h.cai0_ca_ion = 1e-4
    try:
        initialise(h, -80.0, celsius=celsius)
        nernst = 1000 * R * (celsius + 273.15) / (2 * faraday) * np.log(2.0 / 1e-4)
        assert sec(0.5).eca == pytest.approx(nernst, rel=1e-4)
        assert sec(0.5).eca == pytest.approx(expected, abs=0.1)
    finally:
        h.cai0_ca_ion = 5e-5


def test_temperature_does_not_change_kinetics(h):
    sec = compartment(h, "NaTa_t")
    initialise(h, -40.0, celsius=6.3)
    cold = sec(0.5).NaTa_t.mTau
    initialise(h, -40.0, celsius=34.0)
    assert sec(0.5).NaTa_t.mTau == cold
    h.celsius = 6.3
